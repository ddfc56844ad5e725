//! Who may talk to the admin listener: a pure decision over a request head and the admin's
//! own address, applied before any route (issue 11 item 8, issue 13 item 6).
//!
//! The admin port is on loopback, but every web page the user's browser opens can send
//! requests to it. Three rules close the ways in:
//!
//! 1. **Host** must be the admin's own address, or `localhost`, `127.0.0.1`, `[::1]`, with the
//!    admin's port. A page on `evil.test` whose DNS answer was switched to 127.0.0.1 (DNS
//!    rebinding) sends `Host: evil.test:8081` and is refused, as Chromium's DevTools endpoint
//!    and Jupyter refuse foreign Host values.
//! 2. **Origin**, when present, must be the admin's own (`http://` + one of those hosts): a
//!    cross-origin `fetch`, `EventSource` or form carries its page's Origin, so reads of the
//!    store and the traffic (browsing history) are refused as well as writes. `null` (a
//!    sandboxed frame, a `file:` page) is foreign. Likewise a `Sec-Fetch-Site` of `cross-site`
//!    or `same-site` on anything but a top-level navigation (an `<img>` or `<script>` pointing
//!    here sends no Origin, but Chromium and Firefox send Fetch Metadata).
//! 3. **State-changing requests** (every method but GET, HEAD, OPTIONS) need
//!    `Content-Type: application/json`: the "simple requests" a page may send cross-origin
//!    without a preflight carry only form or text types. A DELETE without a body is allowed
//!    without one: DELETE is never a simple request (Fetch's CORS-safelisted methods are GET,
//!    HEAD and POST), so a page can only send it after a preflight the admin never grants, and
//!    rule 2 still applies to it.

use http::header::{self, HeaderMap};
use http::{Method, Uri};
use std::net::{IpAddr, SocketAddr};

/// Why a request was refused, said in the 403/415 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the Host {0:?} is not this admin listener's address (DNS rebinding protection)")]
    ForeignHost(String),
    #[error("a request to the admin API must carry a Host field naming it")]
    MissingHost,
    #[error("requests from the origin {0:?} are refused: only the console's own origin may use the admin API")]
    ForeignOrigin(String),
    #[error("a cross-site subresource request to the admin API is refused (Sec-Fetch-Site: {0})")]
    CrossSite(String),
    #[error("a {0} to the admin API needs Content-Type: application/json")]
    NotJson(Method),
}

impl Refusal {
    /// 415 for a missing JSON type (RFC 9110 §15.5.16), 403 for the rest.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Refusal::NotJson(_) => http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => http::StatusCode::FORBIDDEN,
        }
    }
}

/// Decides whether the admin listener bound at `own` may serve this request head.
pub fn check(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    own: SocketAddr,
) -> Result<(), Refusal> {
    // HTTP/2 carries the authority in the URI (`:authority`), HTTP/1.1 in Host.
    let host = match headers.get(header::HOST) {
        Some(value) => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        None => uri.authority().map(|a| a.as_str().to_owned()),
    };
    let Some(host) = host else {
        return Err(Refusal::MissingHost);
    };
    if !is_own_authority(&host, own) {
        return Err(Refusal::ForeignHost(host));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        let own_origin = origin
            .strip_prefix("http://")
            .is_some_and(|authority| is_own_authority(authority, own));
        if !own_origin {
            return Err(Refusal::ForeignOrigin(origin));
        }
    }
    let site = text(headers, "sec-fetch-site");
    if matches!(site.as_deref(), Some("cross-site" | "same-site"))
        && text(headers, "sec-fetch-mode").as_deref() != Some("navigate")
    {
        return Err(Refusal::CrossSite(site.unwrap_or_default()));
    }
    let reads = [Method::GET, Method::HEAD, Method::OPTIONS];
    let bodiless_delete = method == Method::DELETE && !has_body(headers);
    if !reads.contains(method) && !bodiless_delete && !is_json(headers) {
        return Err(Refusal::NotJson(method.clone()));
    }
    Ok(())
}

fn text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// `host[:port]` names the admin: its own IP, or a loopback spelling, with its port (or no
/// port when the admin is on 80, which browsers then leave out).
pub fn is_own_authority(authority: &str, own: SocketAddr) -> bool {
    let (host, port) = match split_authority(authority) {
        Some(split) => split,
        None => return false,
    };
    let port_ok = match port {
        Some(port) => port.parse::<u16>() == Ok(own.port()) && !port.starts_with('+'),
        None => own.port() == 80,
    };
    if !port_ok {
        return false;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let Some(ip) = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .map_or_else(
            || host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
            |h| h.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        )
    else {
        return false;
    };
    // Only the canonical spellings: `127.1` or `2130706433` are what a rebinding page would
    // not send anyway, and refusing them costs nobody anything.
    let canonical = match ip {
        IpAddr::V4(v4) => host == v4.to_string(),
        IpAddr::V6(v6) => host == format!("[{v6}]"),
    };
    canonical
        && (ip == own.ip()
            || ip == IpAddr::from([127, 0, 0, 1])
            || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
}

/// Splits `host[:port]`, with a bracketed IPv6 host.
fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.is_empty() || authority.contains(['/', '@', ' ']) {
        return None;
    }
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            _ => rest.strip_prefix(':').map(|port| (host, Some(port))),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((authority, None)),
    }
}

/// `application/json`, parameters allowed (`; charset=utf-8`), case-insensitive (RFC 9110 §8.3.1).
fn is_json(headers: &HeaderMap) -> bool {
    text(headers, "content-type")
        .is_some_and(|v| v.split(';').next().map(str::trim) == Some("application/json"))
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || text(headers, "content-length").is_some_and(|len| len != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: &str = "127.0.0.1:8081";

    fn decide(method: &str, fields: &[(&str, &str)]) -> Result<(), Refusal> {
        decide_at(OWN, "/hsts", method, fields)
    }

    fn decide_at(
        own: &str,
        uri: &str,
        method: &str,
        fields: &[(&str, &str)],
    ) -> Result<(), Refusal> {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        check(
            &method.parse().unwrap(),
            &uri.parse().unwrap(),
            &headers,
            own.parse().unwrap(),
        )
    }

    #[test]
    fn host_rule() {
        let ok = |h: &str| decide("GET", &[("host", h)]).is_ok();
        // The admin's own address and the loopback spellings, with its port.
        assert!(ok("127.0.0.1:8081"));
        assert!(ok("localhost:8081"));
        assert!(ok("LOCALHOST:8081"));
        assert!(ok("[::1]:8081"));
        // DNS rebinding: a page's own name pointed at 127.0.0.1.
        assert!(!ok("evil.test:8081"));
        assert!(!ok("evil.test"));
        assert!(!ok("localhost.evil.test:8081"));
        // Wrong or missing port (the admin is not on 80).
        assert!(!ok("127.0.0.1:8082"));
        assert!(!ok("localhost"));
        assert!(!ok("127.0.0.1:+8081"));
        // Non-canonical or other addresses.
        assert!(!ok("127.1:8081"));
        assert!(!ok("127.0.0.2:8081"));
        assert!(!ok("0.0.0.0:8081"));
        assert!(!ok("[::ffff:127.0.0.1]:8081"));
        assert!(!ok("localhost.:8081"));
        assert!(!ok("user@localhost:8081"));
        assert!(!ok(""));
        assert_eq!(decide("GET", &[]), Err(Refusal::MissingHost));
    }

    #[test]
    fn own_address_other_than_127_0_0_1_and_port_80() {
        assert!(decide_at("127.0.0.5:9000", "/", "GET", &[("host", "127.0.0.5:9000")]).is_ok());
        assert!(decide_at("127.0.0.5:9000", "/", "GET", &[("host", "127.0.0.1:9000")]).is_ok());
        assert!(decide_at("[::1]:9000", "/", "GET", &[("host", "[::1]:9000")]).is_ok());
        // Browsers leave out port 80.
        assert!(decide_at("127.0.0.1:80", "/", "GET", &[("host", "localhost")]).is_ok());
        // HTTP/2: no Host, the authority is in the URI.
        assert!(decide_at(OWN, "http://127.0.0.1:8081/hsts", "GET", &[]).is_ok());
        assert!(decide_at(OWN, "http://evil.test:8081/hsts", "GET", &[]).is_err());
    }

    #[test]
    fn origin_rule_applies_to_reads_too() {
        let host = ("host", "127.0.0.1:8081");
        let with = |m: &str, origin: &str| {
            decide(
                m,
                &[
                    host,
                    ("origin", origin),
                    ("content-type", "application/json"),
                ],
            )
        };
        assert!(with("GET", "http://127.0.0.1:8081").is_ok());
        assert!(with("PUT", "http://localhost:8081").is_ok());
        // A page elsewhere reading the store or the traffic (fetch, EventSource).
        assert!(matches!(
            with("GET", "http://evil.test"),
            Err(Refusal::ForeignOrigin(_))
        ));
        assert!(
            with("GET", "http://127.0.0.1:3000").is_err(),
            "another local app"
        );
        assert!(
            with("GET", "https://127.0.0.1:8081").is_err(),
            "not the scheme served"
        );
        assert!(
            with("GET", "null").is_err(),
            "sandboxed frame or file: page"
        );
        assert!(with("DELETE", "http://evil.test").is_err());
        // No Origin at all: curl, scripts, a same-origin GET.
        assert!(decide("GET", &[host]).is_ok());
    }

    #[test]
    fn fetch_metadata_rule() {
        let host = ("host", "127.0.0.1:8081");
        // `<img src=http://127.0.0.1:8081/exchanges>` on another site: no Origin, but Fetch Metadata.
        assert!(matches!(
            decide(
                "GET",
                &[
                    host,
                    ("sec-fetch-site", "cross-site"),
                    ("sec-fetch-mode", "no-cors")
                ]
            ),
            Err(Refusal::CrossSite(_))
        ));
        assert!(decide(
            "GET",
            &[
                host,
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-mode", "no-cors")
            ]
        )
        .is_err());
        // A link followed to the console is a navigation: the person sees it, no page reads it.
        assert!(decide(
            "GET",
            &[
                host,
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate")
            ]
        )
        .is_ok());
        assert!(decide(
            "GET",
            &[
                host,
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-mode", "cors")
            ]
        )
        .is_ok());
        assert!(
            decide("GET", &[host, ("sec-fetch-site", "none")]).is_ok(),
            "typed in the address bar"
        );
    }

    #[test]
    fn state_changing_requests_need_json() {
        let host = ("host", "127.0.0.1:8081");
        let json = ("content-type", "application/json");
        assert!(decide("PUT", &[host, json]).is_ok());
        assert!(decide(
            "PUT",
            &[host, ("content-type", "Application/JSON; charset=utf-8")]
        )
        .is_ok());
        assert!(decide("POST", &[host, json]).is_ok());
        // The simple-request types a cross-origin form or fetch may send without a preflight.
        for simple in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            assert_eq!(
                decide("PUT", &[host, ("content-type", simple)]),
                Err(Refusal::NotJson(Method::PUT))
            );
            assert!(decide("POST", &[host, ("content-type", simple)]).is_err());
        }
        assert!(decide("PUT", &[host]).is_err());
        assert!(decide("PUT", &[host, ("content-type", "application/jsonp")]).is_err());
        // DELETE without a body needs no type; with a body it does.
        assert!(decide("DELETE", &[host]).is_ok());
        assert!(decide("DELETE", &[host, ("content-length", "0")]).is_ok());
        assert!(decide("DELETE", &[host, ("content-length", "5")]).is_err());
        assert!(decide("DELETE", &[host, ("transfer-encoding", "chunked")]).is_err());
        // Reads never need one.
        assert!(decide("GET", &[host]).is_ok() && decide("HEAD", &[host]).is_ok());
        assert_eq!(Refusal::NotJson(Method::PUT).status(), 415);
        assert_eq!(Refusal::MissingHost.status(), 403);
    }
}
