//! Reading a traffic log for the report, and writing the report's own files.
//!
//! Each line is read twice from one JSON value: as the [`TrafficRecord`] every log has, and as
//! the [`Extra`] fields newer logs add (headers, HTTP version, server address, id), all
//! optional so that a log written before them still reads.

use super::{ReportError, SkippedLine};
use crate::traffic::TrafficRecord;
use serde::Deserialize;
use std::io::{self, Write};
use std::path::Path;

/// The fields a traffic record may carry beyond the original contract (design.md, second
/// part). Absent in older logs: every one defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Extra {
    /// `[name, value]` pairs in wire order, credentials already `"[redacted]"` unless the
    /// operator opted out.
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    /// "HTTP/1.1", "HTTP/2", …
    pub http_version: Option<String>,
    pub server_ip: Option<String>,
    pub id: u64,
}

impl Extra {
    /// The first response field named `name` (case-insensitive, RFC 9110 §5.1).
    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One line of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub rec: TrafficRecord,
    pub extra: Extra,
}

pub(super) struct ParsedLog {
    pub records: Vec<LogLine>,
    pub skipped: usize,
    pub first_skipped: Option<SkippedLine>,
}

pub(super) fn parse_log(log_text: &str) -> Result<ParsedLog, ReportError> {
    let mut parsed = ParsedLog {
        records: Vec::new(),
        skipped: 0,
        first_skipped: None,
    };
    for (i, line) in log_text.lines().enumerate() {
        let line = line.trim();
        // Blank lines are no records (the writer leaves one after a line torn by a write error).
        if line.is_empty() {
            continue;
        }
        let read = serde_json::from_str::<serde_json::Value>(line).and_then(|value| {
            let rec = TrafficRecord::deserialize(&value)?;
            // A malformed extra field (an older writer's bug) costs the extras, not the line.
            let extra = Extra::deserialize(&value).unwrap_or_default();
            Ok(LogLine { rec, extra })
        });
        match read {
            Ok(line) => parsed.records.push(line),
            Err(e) => {
                parsed.skipped += 1;
                parsed.first_skipped.get_or_insert(SkippedLine {
                    line: i + 1,
                    error: e.to_string(),
                });
            }
        }
    }
    match (&parsed.first_skipped, parsed.records.is_empty()) {
        (Some(first), true) => Err(ReportError::NoRecords {
            lines: parsed.skipped,
            first_line: first.line,
            error: first.error.clone(),
        }),
        _ => Ok(parsed),
    }
}

/// Writes `bytes` to a file created with mode 0600 whatever the umask (issue 11 item 6: a HAR
/// or a JUnit report holds URLs with tokens in their query strings); an existing file is
/// truncated and set to 0600 too.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.flush()
}
