//! The per-host preload verdict, by hstspreload.org's submission rules: the host is a
//! registrable domain (eTLD+1 by the Public Suffix List, through the `psl` crate), its
//! `Strict-Transport-Security` has `max-age` ≥ 31,536,000, `includeSubDomains` and `preload`,
//! and — where the traffic shows them — `http://host/` redirected to `https://host/` first and
//! `www.host` answered over HTTPS. Each failed rule is named.

use super::log::response_header;
use crate::hsts::header::{parse_sts, StsPolicy};
use crate::traffic::Action;
use crate::traffic::TrafficRecord;
use std::borrow::Cow;
use std::fmt;
use url::Url;

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

/// What the traffic showed about a host beyond its STS field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The origin's last answer to `http://host/` (status, `Location`), when the log holds one
    /// with its response headers. The proxy's own internal redirect does not count: the rule is
    /// about what the site does for a browser that has not seen it yet.
    pub http_root: Option<(u16, Option<String>)>,
    /// Whether `https://www.host/…` answered (`Some(true)`), was tried and only failed
    /// (`Some(false)`), or is not in the log (`None`).
    pub www_https: Option<bool>,
}

impl Observed {
    /// Gathers the observations for `host` from a parsed log.
    pub fn from_log(host: &str, records: &[TrafficRecord]) -> Observed {
        let www = format!("www.{host}");
        let mut observed = Observed::default();
        for rec in records {
            let Ok(url) = Url::parse(&rec.url) else {
                continue;
            };
            match (url.scheme(), url.host_str()) {
                ("http", Some(h)) if h == host && url.path() == "/" => {
                    let is_redirect = (300..400).contains(&rec.status);
                    // An older log has no headers: a redirect's target is unknown then.
                    let knows_location = !is_redirect || !rec.response_headers.is_empty();
                    if rec.action == Action::Forwarded && knows_location {
                        let location = response_header(rec, "location").map(Cow::into_owned);
                        observed.http_root = Some((rec.status, location));
                    }
                }
                ("https", Some(h)) if h == www => {
                    let answered = rec.action == Action::Forwarded && rec.status != 0;
                    observed.www_https = Some(observed.www_https == Some(true) || answered);
                }
                _ => {}
            }
        }
        observed
    }
}

/// The whole hstspreload.org verdict for `host` with the STS `value` it sent over https and
/// what the traffic showed. Rules in the order the site checks them.
pub fn preload_eligibility(host: &str, value: &str, observed: &Observed) -> PreloadVerdict {
    let mut failed = Vec::new();
    if let Some(rule) = registrable_rule(host) {
        failed.push(rule);
    }
    match preload_verdict(value) {
        PreloadVerdict::NotReady(missing) => failed.extend(missing),
        PreloadVerdict::Ready => {}
        other => return other,
    }
    if let Some((status, location)) = &observed.http_root {
        if let Some(rule) = redirect_rule(host, *status, location.as_deref()) {
            failed.push(rule);
        }
    }
    if observed.www_https == Some(false) {
        failed.push(format!("www.{host} did not answer over HTTPS"));
    }
    if failed.is_empty() {
        PreloadVerdict::Ready
    } else {
        PreloadVerdict::NotReady(failed)
    }
}

/// hstspreload.org accepts only a registrable domain (eTLD+1): `example.com`, not
/// `www.example.com` (the entry with includeSubDomains covers it) nor a public suffix.
fn registrable_rule(host: &str) -> Option<String> {
    match psl::domain_str(host) {
        Some(domain) if domain == host => None,
        Some(domain) => Some(format!(
            "not a registrable domain: submit {domain}, which covers {host}"
        )),
        None => Some(format!(
            "not a registrable domain: {host} is a public suffix"
        )),
    }
}

/// hstspreload.org: "Redirect from HTTP to HTTPS on the same host" first, so that the STS field
/// is seen before the site moves anywhere else.
fn redirect_rule(host: &str, status: u16, location: Option<&str>) -> Option<String> {
    let expected = format!("https://{host}/");
    if !(300..400).contains(&status) {
        return Some(format!(
            "http://{host}/ answered {status} instead of redirecting to {expected}"
        ));
    }
    let base = Url::parse(&format!("http://{host}/")).ok()?;
    let target = location.and_then(|l| base.join(l).ok());
    match target {
        Some(t) if t.scheme() == "https" && t.host_str() == Some(host) => None,
        Some(t) => Some(format!(
            "http://{host}/ redirected to {t}, not to {expected} first"
        )),
        None => Some(format!(
            "http://{host}/ answered {status} without a usable Location to {expected}"
        )),
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "max-age=31536000; includeSubDomains; preload";

    fn redirect(status: u16, location: Option<&str>) -> Observed {
        Observed {
            http_root: Some((status, location.map(str::to_owned))),
            www_https: None,
        }
    }

    #[test]
    fn eligibility_table() {
        let none = Observed::default();
        let www_failed = Observed {
            http_root: None,
            www_https: Some(false),
        };
        let www_ok = Observed {
            http_root: Some((301, Some("https://example.com/".into()))),
            www_https: Some(true),
        };
        #[rustfmt::skip]
        let rows: Vec<(&str, &str, &str, Observed, &[&str])> = vec![
            // hstspreload.org: everything met, nothing else in the traffic.
            ("all rules met", "example.com", GOOD, none.clone(), &[]),
            ("all rules met, and the traffic shows the redirect and www", "example.com", GOOD, www_ok, &[]),
            // Registrable domain (eTLD+1 by the Public Suffix List).
            ("a subdomain is not submitted", "www.example.com", GOOD, none.clone(), &["not a registrable domain: submit example.com, which covers www.example.com"]),
            ("PSL: co.uk is a suffix, example.co.uk registrable", "example.co.uk", GOOD, none.clone(), &[]),
            ("PSL: a.example.co.uk is under example.co.uk", "a.example.co.uk", GOOD, none.clone(), &["not a registrable domain: submit example.co.uk, which covers a.example.co.uk"]),
            ("PSL private section: github.io is a suffix", "github.io", GOOD, none.clone(), &["not a registrable domain: github.io is a public suffix"]),
            // Header rules.
            ("max-age below one year", "example.com", "max-age=600; includeSubDomains; preload", none.clone(), &["max-age 600 < 31536000"]),
            ("no includeSubDomains", "example.com", "max-age=31536000; preload", none.clone(), &["no includeSubDomains"]),
            ("no preload", "example.com", "max-age=31536000; includeSubDomains", none.clone(), &["no preload"]),
            // http://host/ must redirect to https://host/ first.
            ("http root redirected to https same host", "example.com", GOOD, redirect(301, Some("https://example.com/")), &[]),
            ("a relative Location stays on http", "example.com", GOOD, redirect(302, Some("/login")), &["http://example.com/ redirected to http://example.com/login, not to https://example.com/ first"]),
            ("redirect to www first is refused by hstspreload.org", "example.com", GOOD, redirect(301, Some("https://www.example.com/")), &["http://example.com/ redirected to https://www.example.com/, not to https://example.com/ first"]),
            ("http root served a page", "example.com", GOOD, redirect(200, None), &["http://example.com/ answered 200 instead of redirecting to https://example.com/"]),
            ("redirect without Location", "example.com", GOOD, redirect(301, None), &["http://example.com/ answered 301 without a usable Location to https://example.com/"]),
            // www.host must answer over HTTPS where the traffic tried it.
            ("www tried over https and failed", "example.com", GOOD, www_failed, &["www.example.com did not answer over HTTPS"]),
            // Several failures are all named, in the site's order.
            ("every rule failed", "www.example.com", "max-age=1", redirect(200, None), &["not a registrable domain: submit example.com, which covers www.example.com", "max-age 1 < 31536000", "no includeSubDomains", "no preload", "http://www.example.com/ answered 200 instead of redirecting to https://www.example.com/"]),
        ];
        for (why, host, value, observed, failed) in rows {
            let verdict = preload_eligibility(host, value, &observed);
            if failed.is_empty() {
                assert_eq!(verdict, PreloadVerdict::Ready, "{why}");
            } else {
                assert_eq!(
                    verdict,
                    PreloadVerdict::NotReady(failed.iter().map(|s| s.to_string()).collect()),
                    "{why}"
                );
            }
        }
        // RFC 6797 §6.1: an invalid field is invalid whatever else holds.
        assert!(matches!(
            preload_eligibility("example.com", "preload", &Observed::default()),
            PreloadVerdict::Invalid(_)
        ));
    }
}
