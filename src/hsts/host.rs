//! Host-name rules shared by every part of the proxy: the one normalizer (lowercase, punycode,
//! one trailing dot removed), IP-literal detection, the names HSTS never notes, and the
//! superdomain walk of RFC 6797 §8.2.
//!
//! This file sits at the bottom of the HSTS module: it imports nothing from the rest of the
//! crate, so the store, the learner, the preload import and the proxy can all depend on it.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Normalizes a host name the way the store keys it, and the way the proxy names a host
/// everywhere (HSTS match, loop check, `--resolve`, DNS, leaf names): lowercase ASCII,
/// internationalized labels as punycode A-labels (UTS #46 via `idna`, as the WHATWG URL
/// standard does), and exactly ONE trailing dot removed. Returns `None` for names HSTS cannot
/// apply to: empty, empty labels (so `known.test..` is refused rather than read as
/// `known.test`), characters forbidden in a host, IPv6 literals, or over the DNS limits
/// (253 octets, 63 per label; Chromium's `DNSDomainFromDot` refuses those too). For a request
/// target that may be an IP literal, use [`normalize_target_host`].
///
/// Does not allocate when `host` is already normalized, which is what a well-behaved client
/// sends; this keeps `HstsStore::is_enforced` allocation-free on the hot path.
pub fn normalize_host(host: &str) -> Option<Cow<'_, str>> {
    if is_plain_normalized(host) {
        return Some(Cow::Borrowed(host));
    }
    // UTS #46 maps first (so an ideographic full stop at the end is a root dot too), then the
    // root label goes: a fully qualified name ("example.com.") is the same host (RFC 6797
    // §8.3 compares names without it, as Chromium does). Only ONE dot: a second one is an
    // empty label, and stripping every trailing dot is how `known.test..` once matched no
    // HSTS entry while the upstream lookup still reached `known.test` (issue 11 item 14).
    let ascii = idna::domain_to_ascii_cow(host.as_bytes(), idna::AsciiDenyList::URL).ok()?;
    let ascii = match ascii {
        Cow::Borrowed(b) => Cow::Borrowed(b.strip_suffix('.').unwrap_or(b)),
        Cow::Owned(mut o) => {
            if o.ends_with('.') {
                o.pop();
            }
            Cow::Owned(o)
        }
    };
    if !within_dns_limits(&ascii) {
        return None;
    }
    Some(ascii)
}

/// The normalizer for a request target's host, which may also be an IP literal: an IPv6
/// literal (bracketed or not) becomes its canonical RFC 5952 text without brackets, an IPv4
/// literal in any form the WHATWG URL parser accepts (`127.1`, `0x7f.0.0.1`, `2130706433`)
/// becomes dotted-quad, and a name goes through [`normalize_host`]. `None` (an empty label, a
/// zone identifier, an IPv4-looking name that is no address, …) means the request is refused
/// with 400: one spelling per host, so that the HSTS match, the loop check, `--resolve`, DNS
/// and the leaf name can never disagree about which host a request names.
pub fn normalize_target_host(host: &str) -> Option<Cow<'_, str>> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| Cow::Owned(ip.to_string()));
    }
    // Only an IPv6 literal has a colon (a failed parse costs ~1,500 instructions a request).
    if host.contains(':') {
        if let Ok(ip) = host.parse::<Ipv6Addr>() {
            return Some(Cow::Owned(ip.to_string()));
        }
    }
    if host.bytes().any(|b| b == b'%' || b == b'[' || b == b']') {
        return None;
    }
    let name = normalize_host(host)?;
    if is_ip_literal(&name) {
        let ip = parse_whatwg_ipv4(&name)?;
        if ip.to_string() == name.as_ref() {
            return Some(name);
        }
        return Some(Cow::Owned(ip.to_string()));
    }
    Some(name)
}

/// The WHATWG URL IPv4 parser: one to four dot-separated parts, each decimal, `0x` hex or
/// `0`-prefixed octal; the last part fills the remaining bytes.
fn parse_whatwg_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for part in &parts {
        let (digits, radix) =
            if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
                (hex, 16)
            } else if part.len() > 1 && part.starts_with('0') {
                (&part[1..], 8)
            } else {
                (*part, 10)
            };
        let n = if digits.is_empty() {
            0
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        numbers.push(n);
    }
    let (last, rest) = numbers.split_last()?;
    if rest.iter().any(|&n| n > 255) || *last >= 256u64.pow(5 - numbers.len() as u32) {
        return None;
    }
    let mut value = *last;
    for (i, &n) in rest.iter().enumerate() {
        value += n << (8 * (3 - i));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
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
    // Only an IPv6 literal has a colon; parsing is tried only then (it runs on every request's
    // host, and a failed `Ipv6Addr` parse costs ~1,500 instructions: issue 15).
    if host.contains(':') {
        let unbracketed = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        // Zone identifiers (`fe80::1%25eth0`) are IPv6 too.
        let without_zone = unbracketed.split('%').next().unwrap_or(unbracketed);
        return without_zone.parse::<Ipv6Addr>().is_ok();
    }
    // WHATWG URL "ends in a number": such a host is parsed as IPv4 (and a TLD is never
    // all-numeric), so treat it as an IP literal even when it is not dotted-quad. Every
    // dotted-quad IPv4 address ends in a number too.
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
            // Exactly one trailing dot goes (issue 11 item 14: `known.test..` once went out in
            // clear because the upstream lookup stripped every dot and the HSTS match one).
            ("known.test..", None, false),
            ("known.test...", None, false),
            ("KNOWN.test..", None, false),
            ("known.test.", Some("known.test"), true),
            ("KNOWN.test.", Some("known.test"), false),
            ("..", None, false),
            // An ideographic full stop at the end is a root dot too (UTS #46 maps it first).
            ("known.test\u{3002}", Some("known.test"), false),
            ("known.test.\u{3002}", None, false),
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
    fn normalize_target_host_table() {
        #[rustfmt::skip]
        let rows: &[(&str, Option<&str>)] = &[
            // Names: as normalize_host, one trailing dot, no empty label (issue 11 item 14).
            ("Known.Test.", Some("known.test")),
            ("known.test..", None),
            ("bücher.de", Some("xn--bcher-kva.de")),
            // IPv6 literals, bracketed as in a URI (RFC 3986 §3.2.2) or not: RFC 5952 text.
            ("[::1]", Some("::1")),
            ("[0:0:0:0:0:0:0:1]", Some("::1")),
            ("[2001:DB8::A]", Some("2001:db8::a")),
            ("::1", Some("::1")),
            // Zone identifiers (RFC 6874) and broken brackets are refused.
            ("[fe80::1%25eth0]", None),
            ("[::1", None),
            ("[example.com]", None),
            // IPv4 in the forms the WHATWG URL parser reads, as dotted-quad.
            ("127.0.0.1", Some("127.0.0.1")),
            ("127.0.0.1.", Some("127.0.0.1")),
            ("127.1", Some("127.0.0.1")),
            ("0x7f.0.0.1", Some("127.0.0.1")),
            ("0177.0.0.1", Some("127.0.0.1")),
            ("2130706433", Some("127.0.0.1")),
            // Ends in a number but is no address: WHATWG URL failure.
            ("256.0.0.1", None),
            ("1.2.3.4.5", None),
            ("example.09", None),
            ("", None),
        ];
        for &(input, expected) in rows {
            let got = normalize_target_host(input);
            assert_eq!(got.as_deref(), expected, "normalize_target_host({input:?})");
        }
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
