//! Fuzzes the redirect audit (Location resolution, HSTS upgrade of the target, the 301/302
//! rewrite) with an arbitrary Location field and request URL, under both policies, and applies
//! the decision to a response as the pipeline does. The property: no input panics, and a
//! rewritten Location is always a valid field value.
//!
//! Input layout: byte 0 picks the method, byte 1 the status, byte 2 the policy and which hosts
//! are HSTS-known; the rest is `request URL` NUL `Location bytes`.

#![no_main]

use http::{HeaderValue, Method, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use strictproxy::redirect::{audit, RedirectPolicy};

const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"];
const STATUSES: [u16; 9] = [300, 301, 302, 303, 304, 305, 307, 308, 399];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let method = Method::from_bytes(METHODS[data[0] as usize % METHODS.len()].as_bytes())
        .unwrap_or(Method::GET);
    let Ok(status) = StatusCode::from_u16(STATUSES[data[1] as usize % STATUSES.len()]) else {
        return;
    };
    let policy = if data[2] & 1 == 0 {
        RedirectPolicy::Log
    } else {
        RedirectPolicy::Rewrite
    };
    let all_known = data[2] & 2 != 0;
    let rest = &data[3..];
    let (url_bytes, location_bytes) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let request_url = std::str::from_utf8(url_bytes)
        .ok()
        .and_then(|s| url::Url::parse(s).ok())
        .unwrap_or_else(|| url::Url::parse("https://shop.test/cart?x=1").unwrap());
    let location = location_bytes.and_then(|b| HeaderValue::from_bytes(b).ok());
    let hsts_known = move |host: &str| all_known || host.ends_with(".test");
    let decision = audit(
        &method,
        &request_url,
        status,
        location.as_ref(),
        policy,
        &hsts_known,
    );
    let mut response = Response::new(());
    *response.status_mut() = status;
    if let Some(location) = location {
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
    }
    let (mut parts, ()) = response.into_parts();
    decision.apply(&mut parts);
    if let Some(new) = parts.headers.get(http::header::LOCATION) {
        assert!(HeaderValue::from_bytes(new.as_bytes()).is_ok());
    }
    let _ = decision.rewritten_from(status);
    for finding in &decision.findings {
        let _ = strictproxy::redirect::console_line(finding);
    }
});
