//! quaint's own log lines. quaint reports a connection that ended under it only through
//! `tracing` (`tracing::error!("Error in PostgreSQL connection: {:?}", e)` in its connection
//! task, `src/connector/postgres.rs`), never to the caller; this layer keeps its warnings and
//! errors so the result can show them, as a Prisma user sees them in the engine's log.

use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Bounded: at most this many distinct lines, each cut to `LINE_CHARS`.
const MAX_LINES: usize = 50;
const LINE_CHARS: usize = 300;

/// The distinct lines seen so far, in order.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Installs the capture as the global subscriber; `secret` (the lab password) never reaches a
/// kept line.
pub fn capture(secret: &str) -> Captured {
    let captured = Captured::default();
    let layer = Capture {
        lines: captured.clone(),
        secret: secret.to_string(),
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        eprintln!(
            "quaint-harness: a tracing subscriber was already set; quaint's logs are not kept"
        );
    }
    captured
}

struct Capture {
    lines: Captured,
    secret: String,
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        // More verbose levels compare greater: keep ERROR and WARN only.
        if *event.metadata().level() > Level::WARN {
            return;
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        let mut line = text.0;
        if !self.secret.is_empty() {
            line = line.replace(&self.secret, "***");
        }
        let line: String = line.chars().take(LINE_CHARS).collect();
        eprintln!(
            "quaint-harness: quaint {}: {line}",
            event.metadata().level()
        );
        if let Ok(mut lines) = self.lines.0.lock() {
            if lines.len() < MAX_LINES && !lines.contains(&line) {
                lines.push(line);
            }
        }
    }
}

/// The event's message, then its other fields as `name=value`.
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let message = format!("{value:?}");
            self.0 = if self.0.is_empty() {
                message
            } else {
                format!("{message} {}", self.0)
            };
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            self.0.push_str(&format!("{}={value:?}", field.name()));
        }
    }
}
