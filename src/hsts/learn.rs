//! Deciding what a response's `Strict-Transport-Security` field teaches the store.
//!
//! A pure function over the response headers and how the response arrived. It returns the
//! store update to apply (if any), the finding to log (if any), and the raw field for the
//! traffic log. The rules (RFC 6797 §8.1):
//!
//! - only the first STS field of a response is processed;
//! - only a response over secure transport *without errors* teaches anything: over plain
//!   HTTP the field is ignored (and the site is told so, finding `sts_over_http`); over TLS
//!   whose certificate did not verify it is ignored silently, as browsers do;
//! - a malformed field is ignored (finding `sts_invalid`);
//! - IP-literal hosts (§8.1.1) and `localhost` are never noted;
//! - `max-age=0` means "forget this host" (§6.1.1).

use http::header::STRICT_TRANSPORT_SECURITY;
use http::HeaderMap;

use super::header::{parse_sts, StsPolicy};
use super::host::{is_never_noted, normalize_host};
use crate::finding::{Finding, FindingKind};

/// How the response carrying the field reached the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain `http://` (absolute-form forwarding).
    PlainHttp,
    /// Intercepted TLS whose upstream certificate verified without error.
    TlsVerified,
    /// TLS with a certificate error the proxy was told to accept: RFC 6797 §8.1 says to
    /// ignore the field, and it is not the site's mistake to report.
    TlsUnverified,
}

/// A change the store must make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StsUpdate {
    /// Note (or refresh) `host` as a Known HSTS Host with this policy (RFC 6797 §8.1.1).
    Learn { host: String, policy: StsPolicy },
    /// The host sent `max-age=0`: it is no longer a Known HSTS Host (RFC 6797 §6.1.1).
    Forget { host: String },
}

impl StsUpdate {
    /// The normalized host the update is about.
    pub fn host(&self) -> &str {
        match self {
            StsUpdate::Learn { host, .. } | StsUpdate::Forget { host } => host,
        }
    }
}

/// What one response's STS field means for the store and for the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StsObservation {
    /// The store update to apply, if the field was valid and may be learned from.
    pub update: Option<StsUpdate>,
    /// The finding to record, if the site did something to fix.
    pub finding: Option<Finding>,
    /// The first STS field value as text, for the traffic log (invalid UTF-8 replaced).
    pub raw: Option<String>,
}

/// Examines a response's headers. `secure_verified` is true when the response came over
/// intercepted TLS whose upstream certificate verified; false means plain HTTP.
/// `host` is the request's host as the client named it (no port).
pub fn observe(secure_verified: bool, host: &str, headers: &HeaderMap) -> StsObservation {
    let transport = if secure_verified {
        Transport::TlsVerified
    } else {
        Transport::PlainHttp
    };
    observe_on(transport, host, headers)
}

/// [`observe`], with the three transports told apart.
pub fn observe_on(transport: Transport, host: &str, headers: &HeaderMap) -> StsObservation {
    // RFC 6797 §8.1: "If a UA receives more than one STS header field in an HTTP response
    // message over secure transport, then the UA MUST process only the first such header field."
    let Some(value) = headers.get(STRICT_TRANSPORT_SECURITY) else {
        return StsObservation::default();
    };
    let raw = Some(String::from_utf8_lossy(value.as_bytes()).into_owned());
    let display_host = host.trim_end_matches('.');

    match transport {
        Transport::PlainHttp => {
            return StsObservation {
                update: None,
                finding: Some(Finding::new(
                    FindingKind::StsOverHttp,
                    format!(
                        "Strict-Transport-Security on plain http://{display_host}/ is ignored \
                         (RFC 6797 §8.1): send it over HTTPS only, and answer http:// with a \
                         redirect to https://"
                    ),
                )),
                raw,
            }
        }
        Transport::TlsUnverified => {
            return StsObservation {
                update: None,
                finding: None,
                raw,
            }
        }
        Transport::TlsVerified => {}
    }

    let policy = match parse_sts(value.as_bytes()) {
        Ok(policy) => policy,
        Err(error) => {
            return StsObservation {
                update: None,
                finding: Some(Finding::new(
                    FindingKind::StsInvalid,
                    format!(
                        "Strict-Transport-Security from https://{display_host}/ is ignored: \
                         {error}. Send a well-formed value such as \
                         `max-age=31536000; includeSubDomains`"
                    ),
                )),
                raw,
            }
        }
    };

    // RFC 6797 §8.1.1: IP literals are never noted; localhost neither (see store.rs).
    let update = normalize_host(host)
        .filter(|h| !is_never_noted(h))
        .map(|h| {
            let host = h.into_owned();
            if policy.max_age == 0 {
                StsUpdate::Forget { host }
            } else {
                StsUpdate::Learn { host, policy }
            }
        });
    StsObservation {
        update,
        finding: None,
        raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        map
    }

    fn learn(host: &str, max_age: u64, include_subdomains: bool) -> Option<StsUpdate> {
        Some(StsUpdate::Learn {
            host: host.into(),
            policy: StsPolicy {
                max_age,
                include_subdomains,
                preload: false,
            },
        })
    }

    #[derive(Debug, PartialEq)]
    enum Expect {
        Update(Option<StsUpdate>),
        Finding(FindingKind),
    }

    #[test]
    fn observe_table() {
        use Expect::*;
        use Transport::*;
        #[rustfmt::skip]
        let rows: Vec<(Transport, &str, Vec<&[u8]>, Expect)> = vec![
            // Verified TLS: learned (RFC 6797 §8.1).
            (TlsVerified, "example.com", vec![b"max-age=600"], Update(learn("example.com", 600, false))),
            // The host is normalized before it is noted.
            (TlsVerified, "WWW.Example.COM.", vec![b"max-age=5; includeSubDomains"], Update(learn("www.example.com", 5, true))),
            (TlsVerified, "bücher.de", vec![b"max-age=5"], Update(learn("xn--bcher-kva.de", 5, false))),
            // Capped at a year (Chromium kMaxHSTSAgeSecs).
            (TlsVerified, "a.test", vec![b"max-age=99999999999"], Update(learn("a.test", 31_536_000, false))),
            // max-age=0 forgets (§6.1.1).
            (TlsVerified, "a.test", vec![b"max-age=0"], Update(Some(StsUpdate::Forget { host: "a.test".into() }))),
            // Only the first field counts (§8.1): a valid first wins over an invalid second ...
            (TlsVerified, "a.test", vec![b"max-age=7", b"garbage"], Update(learn("a.test", 7, false))),
            // ... and an invalid first is not rescued by a valid second.
            (TlsVerified, "a.test", vec![b"max-age=x", b"max-age=7"], Finding(FindingKind::StsInvalid)),
            // Plain HTTP: ignored, and the site is told (§8.1, §7.2).
            (PlainHttp, "a.test", vec![b"max-age=600"], Finding(FindingKind::StsOverHttp)),
            (PlainHttp, "a.test", vec![b"garbage"], Finding(FindingKind::StsOverHttp)),
            // Unverified TLS: ignored silently (§8.1 "no errors").
            (TlsUnverified, "a.test", vec![b"max-age=600"], Update(None)),
            // Malformed: ignored with sts_invalid (§6.1 item 4).
            (TlsVerified, "a.test", vec![b"max-age=5; max-age=6"], Finding(FindingKind::StsInvalid)),
            // IP literals and localhost are never noted (§8.1.1; RFC 6761 §6.3).
            (TlsVerified, "192.0.2.1", vec![b"max-age=600"], Update(None)),
            (TlsVerified, "[2001:db8::1]", vec![b"max-age=600"], Update(None)),
            (TlsVerified, "localhost", vec![b"max-age=600"], Update(None)),
            (TlsVerified, "api.localhost", vec![b"max-age=0"], Update(None)),
            // A host that cannot be normalized is not noted either.
            (TlsVerified, "bad..host", vec![b"max-age=600"], Update(None)),
            // No field, nothing to do.
            (TlsVerified, "a.test", vec![], Update(None)),
            (PlainHttp, "a.test", vec![], Update(None)),
        ];
        for (transport, host, values, expected) in rows {
            let obs = observe_on(transport, host, &headers(&values));
            let got = match &obs.finding {
                Some(f) => Finding(f.kind),
                None => Update(obs.update.clone()),
            };
            assert_eq!(got, expected, "{transport:?} {host:?} {values:?}");
            if obs.finding.is_some() {
                assert_eq!(obs.update, None, "a finding never comes with an update");
            }
            let first = values
                .first()
                .map(|v| String::from_utf8_lossy(v).into_owned());
            assert_eq!(obs.raw, first, "raw is the first field");
        }
    }

    #[test]
    fn observe_bool_maps_to_plain_http_or_verified_tls() {
        let h = headers(&[b"max-age=60"]);
        assert_eq!(
            observe(true, "a.test", &h).update,
            learn("a.test", 60, false)
        );
        assert_eq!(
            observe(false, "a.test", &h).finding.map(|f| f.kind),
            Some(FindingKind::StsOverHttp)
        );
    }

    #[test]
    fn finding_details_are_sentences_that_say_what_to_fix() {
        let over_http = observe(false, "x.test", &headers(&[b"max-age=60"]));
        assert_eq!(
            over_http.finding.unwrap().detail,
            "Strict-Transport-Security on plain http://x.test/ is ignored (RFC 6797 §8.1): \
             send it over HTTPS only, and answer http:// with a redirect to https://"
        );
        let invalid = observe(
            true,
            "x.test",
            &headers(&[b"max-age=1y; includeSubDomains"]),
        );
        assert_eq!(
            invalid.finding.unwrap().detail,
            "Strict-Transport-Security from https://x.test/ is ignored: max-age must be a number \
             of seconds made of digits only, got `1y` (RFC 6797 §6.1.1). Send a well-formed \
             value such as `max-age=31536000; includeSubDomains`"
        );
        let missing = observe(true, "x.test", &headers(&[b"includeSubDomains"]));
        assert!(missing
            .finding
            .unwrap()
            .detail
            .contains("the required max-age directive is missing"));
    }

    #[test]
    fn raw_keeps_non_utf8_bytes_readable() {
        let obs = observe(true, "a.test", &headers(&[b"max-age=5; x=\"\xff\""]));
        assert_eq!(obs.raw.as_deref(), Some("max-age=5; x=\"\u{fffd}\""));
        assert_eq!(obs.update, learn("a.test", 5, false));
    }
}
