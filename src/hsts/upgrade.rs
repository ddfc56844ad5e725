//! The http→https mapping and the `307 Internal Redirect` the proxy answers with.
//!
//! When a plain-HTTP request names a Known HSTS Host, the proxy never sends it in clear: it
//! answers itself, exactly as Chromium's `URLRequestRedirectJob` does inside the browser:
//!
//! ```text
//! HTTP/1.1 307 Internal Redirect
//! Location: https://example.com/path?q
//! Cross-Origin-Resource-Policy: Cross-Origin
//! Non-Authoritative-Reason: HSTS
//! Content-Length: 0
//! ```
//!
//! 307 keeps the method and body (RFC 9110 §15.4.8), so a POST is replayed as a POST over TLS.
//! The URL mapping is RFC 6797 §8.3: scheme to `https` (`wss` for `ws`), an explicit port 80
//! dropped (it becomes the https default, 443), any other explicit port kept, the rest of the
//! URL unchanged.

use http::header::{
    HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN,
    CONTENT_LENGTH, LOCATION,
};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Response, StatusCode, Uri};
use hyper::ext::ReasonPhrase;

use super::host::is_ip_literal;

/// The reason phrase Chromium writes for its HSTS redirect.
pub const INTERNAL_REDIRECT_REASON: &[u8] = b"Internal Redirect";

/// `Non-Authoritative-Reason`: Chromium's marker that the redirect came from the browser's
/// own HSTS state, not from the server.
pub static NON_AUTHORITATIVE_REASON: HeaderName =
    HeaderName::from_static("non-authoritative-reason");

/// `Cross-Origin-Resource-Policy`, sent by Chromium so the synthetic redirect is never
/// blocked by CORP on a cross-origin subresource.
pub static CROSS_ORIGIN_RESOURCE_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-resource-policy");

/// Maps an `http://` URL to `https://` and `ws://` to `wss://` (RFC 6797 §8.3): explicit
/// port 80 dropped, any other explicit port kept, userinfo, path and query unchanged.
///
/// Returns `None` for any other scheme, for a URI without authority (origin-form), and for
/// IP-literal hosts, which HSTS never applies to (RFC 6797 §8.3 item 1).
pub fn upgrade_uri(uri: &Uri) -> Option<Uri> {
    let secure: Scheme = secure_scheme(uri.scheme_str()?)?.parse().ok()?;
    let authority = uri.authority()?;
    let host = authority.host();
    if host.is_empty() || is_ip_literal(host) {
        return None;
    }

    // Userinfo is deprecated but still legal in an absolute-form URI (RFC 9110 §4.2.4);
    // Chromium keeps it across the internal redirect, and so does the proxy.
    let userinfo = authority
        .as_str()
        .rsplit_once('@')
        .map(|(userinfo, _)| userinfo);
    let mut text = String::with_capacity(authority.as_str().len());
    if let Some(userinfo) = userinfo {
        text.push_str(userinfo);
        text.push('@');
    }
    text.push_str(host);
    // RFC 6797 §8.3 item 5: an explicit port 80 becomes 443, the https default, so it is
    // dropped; any other explicit port is preserved. ws uses port 80 too (RFC 6455 §3).
    if let Some(port) = authority.port_u16().filter(|&p| p != 80) {
        text.push(':');
        text.push_str(&port.to_string());
    }
    let authority: Authority = text.parse().ok()?;

    let path_and_query = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));

    Uri::builder()
        .scheme(secure)
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .ok()
}

/// Builds the `307 Internal Redirect` to `location`, with Chromium's headers. When the
/// request carried `Origin`, the redirect allows that origin with credentials, as Chromium
/// does, so a CORS request is not failed by the proxy's own answer. The body is empty.
pub fn internal_redirect(location: &Uri, origin: Option<&HeaderValue>) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    // hyper writes this in place of the canonical "Temporary Redirect" on HTTP/1.
    response
        .extensions_mut()
        .insert(ReasonPhrase::from_static(INTERNAL_REDIRECT_REASON));

    let headers = response.headers_mut();
    // A `Uri` holds only characters that are legal in a field value, so this cannot fail;
    // should it ever, the redirect goes out without Location rather than panicking.
    if let Ok(value) = HeaderValue::try_from(location.to_string()) {
        headers.insert(LOCATION, value);
    }
    headers.insert(
        CROSS_ORIGIN_RESOURCE_POLICY.clone(),
        HeaderValue::from_static("Cross-Origin"),
    );
    headers.insert(
        NON_AUTHORITATIVE_REASON.clone(),
        HeaderValue::from_static("HSTS"),
    );
    if let Some(origin) = origin {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// The same mapping (RFC 6797 §8.3) on a WHATWG [`url::Url`], for the redirect audit's
/// resolved `Location`s: the scheme through the same [`secure_scheme`], and `None` for other
/// schemes and IP literals, as [`upgrade_uri`]. The url crate stores no default port, and
/// `set_scheme` drops a port that becomes the new default, so an explicit 80 ends up as the
/// https default and any other port is kept.
pub fn upgrade_url(url: &url::Url) -> Option<url::Url> {
    let secure = secure_scheme(url.scheme())?;
    // `domain()` is None for IP literals (and for URLs without a host).
    url.domain()?;
    let mut upgraded = url.clone();
    upgraded.set_scheme(secure).ok()?;
    Some(upgraded)
}

/// The secure counterpart of an insecure scheme (RFC 6797 §8.3 names http; browsers apply it to
/// ws too), case-insensitively (RFC 3986 §3.1); the one place both mappings take it from.
fn secure_scheme(scheme: &str) -> Option<&'static str> {
    if scheme.eq_ignore_ascii_case("http") {
        Some("https")
    } else if scheme.eq_ignore_ascii_case("ws") {
        Some("wss")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_uri_table() {
        #[rustfmt::skip]
        let rows: &[(&str, Option<&str>)] = &[
            // Scheme to https, path and query unchanged (RFC 6797 §8.3 items 2, 6).
            ("http://example.com/a/b?x=1&y=2", Some("https://example.com/a/b?x=1&y=2")),
            ("http://example.com/", Some("https://example.com/")),
            // No path in absolute-form still means "/" (RFC 9112 §3.2.2, RFC 3986 §6.2.3).
            ("http://example.com", Some("https://example.com/")),
            // Explicit port 80 dropped, i.e. 443 (§8.3 item 5).
            ("http://example.com:80/p", Some("https://example.com/p")),
            // Any other explicit port kept (§8.3 item 5).
            ("http://example.com:8080/p?q", Some("https://example.com:8080/p?q")),
            ("http://example.com:443/", Some("https://example.com:443/")),
            // WebSocket: ws → wss, same port rules (RFC 6455 §3; Chromium upgrades ws too).
            ("ws://example.com/chat", Some("wss://example.com/chat")),
            ("ws://example.com:80/chat", Some("wss://example.com/chat")),
            ("ws://example.com:9000/chat?room=1", Some("wss://example.com:9000/chat?room=1")),
            // Scheme is case-insensitive (RFC 3986 §3.1).
            ("HTTP://example.com/", Some("https://example.com/")),
            // Userinfo kept, as Chromium keeps it.
            ("http://user:pw@example.com:80/", Some("https://user:pw@example.com/")),
            // Encoded and odd path bytes pass through untouched.
            ("http://example.com/%7Efoo/a%20b?q=%2F", Some("https://example.com/%7Efoo/a%20b?q=%2F")),
            // Host spelled as sent (lowercasing is not the redirect's business).
            ("http://Example.COM/", Some("https://Example.COM/")),
            // Never for IP literals (§8.3 item 1; §8.1.1).
            ("http://127.0.0.1/", None),
            ("http://127.0.0.1:8080/", None),
            ("http://[::1]/", None),
            ("http://[2001:db8::1]:80/", None),
            ("ws://10.0.0.1/socket", None),
            // Other schemes are not upgraded.
            ("https://example.com/", None),
            ("wss://example.com/", None),
            ("ftp://example.com/", None),
            // Origin-form has no host to upgrade.
            ("/just/a/path", None),
        ];
        for &(input, expected) in rows {
            let uri: Uri = input.parse().unwrap();
            let got = upgrade_uri(&uri).map(|u| u.to_string());
            assert_eq!(got.as_deref(), expected, "upgrade_uri({input})");
        }
    }

    #[test]
    fn upgrade_url_agrees_with_upgrade_uri() {
        #[rustfmt::skip]
        let rows: &[(&str, Option<&str>)] = &[
            // RFC 6797 §8.3: scheme to https, path, query and fragment unchanged.
            ("http://example.com/a?b=1#top", Some("https://example.com/a?b=1#top")),
            // Explicit port 80 becomes the https default; any other port is kept (item 5).
            ("http://example.com:80/p", Some("https://example.com/p")),
            ("http://example.com:8080/p", Some("https://example.com:8080/p")),
            ("ws://example.com:80/chat", Some("wss://example.com/chat")),
            ("ws://example.com:9000/chat", Some("wss://example.com:9000/chat")),
            // Never for IP literals (§8.1.1), nor for secure or other schemes.
            ("http://10.0.0.1/", None),
            ("http://[::1]/", None),
            ("https://example.com/", None),
            ("mailto:a@example.com", None),
        ];
        for &(input, expected) in rows {
            let got = upgrade_url(&url::Url::parse(input).unwrap());
            assert_eq!(got.as_ref().map(url::Url::as_str), expected, "{input}");
            if let Ok(uri) = input.parse::<Uri>() {
                if uri.authority().is_some() {
                    assert_eq!(upgrade_uri(&uri).is_some(), expected.is_some(), "{input}");
                }
            }
        }
    }

    #[test]
    fn internal_redirect_has_chromiums_status_line_and_headers() {
        let location: Uri = "https://example.com/x?y".parse().unwrap();
        let response = internal_redirect(&location, None);
        assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            response
                .extensions()
                .get::<ReasonPhrase>()
                .map(|r| r.as_bytes()),
            Some(&b"Internal Redirect"[..])
        );
        let h = response.headers();
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(get("location"), Some("https://example.com/x?y"));
        assert_eq!(get("non-authoritative-reason"), Some("HSTS"));
        assert_eq!(get("cross-origin-resource-policy"), Some("Cross-Origin"));
        assert_eq!(get("content-length"), Some("0"));
        assert_eq!(get("access-control-allow-origin"), None);
        assert_eq!(get("access-control-allow-credentials"), None);
        assert_eq!(h.len(), 4);
    }

    #[test]
    fn internal_redirect_echoes_origin_for_cors() {
        let location: Uri = "https://api.example.com/".parse().unwrap();
        let origin = HeaderValue::from_static("http://app.example.com");
        let response = internal_redirect(&location, Some(&origin));
        let h = response.headers();
        assert_eq!(h["access-control-allow-origin"], "http://app.example.com");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h.len(), 6);
    }

    /// The bytes on the wire: hyper writes the reason phrase from the extension.
    #[tokio::test]
    async fn hyper_writes_the_internal_redirect_status_line() {
        use http_body_util::Empty;
        use hyper::body::Bytes;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let target = upgrade_uri(req.uri()).unwrap();
                    let (parts, ()) =
                        internal_redirect(&target, req.headers().get("origin")).into_parts();
                    Ok::<_, std::convert::Infallible>(Response::from_parts(
                        parts,
                        Empty::<Bytes>::new(),
                    ))
                },
            );
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
                .unwrap();
        });

        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"POST http://example.com:80/form?a=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut bytes = Vec::new();
        client.read_to_end(&mut bytes).await.unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 307 Internal Redirect\r\n"),
            "{text}"
        );
        let lower = text.to_ascii_lowercase();
        assert!(
            lower.contains("\r\nlocation: https://example.com/form?a=1\r\n"),
            "{text}"
        );
        assert!(
            lower.contains("\r\nnon-authoritative-reason: hsts\r\n"),
            "{text}"
        );
        assert!(lower.contains("\r\ncontent-length: 0\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "empty body: {text}");
        server.await.unwrap();
    }
}
