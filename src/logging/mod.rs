//! Log setup: text, logfmt ([`logfmt`]) or JSON lines on stderr, filtered by level; the
//! `--log.level`/`--log.format` flags the daemon and every command share ([`LogFlags`]). Nothing logged anywhere in the
//! crate carries a password: DSNs are logged redacted and driver errors never include one.
//!
//! Logging never stops the work it describes. Lines go through a bounded queue to a thread of
//! their own that writes them to stderr and ignores every error: a closed pipe
//! (`exporter 2>&1 | head -3`) used to panic each task that logged, through tracing-subscriber's
//! `eprintln!` of its own write errors, and a reader that stops reading would block the probes.
//! When the queue is full a line is dropped, and the number dropped is said once there is room.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub mod logfmt;

/// Lines waiting for a slow stderr before new ones are dropped.
const QUEUE_LINES: usize = 4096;

/// `--log.level` and `--log.format`, the same on the daemon and on `discover` and `simulate`.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFlags {
    /// Log level or filter: error, warn, info, debug, trace, or a filter like
    /// idle_drop_exporter=debug [default: the configuration file's, else info; discover: warn]
    #[arg(long = "log.level", value_name = "LEVEL", value_parser = crate::config::parse_log_level)]
    pub level: Option<String>,
    /// Log format: text (for a person), logfmt (key=value, as Prometheus logs) or json
    /// [default: the configuration file's, else text]
    #[arg(long = "log.format", value_name = "FORMAT", value_parser = LogFormat::parse)]
    pub format: Option<LogFormat>,
}

impl LogFlags {
    /// `base` with what the flags say instead.
    pub fn over(&self, base: LogConfig) -> LogConfig {
        LogConfig {
            format: self.format.unwrap_or(base.format),
            level: self.level.clone().unwrap_or(base.level),
        }
    }
}

/// Installs the global subscriber (call once, from `main`).
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::try_new(&log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = STDERR.get_or_init(|| NonBlocking::new(std::io::stderr(), QUEUE_LINES));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone())
        .log_internal_errors(false)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    match log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Logfmt => builder
            .event_format(logfmt::Logfmt)
            .fmt_fields(logfmt::Logfmt)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

/// Waits up to `limit` for queued lines to reach stderr (before the process exits); whether
/// they did (true also when logging was never set up: nothing is waiting).
pub fn flush(limit: Duration) -> bool {
    STDERR.get().is_none_or(|writer| writer.flush(limit))
}

static STDERR: OnceLock<NonBlocking> = OnceLock::new();

enum Message {
    Line(Vec<u8>),
    Flushed(mpsc::Sender<()>),
}

/// A writer that hands each write to a background thread and never waits or fails.
#[derive(Clone)]
pub struct NonBlocking {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl NonBlocking {
    /// Starts the thread that writes to `sink`, with room for `capacity` waiting lines.
    pub fn new(sink: impl Write + Send + 'static, capacity: usize) -> NonBlocking {
        let (queue, lines) = mpsc::sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_lines(sink, lines, counter))
            .expect("a thread for the log writer");
        NonBlocking { queue, dropped }
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits up to `limit` for the lines queued so far to be written (or to fail). False when
    /// the limit ran out first, or the writer thread is gone (it panicked): nothing then reaches
    /// the sink any more.
    #[must_use = "false means lines may not have reached the sink"]
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let (done, finished) = mpsc::channel();
        let mut message = Message::Flushed(done);
        loop {
            match self.queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        finished
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

fn write_lines(mut sink: impl Write, lines: Receiver<Message>, dropped: Arc<AtomicU64>) {
    let mut reported = 0;
    loop {
        let message = match lines.recv_timeout(Duration::from_secs(1)) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let now = dropped.load(Ordering::Relaxed);
        if now > reported {
            let _ = writeln!(
                sink,
                "idle_drop_exporter: {} log lines dropped (stderr too slow)",
                now - reported
            );
            reported = now;
        }
        match message {
            Message::Line(line) => {
                let _ = sink.write_all(&line);
            }
            Message::Flushed(done) => {
                let _ = sink.flush();
                let _ = done.send(());
            }
        }
    }
}

impl Write for NonBlocking {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Err(TrySendError::Full(_)) = self.queue.try_send(Message::Line(buf.to_vec())) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for NonBlocking {
    type Writer = NonBlocking;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Condvar, Mutex};

    /// A stderr whose reader went away.
    struct BrokenPipe;

    impl Write for BrokenPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    /// A stderr whose reader stopped reading: every write blocks until released.
    #[derive(Clone, Default)]
    struct Stuck(Arc<(Mutex<bool>, Condvar)>, Arc<Mutex<Vec<u8>>>);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (released, wake) = &*self.0;
            let mut open = released.lock().unwrap();
            while !*open {
                open = wake.wait(open).unwrap();
            }
            self.1.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_stderr_never_panics_the_logging_task() {
        let writer = NonBlocking::new(BrokenPipe, 16);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer.clone())
            .log_internal_errors(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..1000 {
                tracing::info!(i, "a line nobody reads");
            }
        });
        // The writer thread is alive and got through every line: none of its errors escaped.
        assert!(writer.flush(Duration::from_secs(5)));
    }

    /// A sink whose every write panics: the writer thread dies at the first line.
    struct Panics;

    impl Write for Panics {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            panic!("a sink that panics")
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn flush_says_when_the_lines_did_not_get_through() {
        // A dead writer thread is reported, not waited on.
        let dead = NonBlocking::new(Panics, 16);
        let mut line = dead.clone();
        let _ = line.write(b"the line that kills the writer\n");
        // Reported before the limit runs out: the writer's death ends the wait (the panic's
        // backtrace, printed first, can take seconds on a loaded machine; the limit is far
        // beyond that).
        let started = Instant::now();
        assert!(!dead.flush(Duration::from_secs(120)));
        assert!(started.elapsed() < Duration::from_secs(120));
        // A sink that does not read within the limit is reported too.
        let stuck = Stuck::default();
        let writer = NonBlocking::new(stuck.clone(), 8);
        let mut line = writer.clone();
        let _ = line.write(b"waiting\n");
        assert!(!writer.flush(Duration::from_millis(200)));
        *stuck.0 .0.lock().unwrap() = true;
        stuck.0 .1.notify_all();
        assert!(writer.flush(Duration::from_secs(5)));
    }

    #[test]
    fn a_stuck_stderr_never_blocks_the_logging_task_and_drops_are_counted() {
        let sink = Stuck::default();
        let writer = NonBlocking::new(sink.clone(), 8);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer.clone())
            .finish();
        let started = Instant::now();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..1000 {
                tracing::info!(i, "waiting line");
            }
        });
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(writer.dropped() >= 1000 - 8 - 1, "{}", writer.dropped());
        // Once the reader reads again, the queued lines and the count of dropped ones arrive.
        *sink.0 .0.lock().unwrap() = true;
        sink.0 .1.notify_all();
        assert!(writer.flush(Duration::from_secs(5)));
        let text = String::from_utf8(sink.1.lock().unwrap().clone()).unwrap();
        assert!(text.contains("waiting line"), "{text}");
        assert!(text.contains("log lines dropped"), "{text}");
    }
}
