//! Every response the proxy makes itself, each built by one named constructor, so the status,
//! the headers and the wording stay consistent (and a test can pin them in one place).
//! Bodies are short plain-text sentences that name the cause, since a person reading curl's
//! output or a browser's error page is who gets them.

use crate::proxy::body::{self, ProxyBody};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

fn text(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut body = String::with_capacity(message.len() + 1);
    body.push_str(message);
    body.push('\n');
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // The proxy's own answers describe this moment, never something to cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `400`: the request (or CONNECT target) is malformed; `message` says how.
pub fn bad_request(message: &str) -> Response<ProxyBody> {
    text(
        StatusCode::BAD_REQUEST,
        &format!("strictproxy: bad request: {message}"),
    )
}

/// `414`: the request target is longer than the configured limit.
pub fn uri_too_long(limit: usize) -> Response<ProxyBody> {
    text(
        StatusCode::URI_TOO_LONG,
        &format!("strictproxy: the request target is longer than {limit} bytes (max_uri_bytes)"),
    )
}

/// `407`: credentials are required (RFC 9110 §15.5.8), with the challenge.
pub fn proxy_auth_required() -> Response<ProxyBody> {
    let mut response = text(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "strictproxy: proxy authentication required (send Proxy-Authorization: Basic)",
    );
    response.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"strictproxy\", charset=\"UTF-8\""),
    );
    response
}

/// `502`: the upstream could not be reached or trusted; `cause` names the host and why.
pub fn bad_gateway(cause: &str) -> Response<ProxyBody> {
    text(
        StatusCode::BAD_GATEWAY,
        &format!("strictproxy: bad gateway: {cause}"),
    )
}

/// The answer to an upstream the proxy could not reach or trust: `504` for a timeout, `502`
/// otherwise, naming the host and the cause.
pub fn upstream_unavailable(err: &crate::proxy::upstream::UpstreamError) -> Response<ProxyBody> {
    if err.is_forbidden() {
        forbidden(&err.to_string())
    } else if err.is_timeout() {
        gateway_timeout(&err.to_string())
    } else {
        bad_gateway(&err.to_string())
    }
}

/// `403`: the destination is never reachable through the proxy (the admin API, a DNS answer
/// into loopback, a local range asked by a client on the network); `reason` is one line.
pub fn forbidden(reason: &str) -> Response<ProxyBody> {
    text(
        StatusCode::FORBIDDEN,
        &format!("strictproxy: forbidden: {reason}"),
    )
}

/// The answer to a forward that failed, by who failed: the client's broken request body is a
/// `400` that closes its connection (what follows the bad framing cannot be trusted to be the
/// next request, RFC 9112 §7.1, §9.6); an upstream too slow is a `504` (a connect, handshake
/// or response head past its timeout); any other upstream failure a `502`. Each names the
/// host and the cause.
pub fn forward_failed(err: &crate::proxy::outcome::ForwardError) -> Response<ProxyBody> {
    use crate::proxy::errors::Culprit;
    if err.is_forbidden() {
        return forbidden(&err.to_string());
    }
    match err.culprit() {
        Culprit::Client => {
            let mut response = bad_request(&err.to_string());
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
        Culprit::Upstream | Culprit::Proxy if err.is_timeout() => gateway_timeout(&err.to_string()),
        Culprit::Upstream | Culprit::Proxy => bad_gateway(&err.to_string()),
    }
}

/// `421`: a request inside an intercepted tunnel names another origin than the one the tunnel
/// was opened (and its certificate made) for (RFC 9110 §15.5.20); the client may retry it on a
/// connection of its own to that origin.
pub fn misdirected(message: &str) -> Response<ProxyBody> {
    text(
        StatusCode::MISDIRECTED_REQUEST,
        &format!("strictproxy: misdirected request: {message}"),
    )
}

/// `503`: the proxy is at its connection limit (or shutting down).
pub fn service_unavailable(message: &str) -> Response<ProxyBody> {
    let mut response = text(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("strictproxy: service unavailable: {message}"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// `504`: the upstream did not answer in time.
pub fn gateway_timeout(cause: &str) -> Response<ProxyBody> {
    text(
        StatusCode::GATEWAY_TIMEOUT,
        &format!("strictproxy: gateway timeout: {cause}"),
    )
}

/// `508`: the request would come back to this proxy (RFC 5842 §7.2).
pub fn loop_detected(message: &str) -> Response<ProxyBody> {
    text(
        StatusCode::LOOP_DETECTED,
        &format!("strictproxy: loop detected: {message}"),
    )
}

/// The `200` that opens a CONNECT tunnel (RFC 9110 §9.3.6: no body, no Content-Length).
pub fn connect_established() -> Response<ProxyBody> {
    Response::new(body::empty())
}

/// The raw bytes of a `503` for a connection refused before any HTTP parsing (the accept loop
/// is over its connection cap and must not spend more on this client).
pub const RAW_SERVICE_UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 62\r\nRetry-After: 1\r\nConnection: close\r\n\r\nstrictproxy: service unavailable: too many client connections\n";

/// A local page (the CA install page and its downloads).
pub fn local(content_type: &'static str, bytes: impl Into<bytes::Bytes>) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(bytes));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The 307 Internal Redirect (built by the HSTS module, which owns its exact shape), with the
/// proxy's body type.
pub fn internal_redirect(
    location: &http::Uri,
    origin: Option<&HeaderValue>,
) -> Response<ProxyBody> {
    crate::hsts::upgrade::internal_redirect(location, origin).map(|()| body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_503_content_length_is_exact() {
        let text = std::str::from_utf8(RAW_SERVICE_UNAVAILABLE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn forward_failures_by_culprit() {
        use crate::proxy::body::ClientBodyError;
        use crate::proxy::outcome::{ForwardError, HeadProblem};
        // (error, status, closes the client connection)
        let rows = [
            // RFC 9112 §7.1: the client's framing error is the client's: 400, then close.
            (ClientBodyError::new("bad chunk".into()).into(), 400, true),
            // nginx proxy_read_timeout: 504 naming the host.
            (
                ForwardError::ResponseTimeout {
                    authority: "slow.test".into(),
                    secs: 1,
                },
                504,
                false,
            ),
            (
                ForwardError::BadResponse {
                    authority: "a.test".into(),
                    problem: HeadProblem::UnsolicitedUpgrade,
                },
                502,
                false,
            ),
        ];
        for (err, status, closes) in rows {
            let response = forward_failed(&err);
            assert_eq!(response.status(), status, "{err}");
            assert_eq!(
                response.headers().get("connection").is_some(),
                closes,
                "{err}"
            );
        }
    }

    #[test]
    fn statuses_and_challenge() {
        assert_eq!(bad_request("x").status(), 400);
        assert_eq!(forbidden("x").status(), 403);
        assert_eq!(bad_gateway("x").status(), 502);
        assert_eq!(gateway_timeout("x").status(), 504);
        assert_eq!(loop_detected("x").status(), 508);
        assert_eq!(service_unavailable("x").status(), 503);
        assert_eq!(misdirected("x").status(), 421);
        let auth = proxy_auth_required();
        assert_eq!(auth.status(), 407);
        assert!(auth.headers()["proxy-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic"));
    }
}
