//! The summary as `strictproxy report` prints it: text (the default), JSON or markdown.

use super::gate::Gate;
use super::{PreloadVerdict, Report};
use crate::finding::FindingKind;
use crate::traffic::Action;
use serde_json::{json, Value};
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

/// The output formats of the summary (`--format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// The page a person reads in a terminal.
    #[default]
    Text,
    /// One JSON object, for scripts.
    Json,
    /// GitHub-flavoured markdown, for a CI comment on a merge request.
    Markdown,
}

impl std::str::FromStr for Format {
    type Err = super::ReportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "markdown" => Ok(Format::Markdown),
            other => Err(super::ReportError::UnknownFormat(other.to_owned())),
        }
    }
}

/// The summary in `format`, with the gate's outcome when `--fail-on` was given.
pub fn render(report: &Report, gate: Option<&Gate>, format: Format) -> String {
    match format {
        Format::Text => {
            let mut text = report.to_string();
            if let Some(gate) = gate {
                text.push_str(&format!("\n{gate}\n"));
            }
            text
        }
        Format::Json => {
            let mut text = serde_json::to_string_pretty(&json(report, gate)).unwrap_or_default();
            text.push('\n');
            text
        }
        Format::Markdown => markdown(report, gate),
    }
}

/// The summary as one JSON value.
pub fn json(report: &Report, gate: Option<&Gate>) -> Value {
    let findings: serde_json::Map<String, Value> = report
        .findings
        .iter()
        .map(|(kind, hosts)| {
            let hosts: serde_json::Map<String, Value> = hosts
                .iter()
                .map(|(host, details)| {
                    let list: Vec<Value> = details
                        .iter()
                        .map(|(detail, count)| json!({ "detail": detail, "count": count }))
                        .collect();
                    (host.clone(), Value::Array(list))
                })
                .collect();
            (
                kind.to_string(),
                json!({ "count": report.finding_count(*kind), "hosts": hosts }),
            )
        })
        .collect();
    let sts: serde_json::Map<String, Value> = report
        .sts_hosts
        .iter()
        .map(|(host, s)| {
            let failed = match &s.verdict {
                PreloadVerdict::NotReady(rules) => rules.clone(),
                _ => Vec::new(),
            };
            (
                host.clone(),
                json!({
                    "value": s.value,
                    "distinct_values": s.distinct_values,
                    "over_http": s.over_http,
                    "preload_ready": s.verdict == PreloadVerdict::Ready,
                    "verdict": s.verdict.to_string(),
                    "failed_rules": failed,
                }),
            )
        })
        .collect();
    let by_action: serde_json::Map<String, Value> = report
        .by_action
        .iter()
        .map(|(a, n)| (a.to_string(), json!(n)))
        .collect();
    let by_status: serde_json::Map<String, Value> = report
        .by_status
        .iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    let rewritten: Vec<Value> = report
        .rewritten
        .iter()
        .map(|((from, to), n)| json!({ "from": from, "to": to, "count": n }))
        .collect();
    let mut out = json!({
        "records": report.records,
        "skipped": report.skipped,
        "first_ts": report.first_ts.map(show_ts),
        "last_ts": report.last_ts.map(show_ts),
        "by_action": by_action,
        "by_status": by_status,
        "rewritten": rewritten,
        "findings": findings,
        "sts_hosts": sts,
    });
    if let (Some(gate), Some(obj)) = (gate, out.as_object_mut()) {
        let hits: serde_json::Map<String, Value> = gate
            .hits
            .iter()
            .map(|(k, n)| (k.to_string(), json!(n)))
            .collect();
        obj.insert(
            "gate".to_owned(),
            json!({
                "fail_on": gate.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                "failed": gate.failed(),
                "hits": hits,
            }),
        );
    }
    out
}

/// The summary as markdown: the gate first (what a reviewer wants to see), then tables.
pub fn markdown(report: &Report, gate: Option<&Gate>) -> String {
    let mut t = String::from("## strictproxy traffic report\n\n");
    if let Some(gate) = gate {
        let mark = if gate.failed() { "❌" } else { "✅" };
        t.push_str(&format!("{mark} {}\n\n", md(&gate.to_string())));
    }
    t.push_str(&format!("{} exchanges", report.records));
    if let (Some(first), Some(last)) = (report.first_ts, report.last_ts) {
        t.push_str(&format!(", {} → {}", show_ts(first), show_ts(last)));
    }
    if report.skipped > 0 {
        t.push_str(&format!(
            "; {} unparsable line{} skipped",
            report.skipped,
            plural(report.skipped)
        ));
    }
    t.push_str("\n\n| action | count |\n|---|---:|\n");
    for (action, n) in &report.by_action {
        t.push_str(&format!("| {action} | {n} |\n"));
    }
    t.push_str("\n| status | count |\n|---|---:|\n");
    for (status, n) in &report.by_status {
        t.push_str(&format!("| {} | {n} |\n", status_label(*status)));
    }
    let total: usize = FindingKind::ALL
        .iter()
        .map(|k| report.finding_count(*k))
        .sum();
    t.push_str(&format!("\n### Findings: {total}\n"));
    if total > 0 {
        t.push_str("\n| kind | host | count | what to fix |\n|---|---|---:|---|\n");
        for (kind, hosts) in &report.findings {
            for (host, details) in hosts {
                for (detail, count) in details {
                    t.push_str(&format!(
                        "| {kind} | {} | {count} | {} |\n",
                        md(host),
                        md(detail)
                    ));
                }
            }
        }
    }
    t.push_str(&format!(
        "\n### Hosts that sent Strict-Transport-Security: {}\n",
        report.sts_hosts.len()
    ));
    if !report.sts_hosts.is_empty() {
        t.push_str("\n| host | verdict | value |\n|---|---|---|\n");
        for (host, sts) in &report.sts_hosts {
            t.push_str(&format!(
                "| {} | {} | `{}` |\n",
                md(host),
                md(&sts.verdict.to_string()),
                sts.value.replace('`', "'")
            ));
        }
    }
    t
}

/// Text for a markdown table cell: pipes escaped, line breaks and HTML made inert.
fn md(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '|' => "\\|".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            c if c.is_control() => " ".to_owned(),
            c => c.to_string(),
        })
        .collect()
}
