//! Findings: what the proxy noticed about an exchange (a risky redirect, an STS header it had
//! to ignore, …). They travel with the request context, go to the traffic log as
//! `{"kind", "detail"}` objects, and are printed as one readable console line each.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of finding, named exactly as in the traffic-log contract (design.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A 301/302 answering a method other than GET/HEAD: clients will silently switch to GET.
    MethodChangeRisk,
    /// A 307/308 that makes the client replay a request body to another origin.
    CrossOriginBodyReplay,
    /// A redirect from https to http, or to an HSTS-known host on http.
    HttpsDowngrade,
    /// A 3xx (other than 304) without a Location field.
    MissingLocation,
    /// A Location field that cannot be parsed as a URI reference.
    BadLocation,
    /// A client followed a redirect chain back to a URL it already visited.
    RedirectLoop,
    /// A Strict-Transport-Security field received over plain HTTP (RFC 6797 §8.1: ignored).
    StsOverHttp,
    /// A Strict-Transport-Security field that is malformed (RFC 6797 §6.1: ignored).
    StsInvalid,
}

impl FindingKind {
    /// Every kind, in declaration order (for metrics and reports).
    pub const ALL: [FindingKind; 8] = [
        FindingKind::MethodChangeRisk,
        FindingKind::CrossOriginBodyReplay,
        FindingKind::HttpsDowngrade,
        FindingKind::MissingLocation,
        FindingKind::BadLocation,
        FindingKind::RedirectLoop,
        FindingKind::StsOverHttp,
        FindingKind::StsInvalid,
    ];

    /// The contract name of the kind, as written in the traffic log.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::MethodChangeRisk => "method_change_risk",
            FindingKind::CrossOriginBodyReplay => "cross_origin_body_replay",
            FindingKind::HttpsDowngrade => "https_downgrade",
            FindingKind::MissingLocation => "missing_location",
            FindingKind::BadLocation => "bad_location",
            FindingKind::RedirectLoop => "redirect_loop",
            FindingKind::StsOverHttp => "sts_over_http",
            FindingKind::StsInvalid => "sts_invalid",
        }
    }
}

impl std::str::FromStr for FindingKind {
    type Err = UnknownKind;

    /// The contract name back to the kind (`--fail-on`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FindingKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// A name that is no finding kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKind(pub String);

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding: its kind and a human sentence that says what is wrong and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub detail: String,
}

impl Finding {
    pub fn new(kind: FindingKind, detail: impl Into<String>) -> Self {
        Finding {
            kind,
            detail: detail.into(),
        }
    }

    /// One readable console line: the kind, then the sentence that says what to fix. Control
    /// characters are replaced so that a finding can never forge extra log lines.
    pub fn console_line(&self) -> String {
        let detail: String = self
            .detail
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        format!("{}: {}", self.kind, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_with_contract_names() {
        for kind in FindingKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(kind.as_str().parse::<FindingKind>(), Ok(kind));
        }
        assert_eq!(
            "nope".parse::<FindingKind>(),
            Err(UnknownKind("nope".into()))
        );
    }

    #[test]
    fn console_line_is_one_line() {
        let f = Finding::new(FindingKind::MethodChangeRisk, "a\nb\r\nc");
        assert_eq!(f.console_line(), "method_change_risk: a b  c");
    }
}
