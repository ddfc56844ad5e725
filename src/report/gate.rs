//! `--fail-on KIND[,KIND…]|all`: the CI gate. A pure decision over the summary: which of the
//! named kinds the log holds, with counts.

use super::{Report, ReportError};
use crate::finding::FindingKind;
use std::fmt;

/// Parses the `--fail-on` list: contract names separated by commas (spaces around them
/// ignored), or `all` for every kind. An unknown name is an error that names the valid ones.
pub fn parse_fail_on(spec: &str) -> Result<Vec<FindingKind>, ReportError> {
    let mut kinds = Vec::new();
    for word in spec.split(',').map(str::trim) {
        if word == "all" {
            return Ok(FindingKind::ALL.to_vec());
        }
        let kind = word
            .parse::<FindingKind>()
            .map_err(|_| ReportError::UnknownKind(word.to_owned()))?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds.sort();
    Ok(kinds)
}

/// The gate's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    /// The kinds `--fail-on` named.
    pub kinds: Vec<FindingKind>,
    /// The named kinds the log holds, with their counts (none: the gate passes).
    pub hits: Vec<(FindingKind, usize)>,
}

impl Gate {
    pub fn check(report: &Report, kinds: &[FindingKind]) -> Gate {
        let hits = kinds
            .iter()
            .map(|&k| (k, report.finding_count(k)))
            .filter(|&(_, n)| n > 0)
            .collect();
        Gate {
            kinds: kinds.to_vec(),
            hits,
        }
    }

    pub fn failed(&self) -> bool {
        !self.hits.is_empty()
    }

    /// Whether `kind` counts against the gate.
    pub fn gates(&self, kind: FindingKind) -> bool {
        self.kinds.contains(&kind)
    }

    /// The process exit status: 1 when a named kind is present, 0 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.failed())
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = if self.kinds == FindingKind::ALL {
            vec!["all"]
        } else {
            self.kinds.iter().map(|k| k.as_str()).collect()
        };
        if self.failed() {
            let total: usize = self.hits.iter().map(|(_, n)| n).sum();
            let hits: Vec<String> = self.hits.iter().map(|(k, n)| format!("{n} {k}")).collect();
            write!(
                f,
                "FAILED --fail-on {}: {total} finding{} ({})",
                names.join(","),
                if total == 1 { "" } else { "s" },
                hits.join(", ")
            )
        } else {
            write!(f, "passed --fail-on {}: no such finding", names.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FindingKind::*;

    #[test]
    fn fail_on_lists() {
        #[rustfmt::skip]
        let rows: &[(&str, Option<&[FindingKind]>)] = &[
            ("method_change_risk", Some(&[MethodChangeRisk])),
            ("https_downgrade,method_change_risk", Some(&[MethodChangeRisk, HttpsDowngrade])),
            (" https_downgrade , https_downgrade", Some(&[HttpsDowngrade])),
            ("all", Some(&FindingKind::ALL)),
            ("redirect_loop,all", Some(&FindingKind::ALL)),
            ("Method_Change_Risk", None), // contract names are exact
            ("method_change_risk,", None), // an empty name is no kind
            ("nope", None),
        ];
        for (spec, expected) in rows {
            match (parse_fail_on(spec), expected) {
                (Ok(kinds), Some(expected)) => assert_eq!(kinds, expected.to_vec(), "{spec}"),
                (Err(e), None) => {
                    assert!(e.is_usage(), "{spec}");
                    assert!(e.to_string().contains("method_change_risk"), "{e}");
                }
                (got, _) => panic!("{spec}: {got:?}"),
            }
        }
    }

    #[test]
    fn gate_counts_only_the_named_kinds() {
        let mut report = Report::default();
        report
            .findings
            .entry(MethodChangeRisk)
            .or_default()
            .entry("a.test".into())
            .or_default()
            .insert("x".into(), 2);
        report
            .findings
            .entry(RedirectLoop)
            .or_default()
            .entry("b.test".into())
            .or_default()
            .insert("y".into(), 1);
        let gate = Gate::check(&report, &[MethodChangeRisk, HttpsDowngrade]);
        assert_eq!(gate.hits, [(MethodChangeRisk, 2)]);
        assert_eq!(gate.exit_code(), 1);
        assert_eq!(
            gate.to_string(),
            "FAILED --fail-on method_change_risk,https_downgrade: 2 findings (2 method_change_risk)"
        );
        let gate = Gate::check(&report, &[HttpsDowngrade]);
        assert_eq!(gate.exit_code(), 0);
        assert_eq!(
            gate.to_string(),
            "passed --fail-on https_downgrade: no such finding"
        );
    }
}
