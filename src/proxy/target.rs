//! Request targets as a forward proxy receives them: absolute-form URIs for plain requests
//! (RFC 9112 §3.2.2) and authority-form `host:port` for CONNECT (RFC 9112 §3.2.3, RFC 9110
//! §9.3.6). Pure parsing, with errors that say exactly what is wrong, since the client gets
//! them as the body of a `400`.

use http::uri::{Authority, Scheme};
use http::Uri;
use thiserror::Error;

/// What is wrong with a request target.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("request target `{0}` is not in absolute form (http://host/path): this is a proxy; set it as your HTTP proxy instead of requesting it directly")]
    NotAbsolute(String),
    #[error("unsupported scheme `{0}`: strictproxy forwards http:// and ws:// (and https:// through CONNECT)")]
    UnsupportedScheme(String),
    #[error("request target `{0}` has no host")]
    MissingHost(String),
    #[error("request target `{0}` has an invalid port")]
    InvalidPort(String),
    #[error("CONNECT target `{0}` is not host:port (RFC 9110 §9.3.6)")]
    BadConnectTarget(String),
}

/// The schemes a client may use in an absolute-form request to this proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetScheme {
    Http,
    Https,
    Ws,
    Wss,
}

impl TargetScheme {
    /// Whether the exchange with the origin is protected by TLS.
    pub fn is_secure(self) -> bool {
        matches!(self, TargetScheme::Https | TargetScheme::Wss)
    }

    pub fn default_port(self) -> u16 {
        if self.is_secure() {
            443
        } else {
            80
        }
    }

    /// The HTTP scheme used on the wire (a WebSocket handshake is an HTTP/1.1 request).
    pub fn wire(self) -> Scheme {
        if self.is_secure() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TargetScheme::Http => "http",
            TargetScheme::Https => "https",
            TargetScheme::Ws => "ws",
            TargetScheme::Wss => "wss",
        }
    }
}

/// A parsed request target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub scheme: TargetScheme,
    /// The host as written, lowercased, IPv6 literals without brackets.
    pub host: String,
    pub port: u16,
    /// The authority as sent upstream (`host` or `host:port`, brackets kept for IPv6).
    pub authority: Authority,
    /// Path and query, `/` when the target had none.
    pub path_and_query: String,
}

impl Target {
    /// The full URL, as shown in logs and used for redirect audits.
    pub fn url(&self) -> String {
        // Pieces pushed rather than `format!`: once per request (issue 15).
        let scheme = self.scheme.as_str();
        let authority = self.authority.as_str();
        let mut url =
            String::with_capacity(scheme.len() + 3 + authority.len() + self.path_and_query.len());
        url.push_str(scheme);
        url.push_str("://");
        url.push_str(authority);
        url.push_str(&self.path_and_query);
        url
    }

    /// The URI the upstream client is given: the wire scheme with the same authority and path.
    pub fn upstream_uri(&self) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.wire())
            .authority(self.authority.clone())
            .path_and_query(self.path_and_query.as_str())
            .build()
    }

    /// The value of the Host field the origin must see (RFC 9112 §3.2.2: the proxy replaces
    /// Host with the target's authority).
    pub fn host_header(&self) -> &str {
        self.authority.as_str()
    }
}

/// Parses an absolute-form target (`http://host[:port]/path?query`).
pub fn parse_absolute(uri: &Uri) -> Result<Target, TargetError> {
    let text = || uri.to_string();
    let scheme = match uri.scheme_str() {
        None => return Err(TargetError::NotAbsolute(text())),
        Some(s) if s.eq_ignore_ascii_case("http") => TargetScheme::Http,
        Some(s) if s.eq_ignore_ascii_case("https") => TargetScheme::Https,
        Some(s) if s.eq_ignore_ascii_case("ws") => TargetScheme::Ws,
        Some(s) if s.eq_ignore_ascii_case("wss") => TargetScheme::Wss,
        Some(other) => return Err(TargetError::UnsupportedScheme(other.to_string())),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| TargetError::MissingHost(text()))?;
    let path_and_query = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|pq| !pq.is_empty())
        .unwrap_or("/");
    let path_and_query = if path_and_query.starts_with('/') {
        path_and_query.to_string()
    } else {
        format!("/{path_and_query}")
    };
    build(scheme, authority, path_and_query, &text)
}

/// Builds the target of a request received inside a CONNECT tunnel, whose URI is usually in
/// origin-form: the tunnel's authority supplies the host.
pub fn inner_target(uri: &Uri, tunnel: &Authority, secure: bool) -> Result<Target, TargetError> {
    if uri.scheme().is_some() && uri.authority().is_some() {
        let mut target = parse_absolute(uri)?;
        // The tunnel decides security, whatever scheme the client wrote.
        target.scheme = match (secure, target.scheme) {
            (true, TargetScheme::Ws | TargetScheme::Wss) => TargetScheme::Wss,
            (true, _) => TargetScheme::Https,
            (false, TargetScheme::Ws | TargetScheme::Wss) => TargetScheme::Ws,
            (false, _) => TargetScheme::Http,
        };
        return Ok(target);
    }
    let scheme = if secure {
        TargetScheme::Https
    } else {
        TargetScheme::Http
    };
    let path_and_query = uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .filter(|pq| pq.starts_with('/'))
        .unwrap_or_else(|| "/".to_string());
    build(scheme, tunnel, path_and_query, &|| uri.to_string())
}

fn build(
    scheme: TargetScheme,
    authority: &Authority,
    path_and_query: String,
    // The target as received, for error messages only: built when one is needed.
    text: &dyn Fn() -> String,
) -> Result<Target, TargetError> {
    let host = authority.host();
    if host.is_empty() {
        return Err(TargetError::MissingHost(text()));
    }
    // `Authority::port` is None both for "no port" and for one that does not fit in a u16,
    // so read the text after the host ourselves.
    let after_host = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, rest)| rest);
    let port_text = match after_host.rfind(']') {
        Some(close) => after_host[close + 1..].strip_prefix(':'),
        None => after_host.rsplit_once(':').map(|(_, port)| port),
    };
    let explicit_port = port_text.is_some();
    let port = match port_text {
        Some(port_str) => port_str
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| TargetError::InvalidPort(text()))?,
        None => scheme.default_port(),
    };
    // Drop userinfo; lowercase the host (RFC 3986 §3.2.2).
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let host_lower = bare.to_ascii_lowercase();
    // What well-behaved clients send is already in that form: keep it rather than writing and
    // parsing it again (~2,000 instructions a request; issue 15).
    let canonical = !authority.as_str().contains('@')
        && !host.bytes().any(|b| b.is_ascii_uppercase())
        && port_text.is_none_or(|text| !text.starts_with('0'));
    if canonical {
        return Ok(Target {
            scheme,
            host: host_lower,
            port,
            authority: authority.clone(),
            path_and_query,
        });
    }
    let display_host = if bare.contains(':') {
        format!("[{host_lower}]")
    } else {
        host_lower.clone()
    };
    let authority_text = if !explicit_port {
        display_host
    } else {
        format!("{display_host}:{port}")
    };
    let authority = authority_text
        .parse::<Authority>()
        .map_err(|_| TargetError::MissingHost(text()))?;
    Ok(Target {
        scheme,
        host: host_lower,
        port,
        authority,
        path_and_query,
    })
}

/// Parses a CONNECT target: `host:port`, the port required (RFC 9110 §9.3.6).
pub fn parse_connect(uri: &Uri) -> Result<(String, u16, Authority), TargetError> {
    let bad = || TargetError::BadConnectTarget(uri.to_string());
    if uri.scheme().is_some() || uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
        return Err(bad());
    }
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.as_str().contains('@') {
        return Err(bad());
    }
    let port = authority
        .port()
        .and_then(|p| p.as_str().parse::<u16>().ok())
        .filter(|p| *p != 0)
        .ok_or_else(bad)?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port, authority.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_targets() {
        // (input, scheme, host, port, url)
        let rows = [
            (
                "http://Example.com/a?b=1",
                "http",
                "example.com",
                80,
                "http://example.com/a?b=1",
            ),
            (
                "http://example.com",
                "http",
                "example.com",
                80,
                "http://example.com/",
            ),
            (
                "http://example.com:8080/",
                "http",
                "example.com",
                8080,
                "http://example.com:8080/",
            ),
            // An explicit default port is kept in the authority as the client wrote it.
            (
                "http://example.com:80/",
                "http",
                "example.com",
                80,
                "http://example.com:80/",
            ),
            (
                "ws://chat.test/socket",
                "ws",
                "chat.test",
                80,
                "ws://chat.test/socket",
            ),
            ("http://[::1]:81/x", "http", "::1", 81, "http://[::1]:81/x"),
            (
                "http://user@example.com/",
                "http",
                "example.com",
                80,
                "http://example.com/",
            ),
        ];
        for (input, scheme, host, port, url) in rows {
            let target = parse_absolute(&input.parse().unwrap()).unwrap();
            assert_eq!(target.scheme.as_str(), scheme, "{input}");
            assert_eq!(target.host, host, "{input}");
            assert_eq!(target.port, port, "{input}");
            assert_eq!(target.url(), url, "{input}");
        }
    }

    #[test]
    fn bad_absolute_targets_say_why() {
        type Check = fn(&TargetError) -> bool;
        let rows: [(&str, Check); 4] = [
            ("/just/a/path", |e| matches!(e, TargetError::NotAbsolute(_))),
            (
                "ftp://files.test/x",
                |e| matches!(e, TargetError::UnsupportedScheme(s) if s == "ftp"),
            ),
            ("http://example.com:99999/", |e| {
                matches!(e, TargetError::InvalidPort(_))
            }),
            ("http://example.com:0/", |e| {
                matches!(e, TargetError::InvalidPort(_))
            }),
        ];
        for (input, check) in rows {
            let err = parse_absolute(&input.parse().unwrap()).unwrap_err();
            assert!(check(&err), "{input}: {err}");
        }
        let ftp = parse_absolute(&"ftp://x/".parse().unwrap()).unwrap_err();
        assert!(ftp.to_string().contains("unsupported scheme `ftp`"));
    }

    #[test]
    fn connect_targets() {
        let (host, port, _) = parse_connect(&"Secure.Test:443".parse().unwrap()).unwrap();
        assert_eq!((host.as_str(), port), ("secure.test", 443));
        let (host, port, _) = parse_connect(&"[::1]:8443".parse().unwrap()).unwrap();
        assert_eq!((host.as_str(), port), ("::1", 8443));
        // RFC 9110 §9.3.6: the port is required.
        for bad in [
            "secure.test",
            "secure.test:0",
            "secure.test:x",
            "http://a:1/",
        ] {
            let uri: Result<Uri, _> = bad.parse();
            if let Ok(uri) = uri {
                assert!(parse_connect(&uri).is_err(), "{bad}");
            }
        }
    }

    #[test]
    fn inner_targets_take_the_tunnel_authority() {
        let tunnel: Authority = "secure.test:8443".parse().unwrap();
        let target = inner_target(&"/p?q".parse().unwrap(), &tunnel, true).unwrap();
        assert_eq!(target.url(), "https://secure.test:8443/p?q");
        let plain = inner_target(&"/".parse().unwrap(), &tunnel, false).unwrap();
        assert_eq!(plain.url(), "http://secure.test:8443/");
        let default_port: Authority = "secure.test:443".parse().unwrap();
        let target = inner_target(&"/".parse().unwrap(), &default_port, true).unwrap();
        assert_eq!(target.port, 443);
        assert_eq!(
            target.upstream_uri().unwrap().to_string(),
            "https://secure.test:443/"
        );
    }
}
