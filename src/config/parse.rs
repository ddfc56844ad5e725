//! The validation of each key: a function from the raw value (as written in TOML or on the
//! command line) to the typed one, with an error that names the key and says what it allows.
//! Every function takes the key's name, so the key table passes it and no message repeats it.

use super::{ConfigError, LogFormat};
use crate::redirect::RedirectPolicy;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

type Parsed<T> = Result<T, ConfigError>;

fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { key, message }
}

/// A value used as given (paths, lists of files, switches).
pub(super) fn keep<T>(_key: &'static str, value: T) -> Parsed<T> {
    Ok(value)
}

/// An optional file: the empty string means none.
pub(super) fn optional_path(_key: &'static str, value: PathBuf) -> Parsed<Option<PathBuf>> {
    Ok((!value.as_os_str().is_empty()).then_some(value))
}

pub(super) fn addr(key: &'static str, text: String) -> Parsed<SocketAddr> {
    text.parse().map_err(|_| {
        invalid(key, format!("`{text}` is not an address of the form IP:PORT (for example 127.0.0.1:8080 or [::1]:8080)"))
    })
}

/// The admin API can change what the proxy enforces: never expose it. Empty: no admin API.
pub(super) fn admin_addr(key: &'static str, text: String) -> Parsed<Option<SocketAddr>> {
    if text.is_empty() {
        return Ok(None);
    }
    let addr = addr(key, text)?;
    if !addr.ip().is_loopback() {
        return Err(invalid(
            key,
            format!("{addr} is not a loopback address; the admin API binds loopback only (for example 127.0.0.1:8081)"),
        ));
    }
    Ok(Some(addr))
}

/// At least one second: a zero timeout would fail every request at once.
pub(super) fn seconds(key: &'static str, value: u64) -> Parsed<Duration> {
    if value == 0 {
        return Err(invalid(key, "must be at least 1 second".to_string()));
    }
    Ok(Duration::from_secs(value))
}

/// At least one: a zero limit or capacity would refuse everything.
pub(super) fn positive(key: &'static str, value: usize) -> Parsed<usize> {
    if value == 0 {
        return Err(invalid(key, "must be at least 1".to_string()));
    }
    Ok(value)
}

pub(super) fn redirect_policy(key: &'static str, text: String) -> Parsed<RedirectPolicy> {
    text.parse()
        .map_err(|_| invalid(key, format!("`{text}` is not one of: log, rewrite")))
}

pub(super) fn log_format(key: &'static str, text: String) -> Parsed<LogFormat> {
    text.parse().map_err(|message| invalid(key, message))
}

/// `USER:PASS`, both parts non-empty; the empty string means no authentication.
pub(super) fn auth(key: &'static str, text: String) -> Parsed<Option<(String, String)>> {
    if text.is_empty() {
        return Ok(None);
    }
    match text.split_once(':') {
        Some((user, pass)) if !user.is_empty() && !pass.is_empty() => {
            Ok(Some((user.to_string(), pass.to_string())))
        }
        _ => Err(invalid(
            key,
            "expected USER:PASS with both parts non-empty".to_string(),
        )),
    }
}

/// `HOST=IP` items, like curl's `--resolve`; a later item for the same host wins.
pub(super) fn resolve(key: &'static str, items: Vec<String>) -> Parsed<HashMap<String, IpAddr>> {
    let mut map = HashMap::new();
    for item in &items {
        let bad = |why: &str| {
            invalid(
                key,
                format!("`{item}` {why}; expected HOST=IP, for example secure.test=127.0.0.1"),
            )
        };
        let (host, ip) = item.split_once('=').ok_or_else(|| bad("has no `=`"))?;
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Err(bad("names no host"));
        }
        let ip = ip.trim().trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = ip.parse().map_err(|_| bad("has no valid IP"))?;
        map.insert(host, ip);
    }
    Ok(map)
}

/// Passthrough patterns: a host (a port is tolerated) or `*.domain`.
pub(super) fn passthrough(key: &'static str, patterns: Vec<String>) -> Parsed<Vec<String>> {
    for pattern in &patterns {
        let body = pattern.strip_prefix("*.").unwrap_or(pattern);
        let valid = !body.is_empty()
            && !body.contains('*')
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
        if !valid {
            return Err(invalid(
                key,
                format!("`{pattern}` is not a host name or `*.domain` pattern (for example bank.example or *.example.com)"),
            ));
        }
    }
    Ok(patterns)
}

/// HSTS exemptions: an exact host or `*.domain`, no port (HSTS has none, RFC 6797 §8.3).
pub(super) fn hsts_exempt(key: &'static str, patterns: Vec<String>) -> Parsed<Vec<String>> {
    for pattern in &patterns {
        let body = pattern.strip_prefix("*.").unwrap_or(pattern);
        let valid = !body.is_empty()
            && !body.starts_with('.')
            && !body.contains('*')
            && body
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-' || c == '_');
        if !valid {
            return Err(invalid(
                key,
                format!("`{pattern}` is not a host name or `*.domain` pattern (for example printer.lab.test or *.lab.test)"),
            ));
        }
    }
    Ok(patterns)
}

/// CIDRs such as `10.0.0.0/8` or `fd00::/8`; a bare address means that address alone.
pub(super) fn cidrs(key: &'static str, items: Vec<String>) -> Parsed<Vec<ipnet::IpNet>> {
    items
        .iter()
        .map(|item| {
            let text = item.trim();
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        key,
                        format!("`{text}` is not a CIDR (for example 10.0.0.0/8, 192.168.1.20/32 or fd00::/8)"),
                    )
                })
        })
        .collect()
}

/// `redis://[user:password@]host[:port][/db]` or `rediss://` (TLS); empty means none. The
/// message never repeats the password.
pub(super) fn redis_url(key: &'static str, text: String) -> Parsed<Option<String>> {
    if text.is_empty() {
        return Ok(None);
    }
    let bad = |why: &str| {
        invalid(
            key,
            format!(
                "`{}` {why}; expected redis://[user:password@]host:port/db or rediss://…",
                mask_url_password(&text)
            ),
        )
    };
    let url = url::Url::parse(&text).map_err(|_| bad("is not a URL"))?;
    if url.scheme() != "redis" && url.scheme() != "rediss" {
        return Err(bad("is neither redis:// nor rediss://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("names no host"));
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(bad("has a database that is not a number"));
    }
    Ok(Some(text))
}

/// Not empty: an empty prefix would make the fleet scan and own the whole database.
pub(super) fn redis_prefix(key: &'static str, prefix: String) -> Parsed<String> {
    if prefix.is_empty() {
        return Err(invalid(
            key,
            "must not be empty (for example \"strictproxy:hsts:\")".to_string(),
        ));
    }
    Ok(prefix)
}

/// `url` with its password (if any) replaced by `***`, for banners, logs and error
/// messages: `redis://user:secret@h:6379/0` → `redis://user:***@h:6379/0`. Text that is not
/// a URL is returned with anything between `://` and the last `@` masked.
pub fn mask_url_password(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.password().is_none() {
            return url.to_string();
        }
        if parsed.set_password(Some("***")).is_ok() {
            return parsed.to_string();
        }
    }
    // Not parseable: mask the whole userinfo rather than guess where the password is.
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end + 3 => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// `example.com` matches that host only; `*.example.com` matches the domain and every
/// subdomain. Host names compare case-insensitively (RFC 4343).
pub fn passthrough_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            host.eq_ignore_ascii_case(domain)
                || (host.len() > domain.len()
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
                    && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain))
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked() {
        // (url, shown)
        let rows = [
            ("redis://user:secret@h:6379/0", "redis://user:***@h:6379/0"),
            ("rediss://:secret@h:6380", "rediss://:***@h:6380"),
            ("redis://h:6379/0", "redis://h:6379/0"),
            ("redis://user@h:6379", "redis://user@h:6379"),
            // Not a URL the parser accepts: the whole userinfo goes.
            ("redis://us er:sec ret@h:x", "redis://***@h:x"),
        ];
        for (url, shown) in rows {
            assert_eq!(mask_url_password(url), shown, "{url}");
        }
    }

    #[test]
    fn passthrough_patterns() {
        // (pattern, host, matches)
        let rows = [
            ("bank.example", "bank.example", true),
            ("bank.example", "BANK.example", true),
            ("bank.example", "www.bank.example", false),
            ("*.example.com", "example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "badexample.com", false),
            ("*.example.com", "example.com.evil", false),
        ];
        for (pattern, host, expected) in rows {
            assert_eq!(
                passthrough_matches(pattern, host),
                expected,
                "{pattern} {host}"
            );
        }
    }
}
