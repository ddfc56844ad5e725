//! Admission checks made before a request is forwarded: proxy credentials (RFC 9110 §11.7.1,
//! Basic per RFC 7617, compared in constant time) and loop protection (a request aimed at the
//! proxy's own listener). Pure functions.

use base64::Engine;
use http::header::{self, HeaderMap};
use std::net::{IpAddr, SocketAddr};
use subtle::ConstantTimeEq;

/// The credentials clients must present.
#[derive(Clone, Debug)]
pub struct Credentials {
    expected: Vec<u8>,
}

impl Credentials {
    pub fn new(user: &str, pass: &str) -> Self {
        Credentials {
            expected: format!("{user}:{pass}").into_bytes(),
        }
    }

    /// Whether `Proxy-Authorization` carries these credentials. The comparison takes the
    /// same time wherever the first differing byte is, so it leaks nothing but the length.
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::PROXY_AUTHORIZATION) else {
            return false;
        };
        let Ok(text) = value.to_str() else {
            return false;
        };
        let mut parts = text.trim().splitn(2, ' ');
        let scheme = parts.next().unwrap_or_default();
        let token = parts.next().unwrap_or_default().trim();
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token) else {
            return false;
        };
        decoded.len() == self.expected.len() && bool::from(decoded.ct_eq(&self.expected))
    }
}

/// Whether `host:port` is the proxy's own listener, so forwarding would loop back into it.
/// `resolved` is the `--resolve` override for the host, if any.
pub fn targets_listener(
    host: &str,
    port: u16,
    resolved: Option<IpAddr>,
    listen: SocketAddr,
) -> bool {
    if port != listen.port() {
        return false;
    }
    let ip = resolved.or_else(|| {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.eq_ignore_ascii_case("localhost")
            || bare.to_ascii_lowercase().ends_with(".localhost")
        {
            Some(IpAddr::from([127, 0, 0, 1]))
        } else {
            bare.parse().ok()
        }
    });
    match ip {
        Some(ip) => {
            ip == listen.ip()
                || (listen.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified()))
                || ip.is_unspecified()
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn basic_credentials() {
        let creds = Credentials::new("alice", "s3cret");
        let good = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let rows = [
            (format!("Basic {good}"), true),
            (format!("basic {good}"), true), // RFC 9110 §11.1: scheme is case-insensitive
            (
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("alice:wrong")
                ),
                false,
            ),
            (format!("Bearer {good}"), false),
            ("Basic !!!notbase64".to_string(), false),
            ("Basic".to_string(), false),
        ];
        for (value, expected) in rows {
            assert_eq!(creds.accepts(&with_auth(&value)), expected, "{value}");
        }
        assert!(!creds.accepts(&HeaderMap::new()));
    }

    #[test]
    fn loop_targets() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let rows = [
            ("127.0.0.1", 8080, None, listen, true),
            ("localhost", 8080, None, listen, true),
            // Bound to 127.0.0.1 only: another loopback address is someone else.
            ("127.0.0.2", 8080, None, listen, false),
            ("127.0.0.1", 8081, None, listen, false),
            ("secure.test", 8080, None, listen, false),
            (
                "loop.test",
                8080,
                Some(IpAddr::from([127, 0, 0, 1])),
                listen,
                true,
            ),
            ("127.0.0.1", 8080, None, any, true),
            ("0.0.0.0", 8080, None, listen, true),
            ("[::1]", 8080, None, listen, false),
            ("[::1]", 8080, None, any, true),
        ];
        for (host, port, resolved, listen, expected) in rows {
            assert_eq!(
                targets_listener(host, port, resolved, listen),
                expected,
                "{host}:{port} vs {listen}"
            );
        }
    }
}
