//! Fuzzes the Strict-Transport-Security parser with arbitrary field bytes, as an upstream can
//! send them (obs-text, NUL-free but otherwise anything). Beyond "never panics", it checks the
//! two promises the store relies on: max-age is capped, and a policy written back in canonical
//! form parses to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strictproxy::hsts::header::{parse_sts, MAX_AGE_CAP};

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = parse_sts(data) else {
        return;
    };
    assert!(policy.max_age <= MAX_AGE_CAP, "uncapped max-age {policy:?}");
    let mut canonical = format!("max-age={}", policy.max_age);
    if policy.include_subdomains {
        canonical.push_str("; includeSubDomains");
    }
    if policy.preload {
        canonical.push_str("; preload");
    }
    assert_eq!(parse_sts(canonical.as_bytes()), Ok(policy), "{canonical}");
});
