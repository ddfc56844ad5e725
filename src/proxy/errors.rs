//! Reading error chains: hyper and hyper-util wrap the cause (an `io::Error`, a rustls error,
//! the connector's own `UpstreamError`) several levels deep, and the proxy's answers, retries
//! and log levels depend on that cause. One walk, used everywhere.
//!
//! It also names who failed ([`Culprit`]): the client, the upstream or the proxy itself, so
//! that the status, the log line and the metric label of a failed exchange agree (pingora's
//! `ErrorSource` makes the same split); the client's own failure is a [`ClientBodyError`].

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

/// The client's request body failed on its way upstream (a malformed chunk size, a connection
/// cut mid-body): the client's fault, not the origin's, though the upstream client reports it.
/// Defined here, at the bottom of the proxy's modules, so that the body wrapper that raises it
/// and the upstream side that classifies it both depend on this file and not on each other.
#[derive(Debug, thiserror::Error)]
#[error("the request body from the client is malformed or incomplete: {detail}")]
pub struct ClientBodyError {
    pub detail: String,
}

impl ClientBodyError {
    pub fn new(detail: String) -> Self {
        ClientBodyError { detail }
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
    fn a_client_body_error_is_found_under_hyper_s_wrapping() {
        let err = Wrapped(Box::new(ClientBodyError::new("invalid chunk size".into())));
        assert!(find::<ClientBodyError>(&err).is_some());
        assert_eq!(
            error_chain(&err),
            "error reading a body: the request body from the client is malformed or incomplete: invalid chunk size"
        );
        assert_eq!(Culprit::Client.as_str(), "client");
        assert_eq!(Culprit::Upstream.as_str(), "upstream");
        assert_eq!(Culprit::Proxy.as_str(), "proxy");
    }
}
