//! The console's text line format (`--log-format text`, the default): what
//! `tracing_subscriber`'s compact format prints — time, level, span names, message, fields,
//! span fields — written with less machinery, because the proxy prints one such line per
//! exchange. tracing-subscriber's formatter cost ~12,000 instructions a line (issue 15): the
//! date is formatted from scratch every time, and its escaping writer sends every character
//! through `fmt::Write::write_char`. Here the date is formatted once a second per thread, and
//! text is scanned for control characters a whole string at a time.
//!
//! Control characters in messages and field values (a hostile URL or header reaching a
//! warning) are escaped as `\xNN`, so nothing a client sends can move the operator's cursor
//! or recolour the terminal, as tracing-subscriber's own escaping guarantees.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The compact text format, with or without ANSI colours (a terminal gets them).
#[derive(Clone, Copy, Debug)]
pub struct ConsoleFormat {
    ansi: bool,
}

impl ConsoleFormat {
    pub fn new(ansi: bool) -> Self {
        ConsoleFormat { ansi }
    }
}

impl<S, N> FormatEvent<S, N> for ConsoleFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_char(' ')?;
        write_level(&mut writer, event.metadata().level(), self.ansi)?;
        writer.write_char(' ')?;

        let mut any_span = false;
        for span in ctx
            .event_scope()
            .into_iter()
            .flat_map(|scope| scope.from_root())
        {
            any_span = true;
            if self.ansi {
                write!(writer, "\x1b[1m{}\x1b[0m:", span.name())?;
            } else {
                write!(writer, "{}:", span.name())?;
            }
        }
        if any_span {
            writer.write_char(' ')?;
        }

        let mut fields = FieldWriter {
            out: &mut writer,
            result: Ok(()),
            first: true,
        };
        event.record(&mut fields);
        fields.result?;

        for span in ctx
            .event_scope()
            .into_iter()
            .flat_map(|scope| scope.from_root())
        {
            let extensions = span.extensions();
            if let Some(formatted) = extensions.get::<FormattedFields<N>>() {
                if !formatted.is_empty() {
                    if self.ansi {
                        write!(writer, " \x1b[2m{}\x1b[0m", formatted.fields)?;
                    } else {
                        write!(writer, " {}", formatted.fields)?;
                    }
                }
            }
        }
        writer.write_char('\n')
    }
}

/// Writes the level as tracing-subscriber does: five columns, coloured on a terminal.
fn write_level(out: &mut Writer<'_>, level: &Level, ansi: bool) -> fmt::Result {
    let (text, colour) = match *level {
        Level::TRACE => ("TRACE", "35"),
        Level::DEBUG => ("DEBUG", "34"),
        Level::INFO => (" INFO", "32"),
        Level::WARN => (" WARN", "33"),
        Level::ERROR => ("ERROR", "31"),
    };
    if ansi {
        write!(out, "\x1b[{colour}m{text}\x1b[0m")
    } else {
        out.write_str(text)
    }
}

thread_local! {
    /// The second last formatted on this thread and its text, `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Writes `now` as RFC 3339 in UTC with microseconds (`2026-12-01T18:41:49.270919Z`), as
/// tracing-subscriber's default timer does.
fn write_timestamp(out: &mut Writer<'_>, now: SystemTime) -> fmt::Result {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            cached.1 = date_time(secs);
            cached.0 = secs;
        }
        out.write_str(&cached.1)
    })?;
    let micros = since_epoch.subsec_micros();
    let mut digits = *b".000000Z";
    let mut rest = micros;
    for slot in digits[1..7].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    // Only ASCII digits, a dot and a `Z` were written.
    out.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
}

/// `YYYY-MM-DDTHH:MM:SS` for a count of seconds since the Unix epoch, in UTC.
fn date_time(secs: u64) -> String {
    let when = i64::try_from(secs)
        .ok()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        when.year(),
        u8::from(when.month()),
        when.day(),
        when.hour(),
        when.minute(),
        when.second()
    )
}

/// Writes an event's fields: the message first as it is, then ` name=value` (values in their
/// `Debug` form, strings quoted), control characters escaped.
struct FieldWriter<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
    first: bool,
}

impl FieldWriter<'_, '_> {
    fn separate(&mut self) -> fmt::Result {
        if self.first {
            self.first = false;
            Ok(())
        } else {
            self.out.write_char(' ')
        }
    }
}

impl Visit for FieldWriter<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" {
            self.result = self
                .separate()
                .and_then(|()| write_escaped(self.out, value));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        self.result = self.separate().and_then(|()| {
            let mut escaped = Escaping(&mut *self.out);
            if name == "message" {
                write!(escaped, "{value:?}")
            } else {
                let name = name.strip_prefix("r#").unwrap_or(name);
                write!(escaped, "{name}={value:?}")
            }
        });
    }
}

/// A writer that escapes control characters, a whole string at a time.
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(self.0, s)
    }
}

/// Writes `text`, each control character (C0 and DEL) as `\xNN`.
fn write_escaped(out: &mut Writer<'_>, text: &str) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = rest.bytes().position(|b| b < 0x20 || b == 0x7f) {
        out.write_str(&rest[..at])?;
        write!(out, "\\x{:02x}", rest.as_bytes()[at])?;
        // A control character is one byte in UTF-8: `at + 1` is a character boundary.
        rest = &rest[at + 1..];
    }
    out.write_str(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// Runs `f` under a subscriber using `format`, returns what it printed.
    fn printed(ansi: bool, f: impl FnOnce()) -> String {
        let sink = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(sink.clone())
            .with_ansi(ansi)
            .event_format(ConsoleFormat::new(ansi))
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = sink.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_line_has_time_level_spans_message_and_fields_in_order() {
        let out = printed(false, || {
            let span = tracing::info_span!("conn", client = %"127.0.0.1:5000");
            let _entered = span.enter();
            tracing::info!(client = %"127.0.0.1:5000", "GET http://a.test/ 200 forwarded 0.4ms");
        });
        let line = out.strip_suffix('\n').unwrap();
        let (ts, rest) = line.split_at(27);
        // 2026-12-01T18:41:49.270919Z
        assert_eq!(ts.len(), 27);
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.');
        assert_eq!(
            rest,
            "  INFO conn: GET http://a.test/ 200 forwarded 0.4ms client=127.0.0.1:5000 client=127.0.0.1:5000"
        );
    }

    #[test]
    fn levels_take_five_columns_and_strings_are_quoted() {
        let out = printed(false, || {
            tracing::warn!(kind = "mixed", n = 3, "a finding");
            tracing::error!("broken");
        });
        let lines: Vec<&str> = out.lines().map(|l| &l[28..]).collect();
        assert_eq!(
            lines,
            [" WARN a finding kind=\"mixed\" n=3", "ERROR broken"]
        );
    }

    #[test]
    fn control_characters_from_the_network_are_escaped() {
        let hostile = "http://a.test/\x1b[2Jgone\r\nfake line";
        let out = printed(false, || {
            tracing::warn!(url = %hostile, "refused {}", hostile);
        });
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(!out.contains('\x1b') && !out.contains('\r'), "{out:?}");
        assert!(out.contains(r"refused http://a.test/\x1b[2Jgone\x0d\x0afake line"));
        assert!(out.contains(r"url=http://a.test/\x1b[2Jgone\x0d\x0afake line"));
    }

    #[test]
    fn a_terminal_gets_colours_but_text_is_still_escaped() {
        let out = printed(true, || tracing::info!("x\x1by"));
        assert!(out.contains("\x1b[32m INFO\x1b[0m"), "{out:?}");
        assert!(out.contains(r"x\x1by"), "{out:?}");
    }

    #[test]
    fn the_timestamp_is_rfc3339_utc_with_microseconds() {
        let table = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (1_764_614_509, 270_919, "2025-12-01T18:41:49.270919Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.000005Z"), // leap day
        ];
        for (secs, micros, expected) in table {
            let when = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
            let mut text = String::new();
            write_timestamp(&mut Writer::new(&mut text), when).unwrap();
            assert_eq!(text, expected);
            // The cached second must not leak into the next call's other second.
            let mut again = String::new();
            write_timestamp(&mut Writer::new(&mut again), when).unwrap();
            assert_eq!(again, expected);
        }
    }
}
