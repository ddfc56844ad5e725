//! Host-name rules shared by every part of the proxy: the one normalizer (lowercase, punycode,
//! one trailing dot removed), IP-literal detection, the names HSTS never notes, and the
//! superdomain walk of RFC 6797 §8.2.
//!
//! This file sits at the bottom of the HSTS module: it imports nothing from the rest of the
//! crate, so the store, the learner, the preload import and the proxy can all depend on it.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Normalizes a host name the way the store keys it: lowercase ASCII, no trailing dot,
/// internationalized labels as punycode A-labels (UTS #46 via `idna`, as the WHATWG URL
/// standard does). Returns `None` for names HSTS cannot apply to: empty, empty labels,
/// characters forbidden in a host, IPv6 literals, or over the DNS limits (253 octets, 63 per
/// label; Chromium's `DNSDomainFromDot` refuses those too).
///
/// Does not allocate when `host` is already normalized, which is what a well-behaved client
/// sends; this keeps [`HstsStore::is_enforced`] allocation-free on the hot path.
pub fn normalize_host(host: &str) -> Option<Cow<'_, str>> {
    if is_plain_normalized(host) {
        return Some(Cow::Borrowed(host));
    }
    // A fully qualified name ("example.com.") is the same host (RFC 6797 §8.3 compares
    // names without the root label, as Chromium does).
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    let ascii = idna::domain_to_ascii_cow(host.as_bytes(), idna::AsciiDenyList::URL).ok()?;
    if !within_dns_limits(&ascii) {
        return None;
    }
    Some(ascii)
}

/// The fast path: only `[a-z0-9_-]` labels joined by single dots, within DNS limits.
/// `idna` would return such a name unchanged; punycode labels are taken as sent, since a
/// bogus A-label can only ever match an entry of its own.
fn is_plain_normalized(host: &str) -> bool {
    host.bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
        && within_dns_limits(host)
}

fn within_dns_limits(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63)
}

/// Whether `host` is an IP address literal: IPv4, IPv6 with or without brackets, or a name
/// whose last label is a number, which the WHATWG URL parser reads as IPv4 (`127.1`,
/// `0x7f.1`, `2130706433`). RFC 6797 §8.1.1 and §8.3: HSTS never applies to IP literals.
pub fn is_ip_literal(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    // Zone identifiers (`fe80::1%25eth0`) are IPv6 too.
    let without_zone = unbracketed.split('%').next().unwrap_or(unbracketed);
    if without_zone.parse::<Ipv6Addr>().is_ok() {
        return true;
    }
    // WHATWG URL "ends in a number": such a host is parsed as IPv4 (and a TLD is never
    // all-numeric), so treat it as an IP literal even when it is not dotted-quad.
    let last = host.rsplit('.').next().unwrap_or(host);
    !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || last
                .strip_prefix("0x")
                .or_else(|| last.strip_prefix("0X"))
                .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit())))
}

/// Whether a host must never be noted as a Known HSTS Host: IP literals (RFC 6797 §8.1.1)
/// and `localhost` with its subdomains (RFC 6761 §6.3: always loopback, so a header from a
/// local dev server must not pin every other local project to HTTPS, the pain Chromium
/// users know from `localhost` HSTS).
pub fn is_never_noted(host: &str) -> bool {
    if is_ip_literal(host) {
        return true;
    }
    let host = host.strip_suffix('.').unwrap_or(host).as_bytes();
    const SUFFIX: &[u8] = b".localhost";
    host.eq_ignore_ascii_case(b"localhost")
        || (host.len() > SUFFIX.len()
            && host[host.len() - SUFFIX.len()..].eq_ignore_ascii_case(SUFFIX))
}

/// `host` and each of its superdomains, nearest first, with whether it is the host itself.
/// The last label (a TLD such as `dev`) is included: whole TLDs are preloaded.
pub fn self_and_superdomains(host: &str) -> impl Iterator<Item = (&str, bool)> {
    std::iter::once((host, true)).chain(
        host.match_indices('.')
            .map(move |(dot, _)| (&host[dot + 1..], false)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_host_table() {
        let rows: &[(&str, Option<&str>, bool)] = &[
            // (input, normalized, borrowed without allocation)
            ("example.com", Some("example.com"), true),
            ("a-b_c.example.com", Some("a-b_c.example.com"), true),
            ("xn--bcher-kva.de", Some("xn--bcher-kva.de"), true),
            // Case-insensitive host names (RFC 4343; RFC 6797 §8.2 compares case-insensitively).
            ("EXAMPLE.com", Some("example.com"), false),
            // A trailing dot names the same host (RFC 6797 §8.3 compares without it; Chromium).
            ("example.com.", Some("example.com"), true),
            // Internationalized names become punycode A-labels (RFC 6797 §8.3 item 4, UTS #46).
            ("bücher.de", Some("xn--bcher-kva.de"), false),
            ("BÜCHER.de.", Some("xn--bcher-kva.de"), false),
            // Ideographic full stop is a label separator (UTS #46 mapping).
            ("example\u{3002}com", Some("example.com"), false),
            // Invalid: empty, empty labels, forbidden characters, ports, brackets.
            ("", None, false),
            (".", None, false),
            ("example..com", None, false),
            (".example.com", None, false),
            ("example.com..", None, false),
            ("exa mple.com", None, false),
            ("example.com:443", None, false),
            ("[::1]", None, false),
            ("a/b", None, false),
            // Over the DNS limits (63 per label, 253 in all; Chromium DNSDomainFromDot).
            (&"a".repeat(64), None, false),
        ];
        for &(input, expected, borrowed) in rows {
            let got = normalize_host(input);
            assert_eq!(got.as_deref(), expected, "normalize_host({input:?})");
            if let Some(got) = got {
                assert_eq!(
                    matches!(got, Cow::Borrowed(_)),
                    borrowed,
                    "borrowed? {input:?}"
                );
            }
        }
        let long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
        assert!(long.len() > 253);
        assert_eq!(normalize_host(&long), None);
    }

    #[test]
    fn ip_literal_and_never_noted_table() {
        let rows: &[(&str, bool, bool)] = &[
            // (host, is_ip_literal, is_never_noted)
            ("127.0.0.1", true, true),     // RFC 6797 §8.1.1: IPv4 literal
            ("10.0.0.1.", true, true),     // with the root dot
            ("::1", true, true),           // IPv6 without brackets
            ("[::1]", true, true),         // IPv6 as a URI host (RFC 3986 §3.2.2)
            ("[2001:db8::1]", true, true), // IPv6 as a URI host
            ("[fe80::1%25eth0]", true, true), // IPv6 with a zone id (RFC 6874)
            ("127.1", true, true),         // WHATWG URL: ends in a number → IPv4
            ("0x7f.0.0.1", true, true),    // WHATWG URL: hex IPv4 part
            ("2130706433", true, true),    // WHATWG URL: one-number IPv4
            ("localhost", false, true),    // RFC 6761 §6.3
            ("LOCALHOST.", false, true),   // case and root dot
            ("app.localhost", false, true), // RFC 6761 §6.3: subdomains of localhost
            ("notlocalhost", false, false), // only the label, not the suffix string
            ("localhost.example", false, false),
            ("example.com", false, false),
            ("1.example.com", false, false), // a numeric first label is fine
            ("v6.example", false, false),
        ];
        for &(host, ip, never) in rows {
            assert_eq!(is_ip_literal(host), ip, "is_ip_literal({host:?})");
            assert_eq!(is_never_noted(host), never, "is_never_noted({host:?})");
        }
    }
}
