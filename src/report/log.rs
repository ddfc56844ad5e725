//! Reading a traffic log for the report, and writing the report's own files. The fields newer
//! logs add (headers, HTTP version, server address, id) default in [`TrafficRecord`], so a log
//! written before them still reads.

use super::{ReportError, SkippedLine};
use crate::traffic::TrafficRecord;
use std::borrow::Cow;
use std::io::{self, Write};
use std::path::Path;

/// The first response field named `name` (case-insensitive, RFC 9110 §5.1), from the headers
/// newer logs carry (none in older ones).
pub fn response_header<'a>(rec: &'a TrafficRecord, name: &str) -> Option<Cow<'a, str>> {
    rec.response_headers.get(name)
}

pub(super) struct ParsedLog {
    pub records: Vec<TrafficRecord>,
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
        match serde_json::from_str::<TrafficRecord>(line) {
            Ok(rec) => parsed.records.push(rec),
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

/// Writes `bytes` to a file created (or truncated) with mode 0600 whatever the umask (issue 11
/// item 6: a HAR or a JUnit report holds URLs with tokens in their query strings).
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = crate::private_file::create_private(path)?;
    file.write_all(bytes)?;
    file.flush()
}
