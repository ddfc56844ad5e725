//! Fuzzes the request-target parsers with arbitrary bytes, the way a client's request line
//! reaches them: whatever `http::Uri` accepts (hyper parses the line with it) goes through
//! `parse_absolute`, `parse_connect` and `inner_target`, and every parsed target through the
//! calls the pipeline makes next (URL, upstream URI, Host field, loop check, HSTS upgrade).
//! The property is the proxy's: no input panics.

#![no_main]

use http::uri::Authority;
use http::Uri;
use libfuzzer_sys::fuzz_target;
use strictproxy::hsts::upgrade::upgrade_uri;
use strictproxy::proxy::guard::targets_listener;
use strictproxy::proxy::target::{inner_target, parse_absolute, parse_connect, Target};

fn follow(target: &Target) {
    let url = target.url();
    let _ = target.upstream_uri();
    let _ = http::HeaderValue::from_str(target.host_header());
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 8080));
    let _ = targets_listener(&target.host, target.port, None, listen);
    // The redirect audit parses the logged URL; the HSTS step parses it as a Uri.
    let _ = url::Url::parse(&url);
    if let Ok(uri) = url.parse::<Uri>() {
        let _ = upgrade_uri(&uri);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(uri) = Uri::try_from(data) else {
        return;
    };
    if let Ok(target) = parse_absolute(&uri) {
        follow(&target);
    }
    if let Ok((host, port, authority)) = parse_connect(&uri) {
        let listen = std::net::SocketAddr::from(([0, 0, 0, 0], port));
        let _ = targets_listener(&host, port, None, listen);
        // A request inside the tunnel, in origin form, takes the CONNECT authority.
        for secure in [false, true] {
            if let Ok(target) = inner_target(&Uri::from_static("/"), &authority, secure) {
                follow(&target);
            }
        }
    }
    let tunnel = Authority::from_static("tunnel.test:8443");
    for secure in [false, true] {
        if let Ok(target) = inner_target(&uri, &tunnel, secure) {
            follow(&target);
        }
    }
});
