//! The report as text: what `strictproxy report` prints.

use super::{PreloadVerdict, Report};
use crate::finding::FindingKind;
use crate::traffic::Action;
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Traffic report: {} exchanges", self.records)?;
        if let (Some(first), Some(last)) = (self.first_ts, self.last_ts) {
            write!(f, ", {} → {}", show_ts(first), show_ts(last))?;
        }
        writeln!(f)?;
        if let Some(first) = &self.first_skipped {
            writeln!(
                f,
                "Skipped {} unparsable line{} (first: line {}: {})",
                self.skipped,
                plural(self.skipped),
                first.line,
                first.error
            )?;
        }

        writeln!(f, "\nBy action:")?;
        for action in Action::ALL {
            let n = self.by_action.get(&action).copied().unwrap_or(0);
            writeln!(f, "  {:<24}{n:>8}", action.as_str())?;
        }

        writeln!(f, "\nBy status:")?;
        for (status, n) in &self.by_status {
            writeln!(f, "  {:<24}{n:>8}", status_label(*status))?;
        }
        for ((from, to), n) in &self.rewritten {
            writeln!(
                f,
                "  ({n} rewritten {from} → {to} by --redirect-policy rewrite)"
            )?;
        }

        let total: usize = FindingKind::ALL
            .iter()
            .map(|k| self.finding_count(*k))
            .sum();
        writeln!(f, "\nFindings: {total}")?;
        for (kind, hosts) in &self.findings {
            writeln!(f, "  {kind} ({})", self.finding_count(*kind))?;
            for (host, details) in hosts {
                let n: usize = details.values().sum();
                writeln!(f, "    {host} ({n})")?;
                for (detail, count) in details {
                    writeln!(f, "      {count}× {detail}")?;
                }
            }
        }

        writeln!(
            f,
            "\nHosts that sent Strict-Transport-Security: {}",
            self.sts_hosts.len()
        )?;
        for (host, sts) in &self.sts_hosts {
            writeln!(f, "  {host}: {}", sts.verdict)?;
            write!(f, "    {}", sts.value)?;
            if sts.distinct_values > 1 {
                write!(f, " (last of {} different values)", sts.distinct_values)?;
            }
            if sts.over_http > 0 && sts.verdict != PreloadVerdict::OverHttpOnly {
                write!(
                    f,
                    " (also sent {} time{} over plain HTTP)",
                    sts.over_http,
                    plural(sts.over_http)
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn status_label(status: u16) -> String {
    match http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None if status == 0 => "0 (no response)".to_owned(),
        None => status.to_string(),
    }
}

pub(super) fn show_ts(ts: OffsetDateTime) -> String {
    ts.format(&Rfc3339).unwrap_or_else(|_| ts.to_string())
}
