//! The outcome of a forward, classified: [`check_response_head`] refuses response heads that
//! must not be relayed, [`response_within`] bounds the wait for a head, and [`ForwardError`]
//! says who failed an exchange (client, upstream or proxy), so that the status, the log line
//! and the metric agree. Pure but for the timer; the pipeline does the I/O.

use crate::proxy::errors::{self, ClientBodyError, Culprit};
use crate::proxy::upstream::{upstream_error_of, UpstreamError};
use std::future::Future;
use std::time::Duration;
use thiserror::Error;

/// Why a forwarded request got no usable response, and who is to blame: the status the client
/// gets, the `culprit`/`cause` of the log line and the metric labels all come from here.
#[derive(Debug, Error)]
pub enum ForwardError {
    /// The client's request body broke its framing (RFC 9112 §7.1: a chunk size that is not
    /// hex) or was cut short: the client's error, answered `400`, and its connection closed.
    #[error("{0}")]
    ClientBody(#[from] ClientBodyError),
    /// The upstream could not be reached or trusted (the connector's own error, rendered).
    #[error("{message}")]
    Unavailable {
        message: String,
        cause: &'static str,
        timeout: bool,
        culprit: Culprit,
    },
    /// The request went out but no response head came back in time (`response_timeout_secs`).
    #[error("upstream {authority} sent no response within {secs} s of the request (response_timeout_secs)")]
    ResponseTimeout { authority: String, secs: u64 },
    /// The response head is unusable (see [`check_response_head`]).
    #[error("upstream {authority} sent an unusable response: {problem}")]
    BadResponse {
        authority: String,
        problem: HeadProblem,
    },
    /// Any other failure of the upstream exchange (a protocol error, a reset).
    #[error("upstream {authority} failed: {detail}")]
    Protocol { authority: String, detail: String },
}

impl ForwardError {
    /// Classifies a failure of the upstream client. `client_body` is the client body's own
    /// record of failing: an HTTP/2 upstream reports only a stream reset, not the body error.
    pub fn of_client_error(
        err: &(dyn std::error::Error + 'static),
        authority: &str,
        client_body: Option<&str>,
    ) -> ForwardError {
        if let Some(detail) = client_body {
            return ClientBodyError::new(detail.to_string()).into();
        }
        if let Some(body) = errors::find::<ClientBodyError>(err) {
            return ClientBodyError::new(body.detail.clone()).into();
        }
        if let Some(cause) = upstream_error_of(err) {
            return ForwardError::Unavailable {
                message: cause.to_string(),
                cause: cause.cause(),
                timeout: cause.is_timeout(),
                culprit: cause.culprit(),
            };
        }
        ForwardError::Protocol {
            authority: authority.to_string(),
            detail: errors::error_chain(err),
        }
    }

    /// Who failed.
    pub fn culprit(&self) -> Culprit {
        match self {
            ForwardError::ClientBody(_) => Culprit::Client,
            ForwardError::Unavailable { culprit, .. } => *culprit,
            ForwardError::ResponseTimeout { .. }
            | ForwardError::BadResponse { .. }
            | ForwardError::Protocol { .. } => Culprit::Upstream,
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn cause(&self) -> &'static str {
        match self {
            ForwardError::ClientBody(_) => "request_body",
            ForwardError::Unavailable { cause, .. } => cause,
            ForwardError::ResponseTimeout { .. } => "response_timeout",
            ForwardError::BadResponse { problem, .. } => problem.cause(),
            ForwardError::Protocol { .. } => "protocol",
        }
    }

    /// Whether the destination rules refused the address (answered `403`, not `502`).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            ForwardError::Unavailable {
                cause: "forbidden",
                ..
            }
        )
    }

    /// Whether the answer is a `504` (the upstream was too slow) rather than a `502`.
    pub fn is_timeout(&self) -> bool {
        match self {
            ForwardError::Unavailable { timeout, .. } => *timeout,
            ForwardError::ResponseTimeout { .. } => true,
            _ => false,
        }
    }
}

/// Who failed, read from an error chain: a [`ClientBodyError`](crate::proxy::body::ClientBodyError)
/// anywhere in it is the client's; the connector's `NoHost` is the proxy's (it built the URI);
/// everything else that comes out of the upstream client is the upstream's. (Here rather than
/// in `errors`, which sits below `body` and `upstream` and names neither.)
pub fn culprit_of(err: &(dyn std::error::Error + 'static)) -> Culprit {
    if errors::find::<crate::proxy::body::ClientBodyError>(err).is_some() {
        return Culprit::Client;
    }
    match errors::find::<UpstreamError>(err) {
        Some(UpstreamError::NoHost) => Culprit::Proxy,
        _ => Culprit::Upstream,
    }
}

/// What makes a response head unusable, so the proxy answers `502` instead of relaying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum HeadProblem {
    /// RFC 9112 §6.3 (3): Transfer-Encoding overrides Content-Length, and a message with both
    /// "ought to be handled as an error" — it is how responses are split and requests smuggled.
    /// An intermediary may instead drop Content-Length and forward; like nginx (since 1.23.0)
    /// and Envoy, the proxy refuses it, so nothing ambiguous reaches the client.
    #[error("it has both Content-Length and Transfer-Encoding (RFC 9112 §6.3), an ambiguous length refused as nginx and Envoy do")]
    AmbiguousLength,
    /// RFC 9110 §15.2.2: a server must not switch to a protocol the request did not ask for in
    /// its Upgrade field; relayed, the `101` would take the client's connection (and the
    /// requests pipelined on it) into a protocol nobody agreed on.
    #[error("101 Switching Protocols to a request that asked for no upgrade (RFC 9110 §15.2.2)")]
    UnsolicitedUpgrade,
    /// RFC 9110 §7.8: a `101` must name the protocol switched to, and it must be the one asked.
    #[error("101 Switching Protocols without `Upgrade: websocket` (RFC 9110 §7.8)")]
    UpgradeMismatch,
}

impl HeadProblem {
    pub fn cause(self) -> &'static str {
        match self {
            HeadProblem::AmbiguousLength => "ambiguous_length",
            HeadProblem::UnsolicitedUpgrade | HeadProblem::UpgradeMismatch => "unsolicited_upgrade",
        }
    }
}

/// Checks a response head before it is relayed. `websocket` is whether the request asked for a
/// WebSocket upgrade; `bodiless` whether the response has no body whatever its fields say (a
/// HEAD request, `1xx`, `204`, `304`: RFC 9112 §6.3 (1)), where the length fields frame nothing.
pub fn check_response_head(
    websocket: bool,
    bodiless: bool,
    status: http::StatusCode,
    headers: &http::HeaderMap,
) -> Result<(), HeadProblem> {
    if status == http::StatusCode::SWITCHING_PROTOCOLS {
        if !websocket {
            return Err(HeadProblem::UnsolicitedUpgrade);
        }
        let names_websocket = headers
            .get_all(http::header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("websocket"));
        return if names_websocket {
            Ok(())
        } else {
            Err(HeadProblem::UpgradeMismatch)
        };
    }
    let both = headers.contains_key(http::header::TRANSFER_ENCODING)
        && headers.contains_key(http::header::CONTENT_LENGTH);
    if both && !bodiless {
        return Err(HeadProblem::AmbiguousLength);
    }
    Ok(())
}

/// Runs `request` (the upstream client's future, which resolves at the response head) and gives
/// up `timeout` after the request body has been sent — `sent` resolves then (its sender is
/// dropped when the body ends). Timing from the end of the body, like nginx's
/// `proxy_read_timeout`, keeps a slow upload from counting against the origin. `None` when
/// the time ran out; the request is dropped then, which closes its upstream connection.
pub async fn response_within<F: Future>(
    request: F,
    sent: tokio::sync::oneshot::Receiver<()>,
    timeout: Duration,
) -> Option<F::Output> {
    let deadline = async move {
        let _ = sent.await;
        tokio::time::sleep(timeout).await;
    };
    tokio::select! {
        biased;
        output = request => Some(output),
        () = deadline => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn response_heads() {
        use http::StatusCode as S;
        let ws = [("upgrade", "websocket"), ("connection", "upgrade")];
        let both = [("transfer-encoding", "chunked"), ("content-length", "40")];
        // (asked websocket, bodiless, status, fields, verdict)
        type Row<'a> = (
            bool,
            bool,
            S,
            &'a [(&'a str, &'a str)],
            Result<(), HeadProblem>,
        );
        let rows: [Row; 10] = [
            (false, false, S::OK, &[("content-length", "5")], Ok(())),
            (
                false,
                false,
                S::OK,
                &[("transfer-encoding", "chunked")],
                Ok(()),
            ),
            // RFC 9112 §6.3 (3): both is ambiguous; refused like nginx ≥ 1.23 and Envoy.
            (
                false,
                false,
                S::OK,
                &both,
                Err(HeadProblem::AmbiguousLength),
            ),
            (
                false,
                false,
                S::NOT_FOUND,
                &both,
                Err(HeadProblem::AmbiguousLength),
            ),
            // RFC 9112 §6.3 (1): no body whatever the fields say, so nothing to mis-frame.
            (false, true, S::OK, &both, Ok(())),
            // RFC 9110 §15.2.2: no Upgrade asked, no switch.
            (
                false,
                false,
                S::SWITCHING_PROTOCOLS,
                &ws,
                Err(HeadProblem::UnsolicitedUpgrade),
            ),
            (
                false,
                true,
                S::SWITCHING_PROTOCOLS,
                &[],
                Err(HeadProblem::UnsolicitedUpgrade),
            ),
            // RFC 9110 §7.8: the 101 names the protocol, and it is the one asked for.
            (
                true,
                false,
                S::SWITCHING_PROTOCOLS,
                &[],
                Err(HeadProblem::UpgradeMismatch),
            ),
            (
                true,
                false,
                S::SWITCHING_PROTOCOLS,
                &[("upgrade", "h2c")],
                Err(HeadProblem::UpgradeMismatch),
            ),
            (true, false, S::SWITCHING_PROTOCOLS, &ws, Ok(())),
        ];
        for (websocket, bodiless, status, fields, verdict) in rows {
            let mut headers = http::HeaderMap::new();
            for (name, value) in fields {
                headers.append(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(value).unwrap(),
                );
            }
            assert_eq!(
                check_response_head(websocket, bodiless, status, &headers),
                verdict,
                "{websocket} {bodiless} {status} {fields:?}"
            );
        }
    }

    #[test]
    fn forward_errors_say_who_failed() {
        let client_body: ForwardError = ClientBodyError::new("invalid chunk size".into()).into();
        let timeout = ForwardError::ResponseTimeout {
            authority: "slow.test".into(),
            secs: 1,
        };
        let framing = ForwardError::BadResponse {
            authority: "a.test".into(),
            problem: HeadProblem::AmbiguousLength,
        };
        let refused = UpstreamError::Refused {
            host: "a.test".into(),
            port: 80,
        };
        let unavailable = ForwardError::of_client_error(&refused, "a.test", None);
        let no_host = ForwardError::of_client_error(&UpstreamError::NoHost, "", None);
        let blamed_on_client = ForwardError::of_client_error(&refused, "a.test", Some("bad chunk"));
        // (error, culprit, cause, timeout)
        let rows = [
            (&client_body, Culprit::Client, "request_body", false),
            (&blamed_on_client, Culprit::Client, "request_body", false),
            (&timeout, Culprit::Upstream, "response_timeout", true),
            (&framing, Culprit::Upstream, "ambiguous_length", false),
            (&unavailable, Culprit::Upstream, "refused", false),
            // The proxy built a URI without a host: its own failure.
            (&no_host, Culprit::Proxy, "bad_request", false),
        ];
        for (err, culprit, cause, is_timeout) in rows {
            assert_eq!(err.culprit(), culprit, "{err}");
            assert_eq!(err.cause(), cause, "{err}");
            assert_eq!(err.is_timeout(), is_timeout, "{err}");
        }
        assert!(timeout.to_string().contains("slow.test"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_response_wait_starts_when_the_body_is_sent() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // The body is still being sent after 10 s: no timeout yet.
        let slow_upload = async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(tx);
            std::future::pending::<()>().await
        };
        let started = tokio::time::Instant::now();
        let outcome = response_within(slow_upload, rx, Duration::from_secs(1)).await;
        assert!(outcome.is_none());
        assert_eq!(started.elapsed().as_secs(), 11);
        let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
        let quick = response_within(async { 7 }, rx, Duration::from_secs(1)).await;
        assert_eq!(quick, Some(7));
    }
}
