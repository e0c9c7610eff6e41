//! `--log.format=logfmt`: one line per event of `key=value` pairs, as Prometheus and its
//! exporters log (Go's log/slog through promslog):
//!
//! ```text
//! time=2026-12-04T19:32:25.065Z level=INFO msg="idle_drop_exporter started" version=0.1.0 address=0.0.0.0:10187
//! ```
//!
//! `time` is UTC to the millisecond, `level` upper case, `msg` the event's message, then the
//! event's fields and those of its spans. A value is quoted when it is empty or holds a space,
//! `=`, `"` or a control character; inside quotes `\` and `"` are escaped, and a newline, a tab
//! or another control character is written as an escape, so an event is always one line.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The logfmt event and field format (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
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
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        write!(
            writer,
            "time={time} level={}",
            level(event.metadata().level())
        )?;
        let mut fields = Pairs::default();
        event.record(&mut fields);
        if let Some(message) = &fields.message {
            writer.write_str(" msg=")?;
            write_value(&mut writer, message)?;
        }
        writer.write_str(&fields.line)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(formatted) = extensions.get::<FormattedFields<N>>() {
                    if !formatted.is_empty() {
                        write!(writer, " {formatted}")?;
                    }
                }
            }
        }
        writeln!(writer)
    }
}

/// Span fields, formatted once when the span is created (the event format appends them).
impl<'writer> FormatFields<'writer> for Logfmt {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut pairs = Pairs::default();
        fields.record(&mut pairs);
        if let Some(message) = pairs.message.take() {
            pairs.push("msg", &message);
        }
        writer.write_str(pairs.line.trim_start())
    }
}

fn level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

/// An event's fields as ` key=value` pairs, its message kept apart (it goes first, as `msg`).
#[derive(Default)]
struct Pairs {
    message: Option<String>,
    line: String,
}

impl Pairs {
    fn push(&mut self, key: &str, value: &str) {
        self.line.push(' ');
        self.line.push_str(key);
        self.line.push('=');
        let _ = write_value(&mut self.line, value);
    }

    fn record(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = Some(value);
        } else {
            self.push(field.name(), &value);
        }
    }
}

impl Visit for Pairs {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` fields arrive here as Debug that prints their Display.
        self.record(field, format!("{value:?}"));
    }
}

/// Writes `value` bare when it can be read back unchanged, else quoted and escaped.
fn write_value(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    let bare = !value.is_empty()
        && !value
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c.is_control());
    if bare {
        return out.write_str(value);
    }
    out.write_char('"')?;
    for c in value.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c.is_control() => write!(out, "\\u{:04x}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Lines written through a logfmt subscriber.
    fn logged(log: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(Level::TRACE)
            .event_format(Logfmt)
            .fmt_fields(Logfmt)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = sink.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn values_are_bare_or_quoted_and_escaped_as_logfmt_reads_them() {
        let mut out = String::new();
        for value in [
            "0.1.0",
            "",
            "two words",
            "a=b",
            "say \"hi\"",
            "back\\slash",
            "line\nbreak\ttab",
            "bell\u{7}",
            "ünïcode",
        ] {
            write_value(&mut out, value).unwrap();
            out.push('|');
        }
        assert_eq!(
            out,
            r#"0.1.0|""|"two words"|"a=b"|"say \"hi\""|back\slash|"line\nbreak\ttab"|"bell\u0007"|ünïcode|"#
        );
    }

    #[test]
    fn an_event_is_one_line_of_time_level_msg_then_fields() {
        let error = std::io::Error::other("connection reset by peer");
        let text = logged(|| {
            tracing::info!(version = "0.1.0", address = %"0.0.0.0:10187", targets = 3, ok = true, "idle_drop_exporter started");
            tracing::warn!(error = %error, target = "orders-db", "a message\nover two lines");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let (time, rest) = lines[0]
            .strip_prefix("time=")
            .unwrap()
            .split_once(' ')
            .unwrap();
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
        assert_eq!(
            rest,
            r#"level=INFO msg="idle_drop_exporter started" version=0.1.0 address=0.0.0.0:10187 targets=3 ok=true"#
        );
        assert!(
            lines[1].ends_with(r#" level=WARN msg="a message\nover two lines" error="connection reset by peer" target=orders-db"#),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn span_fields_follow_the_event_fields() {
        let text = logged(|| {
            let span = tracing::info_span!("probe", target = "orders db");
            let _entered = span.enter();
            tracing::debug!(idle = "30s", "probe survived");
        });
        assert!(
            text.ends_with(" level=DEBUG msg=\"probe survived\" idle=30s target=\"orders db\"\n"),
            "{text}"
        );
    }
}
