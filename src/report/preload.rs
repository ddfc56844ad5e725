//! The per-host preload verdict: what one host's `Strict-Transport-Security` says about the
//! HSTS preload list (hstspreload.org's submission requirements).

use crate::hsts::header::{parse_sts, StsPolicy};
use std::fmt;

/// The preload list's minimum `max-age`: one year (hstspreload.org submission requirements;
/// Chromium's `net/http/transport_security_state_static.json` policy).
pub const PRELOAD_MIN_MAX_AGE: u64 = 31_536_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreloadVerdict {
    /// max-age ≥ 31536000, includeSubDomains and preload are all there.
    Ready,
    /// A valid field that misses some requirement; each entry says which.
    NotReady(Vec<String>),
    /// The field does not parse (RFC 6797 §6.1: browsers ignore it).
    Invalid(String),
    /// Only ever sent over plain HTTP, where browsers ignore it (RFC 6797 §8.1).
    OverHttpOnly,
}

/// The header part of the preload requirements (hstspreload.org): max-age of at least one
/// year, includeSubDomains, and the preload token. (The parser caps max-age at one year, so
/// "at least" means "at the cap".)
pub fn preload_verdict(value: &str) -> PreloadVerdict {
    match parse_sts(value.as_bytes()) {
        Err(e) => PreloadVerdict::Invalid(e.to_string()),
        Ok(StsPolicy {
            max_age,
            include_subdomains,
            preload,
        }) => {
            let mut missing = Vec::new();
            if max_age < PRELOAD_MIN_MAX_AGE {
                missing.push(format!("max-age {max_age} < {PRELOAD_MIN_MAX_AGE}"));
            }
            if !include_subdomains {
                missing.push("no includeSubDomains".to_owned());
            }
            if !preload {
                missing.push("no preload".to_owned());
            }
            if missing.is_empty() {
                PreloadVerdict::Ready
            } else {
                PreloadVerdict::NotReady(missing)
            }
        }
    }
}

impl fmt::Display for PreloadVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreloadVerdict::Ready => f.write_str("preload-ready"),
            PreloadVerdict::NotReady(missing) => {
                write!(f, "not preload-ready: {}", missing.join(", "))
            }
            PreloadVerdict::Invalid(e) => {
                write!(f, "invalid, ignored by browsers (RFC 6797 §6.1): {e}")
            }
            PreloadVerdict::OverHttpOnly => {
                f.write_str("sent over plain HTTP only, ignored by browsers (RFC 6797 §8.1)")
            }
        }
    }
}
