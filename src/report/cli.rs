//! The `strictproxy report` subcommand as a whole: read the log, print the summary in the asked
//! format, write the HAR and JUnit files, and turn `--fail-on` into the exit status. `main.rs`
//! only maps the flags onto [`ReportArgs`].

use super::gate::{parse_fail_on, Gate};
use super::text::{render, Format};
use super::{junit, summarize, write_har_with, ReportError};
use std::io::Write;
use std::path::PathBuf;

/// The report subcommand's flags.
#[derive(Clone, Debug, Default)]
pub struct ReportArgs {
    /// The traffic log (JSON lines).
    pub file: PathBuf,
    /// `--har OUT`: also write the log as HAR 1.2.
    pub har: Option<PathBuf>,
    /// `--fail-on KIND[,KIND…]|all`.
    pub fail_on: Option<String>,
    /// `--junit OUT.xml`.
    pub junit: Option<PathBuf>,
    /// `--format text|json|markdown` (text when absent).
    pub format: Option<String>,
    /// `--no-redact`: keep credential header values in the HAR.
    pub no_redact: bool,
}

/// Runs the subcommand: the summary goes to `out`, notes (files written, the gate's outcome
/// when the summary is not text) to `notes`. Returns the exit status: 1 when `--fail-on`
/// found one of its kinds, 0 otherwise. Usage mistakes are checked before the log is read
/// ([`ReportError::is_usage`]: exit 2).
pub fn run(
    args: &ReportArgs,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<u8, ReportError> {
    let kinds = args.fail_on.as_deref().map(parse_fail_on).transpose()?;
    let format: Format = args
        .format
        .as_deref()
        .map(str::parse)
        .transpose()?
        .unwrap_or_default();
    let text = std::fs::read_to_string(&args.file).map_err(|source| ReportError::ReadLog {
        path: args.file.clone(),
        source,
    })?;
    let report = summarize(&text)?;
    let gate = kinds.map(|kinds| Gate::check(&report, &kinds));

    // With text, the notes follow the page on stdout as they always did; JSON and markdown
    // stay clean for the script or the CI comment that reads them.
    let summary = render(&report, gate.as_ref(), format);
    out.write_all(summary.as_bytes())
        .and_then(|()| out.flush())
        .map_err(ReportError::Print)?;
    let notes: &mut dyn Write = if format == Format::Text { out } else { notes };
    if let Some(path) = &args.har {
        let count = write_har_with(&text, path, !args.no_redact)?;
        let _ = writeln!(
            notes,
            "HAR 1.2 with {count} entries written to {}",
            path.display()
        );
    }
    if let Some(path) = &args.junit {
        junit::write_junit(&report, gate.as_ref(), path)?;
        let _ = writeln!(notes, "JUnit report written to {}", path.display());
    }
    if let (Some(gate), false) = (&gate, format == Format::Text) {
        let _ = writeln!(notes, "{gate}");
    }
    let _ = notes.flush();
    Ok(gate.map_or(0, |g| g.exit_code()))
}
