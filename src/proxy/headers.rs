//! Header surgery for a forwarding proxy: hop-by-hop fields removed (RFC 9110 §7.6.1), `Via`
//! appended (§7.6.3), and the `Via` loop check. Pure functions over `http::HeaderMap`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Fields that describe one connection and never cross a proxy (RFC 9110 §7.6.1, plus the
/// non-standard `Proxy-Connection` and `Keep-Alive` that old clients still send).
// A `static`, not a `const`: a const array of names is built and dropped at every use
// (~500 instructions a request; issue 15).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Whether the headers ask for a WebSocket upgrade (RFC 6455 §4.1): `Upgrade: websocket`
/// with `upgrade` among the Connection options.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade_is_websocket = headers
        .get_all(header::UPGRADE)
        .iter()
        .any(|v| has_token(v, "websocket"));
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| has_token(v, "upgrade"));
    upgrade_is_websocket && connection_upgrade
}

/// Removes every hop-by-hop field: the fixed list, and every field the Connection header
/// names. When `keep_websocket_upgrade` is set, `Upgrade: websocket` and `Connection: upgrade`
/// are kept, since the upgrade must reach the origin for the handshake to happen.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_websocket_upgrade: bool) {
    // Fields named by Connection are hop-by-hop too (§7.6.1); collect before removing it.
    let mut doomed: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        if let Ok(text) = value.to_str() {
            for token in text.split(',') {
                let token = token.trim();
                if token.is_empty() || token.eq_ignore_ascii_case("upgrade") {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    doomed.push(name);
                }
            }
        }
    }
    // One pass over the names present rather than a removal (a hash lookup) per name in the
    // list: most messages carry one hop-by-hop field or none (issue 15).
    for name in headers.keys() {
        if HOP_BY_HOP.contains(name) || (!keep_websocket_upgrade && name == header::UPGRADE) {
            doomed.push(name.clone());
        }
    }
    for name in doomed {
        headers.remove(name);
    }
    if keep_websocket_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
}

/// Appends this proxy's `Via` entry, keeping any the message already had (RFC 9110 §7.6.3).
pub fn append_via(headers: &mut HeaderMap, via: &HeaderValue) {
    headers.append(header::VIA, via.clone());
}

/// Whether a `Via` field already names this proxy (`pseudonym` is its received-by token):
/// the request has been through us before, so forwarding it would loop.
pub fn via_contains(headers: &HeaderMap, pseudonym: &str) -> bool {
    headers.get_all(header::VIA).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',').any(|entry| {
                // entry = received-protocol received-by [ comment ]
                entry.split_whitespace().nth(1) == Some(pseudonym)
            })
        })
    })
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|text| {
        text.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn strips_fixed_and_connection_named_fields() {
        // RFC 9110 §7.6.1: Connection and the fields it names; RFC 9112 for TE/Trailer/TE.
        let mut headers = map(&[
            ("connection", "close, X-Secret"),
            ("x-secret", "1"),
            ("proxy-connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic dTpw"),
            ("proxy-authenticate", "Basic"),
            ("accept", "*/*"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut headers, false);
        let left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["accept", "x-kept"]);
    }

    #[test]
    fn websocket_upgrade_survives() {
        // RFC 6455 §4.1: the origin needs Upgrade and Connection: upgrade.
        let mut headers = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert!(is_websocket_upgrade(&headers));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["upgrade"], "websocket");
        assert!(headers.contains_key("sec-websocket-key"));
    }

    #[test]
    fn websocket_detection() {
        let rows: [(&[(&str, &str)], bool); 4] = [
            (&[("upgrade", "websocket"), ("connection", "Upgrade")], true),
            (
                &[
                    ("upgrade", "WebSocket"),
                    ("connection", "keep-alive, upgrade"),
                ],
                true,
            ),
            (&[("upgrade", "websocket")], false),
            (&[("upgrade", "h2c"), ("connection", "upgrade")], false),
        ];
        for (pairs, expected) in rows {
            assert_eq!(is_websocket_upgrade(&map(pairs)), expected, "{pairs:?}");
        }
    }

    #[test]
    fn via_is_appended_and_loops_are_seen() {
        let mut headers = map(&[("via", "1.1 other-proxy")]);
        assert!(!via_contains(&headers, "strictproxy-abc"));
        append_via(
            &mut headers,
            &HeaderValue::from_static("1.1 strictproxy-abc"),
        );
        assert_eq!(headers.get_all("via").iter().count(), 2);
        assert!(via_contains(&headers, "strictproxy-abc"));
        let combined = map(&[("via", "1.0 fred, 1.1 strictproxy-abc (strictproxy)")]);
        assert!(via_contains(&combined, "strictproxy-abc"));
        assert!(!via_contains(&combined, "strictproxy-abd"));
    }
}
