//! Redirects made correct: the pure 3xx audit and rewrite ([`audit`], RFC 9110 §15.4) and the
//! per-client redirect chains that find loops ([`chains`]).
//!
//! [`audit()`] looks at one upstream response status and its `Location` against the request
//! that caused it, and returns the findings plus what (if anything) to change in the response;
//! [`RedirectDecision::apply`] makes that change on the response head. The proxy calls both for
//! every upstream response, on the plain and the intercepted path alike. [`RedirectChains`]
//! follows each client through the redirects it is given, to notice when it comes back to a URL
//! it already visited in the same chain (`redirect_loop`).
//!
//! Where the RFC and the browsers differ, the browsers' behaviour (the Fetch standard's
//! "HTTP-redirect fetch", §4.4) decides what a client will actually do, because that is what the
//! findings must predict.

pub mod audit;
pub mod chains;

pub use audit::{audit, RedirectDecision};
pub use chains::{RedirectChains, MAX_REDIRECTS};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// URLs and Locations quoted in a finding are cut to this many characters: a Location can be as
/// long as the header limit allows, and a finding is one console line.
const MAX_QUOTED_CHARS: usize = 200;

/// Errors of this module: only configuration can fail here (the audit itself never fails, it
/// turns every oddity of the upstream's response into a finding).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RedirectError {
    /// `--redirect-policy` (or `redirect_policy` in the config file) named no known policy.
    #[error("unknown redirect policy {0:?}: expected \"log\" or \"rewrite\"")]
    UnknownPolicy(String),
}

/// What the proxy does with an ambiguous `301`/`302` answering a method other than GET/HEAD.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedirectPolicy {
    /// Log the finding and pass the response unchanged (the default: the proxy stays transparent).
    #[default]
    Log,
    /// Rewrite `302`→`307` and `301`→`308`, so every client repeats the same method and body
    /// (RFC 9110 §15.4.8, §15.4.9), instead of the GET most clients switch to (§15.4.2, §15.4.3).
    Rewrite,
}

impl RedirectPolicy {
    /// The name used on the command line and in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectPolicy::Log => "log",
            RedirectPolicy::Rewrite => "rewrite",
        }
    }
}

impl fmt::Display for RedirectPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RedirectPolicy {
    type Err = RedirectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "log" => Ok(RedirectPolicy::Log),
            "rewrite" => Ok(RedirectPolicy::Rewrite),
            other => Err(RedirectError::UnknownPolicy(other.to_owned())),
        }
    }
}

/// Cuts a quoted text to [`MAX_QUOTED_CHARS`], marking the cut.
fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names() {
        assert_eq!(RedirectPolicy::default(), RedirectPolicy::Log);
        for (text, policy) in [
            ("log", RedirectPolicy::Log),
            ("rewrite", RedirectPolicy::Rewrite),
        ] {
            assert_eq!(text.parse::<RedirectPolicy>(), Ok(policy));
            assert_eq!(policy.to_string(), text);
            assert_eq!(
                serde_json::to_string(&policy).unwrap(),
                format!("\"{text}\"")
            );
            assert_eq!(
                serde_json::from_str::<RedirectPolicy>(&format!("\"{text}\"")).unwrap(),
                policy
            );
        }
        let err = "fix".parse::<RedirectPolicy>().unwrap_err().to_string();
        assert!(
            err.contains("\"log\"") && err.contains("\"rewrite\"") && err.contains("fix"),
            "{err}"
        );
    }

    #[test]
    fn quote_cuts_long_text() {
        assert_eq!(quote("short"), "short");
        let long = "x".repeat(MAX_QUOTED_CHARS + 5);
        assert_eq!(quote(&long).chars().count(), MAX_QUOTED_CHARS + 1);
    }
}
