//! Reading error chains: hyper and hyper-util wrap the cause (an `io::Error`, a rustls error,
//! the connector's own `UpstreamError`) several levels deep, and the proxy's answers, retries
//! and log levels depend on that cause. One walk, used everywhere.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

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
}
