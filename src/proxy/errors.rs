//! Reading error chains: hyper and hyper-util wrap the cause (an `io::Error`, a rustls error,
//! the connector's own `UpstreamError`) several levels deep, and the proxy's answers, retries
//! and log levels depend on that cause. One walk, used everywhere.
//!
//! It also says who failed ([`Culprit`]): the client, the upstream or the proxy itself, so
//! that the status, the log line and the metric label of a failed exchange agree (pingora's
//! `ErrorSource` makes the same split).

use std::error::Error;
use std::io::ErrorKind;

/// The error and every source under it, outermost first.
pub fn sources<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&e| e.source())
}

/// The first error of type `T` in the chain.
pub fn find<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    sources(err).find_map(|e| e.downcast_ref::<T>())
}

/// Whether the peer went away mid-connection (reset, closed, EOF): the benign end of a client
/// connection, and, for a reused upstream connection, the one failure a retry fixes.
pub fn connection_dropped(err: &(dyn Error + 'static)) -> bool {
    sources(err).any(|e| {
        let io_drop = e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
                    | ErrorKind::NotConnected
            )
        });
        let hyper_drop = e
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_canceled() || h.is_closed());
        io_drop || hyper_drop
    })
}

/// Logs a client connection's end: the benign ones (a client closing, a reset) quietly.
pub fn log_connection_error(client: std::net::SocketAddr, err: &(dyn Error + 'static)) {
    if connection_dropped(err) {
        tracing::trace!(%client, "connection ended: {err}");
    } else {
        tracing::debug!(%client, "connection error: {err}");
    }
}

/// An error and its sources, joined, so the message names the real cause.
pub fn error_chain(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    for inner in sources(err).skip(1) {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
    }
    text
}

/// Who made an exchange fail. The status follows from it (a client's fault is a `4xx`, an
/// upstream's a `502`/`504`, the proxy's own a `5xx`), and so do the `culprit` field of the log
/// line and the `culprit` label of `strictproxy_forward_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Culprit {
    /// The client broke the protocol (for example a malformed chunked request body).
    Client,
    /// The origin could not be reached or trusted, or answered something unusable.
    Upstream,
    /// The proxy itself (a bug or a resource limit).
    Proxy,
}

impl Culprit {
    /// The stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Culprit::Client => "client",
            Culprit::Upstream => "upstream",
            Culprit::Proxy => "proxy",
        }
    }
}

/// Who failed, read from an error chain: a [`ClientBodyError`](crate::proxy::body::ClientBodyError)
/// anywhere in it is the client's; the connector's `NoHost` is the proxy's (it built the URI);
/// everything else that comes out of the upstream client is the upstream's.
pub fn culprit_of(err: &(dyn Error + 'static)) -> Culprit {
    if find::<crate::proxy::body::ClientBodyError>(err).is_some() {
        return Culprit::Client;
    }
    match find::<crate::proxy::upstream::UpstreamError>(err) {
        Some(crate::proxy::upstream::UpstreamError::NoHost) => Culprit::Proxy,
        _ => Culprit::Upstream,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    /// How hyper carries a body's error: as the source of its own error.
    #[derive(Debug, thiserror::Error)]
    #[error("error reading a body")]
    struct Wrapped(#[source] Box<dyn Error + Send + Sync>);

    #[test]
    fn walks_and_classifies_the_chain() {
        let err = Outer(std::io::Error::new(
            ErrorKind::ConnectionReset,
            "reset by peer",
        ));
        assert_eq!(sources(&err).count(), 2);
        assert!(find::<std::io::Error>(&err).is_some());
        assert!(connection_dropped(&err));
        assert_eq!(error_chain(&err), "outer: reset by peer");
        let refused = Outer(std::io::Error::new(ErrorKind::ConnectionRefused, "refused"));
        assert!(!connection_dropped(&refused));
    }

    #[test]
    fn culprits() {
        use crate::proxy::body::ClientBodyError;
        use crate::proxy::upstream::UpstreamError;
        let io = || std::io::Error::other("x");
        // (error chain, who failed)
        let rows: [(Box<dyn Error + 'static>, Culprit); 4] = [
            // RFC 9112 §7.1: a chunk size that is not hex is the sender's framing error.
            (
                Box::new(Wrapped(Box::new(ClientBodyError::new(
                    "invalid chunk size".into(),
                )))),
                Culprit::Client,
            ),
            (
                Box::new(UpstreamError::Refused {
                    host: "a.test".into(),
                    port: 80,
                }),
                Culprit::Upstream,
            ),
            (Box::new(UpstreamError::NoHost), Culprit::Proxy),
            (Box::new(Outer(io())), Culprit::Upstream),
        ];
        for (err, culprit) in rows {
            assert_eq!(culprit_of(err.as_ref()), culprit, "{err}");
        }
        assert_eq!(Culprit::Client.as_str(), "client");
    }
}
