//! The live progress display of `discover` on stderr: one line redrawn in place on a terminal,
//! plain lines (when something changed, or every 10 s) when stderr is a file or a pipe, so logs
//! of a CI job stay readable.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::format::human;
use crate::probe::status::TargetStatus;

/// How often an unchanged line is repeated when stderr is not a terminal.
const PLAIN_REPEAT: Duration = Duration::from_secs(10);

pub struct Display {
    terminal: bool,
    last_plain: Option<(String, Instant)>,
    drawn: bool,
}

impl Display {
    pub fn stderr() -> Display {
        Display {
            terminal: std::io::stderr().is_terminal(),
            last_plain: None,
            drawn: false,
        }
    }

    pub fn show(&mut self, status: &TargetStatus, elapsed: Duration) {
        let (what, left) = describe(status);
        let mut stderr = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(stderr, "\r\x1b[2K[{:>6}] {what}{left}", human(elapsed));
            let _ = stderr.flush();
            self.drawn = true;
            return;
        }
        let due = match &self.last_plain {
            Some((last, at)) => *last != what || at.elapsed() >= PLAIN_REPEAT,
            None => true,
        };
        if due {
            let _ = writeln!(stderr, "[{:>6}] {what}{left}", human(elapsed));
            self.last_plain = Some((what, Instant::now()));
        }
    }

    /// Ends the redrawn line so the report starts on a fresh one.
    pub fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

/// State, bracket, its width; and apart (so that a ticking estimate alone does not repeat a
/// plain line) the estimate of the time left. The estimate comes from the simulator's figures
/// (docs/benchmarks.md): with a known upper bound U, discovery typically ends by about 1.5 x U
/// after it started.
fn describe(status: &TargetStatus) -> (String, String) {
    let bracket = status.bracket;
    let lower = bracket.lower.map_or("–".to_string(), human);
    let upper = bracket.upper.map_or("∞".to_string(), human);
    let width = match (bracket.lower, bracket.upper) {
        (Some(l), Some(u)) if l < u => {
            let (l, u) = (l.as_secs_f64(), u.as_secs_f64());
            format!(" ±{:.1}%", (u - l) / (u + l) * 100.0)
        }
        _ => String::new(),
    };
    let state = match (status.up, &status.last_error) {
        (true, _) => status.state.as_str(),
        (false, None) => "connecting",
        (false, Some(_)) => "unreachable",
    };
    let left = match (status.discovery_started, bracket.upper) {
        (Some(started), Some(upper)) => {
            let so_far = started.elapsed().unwrap_or_default();
            let left = upper.mul_f64(1.5).saturating_sub(so_far);
            format!(", ~{} left", human(left.max(Duration::from_secs(1))))
        }
        _ if bracket.lower.is_some() => ", time left unknown until the first drop".to_string(),
        _ => String::new(),
    };
    let mut line = format!(
        "{state}: bracket [{lower}, {upper}]{width}, {} sessions",
        status.sessions
    );
    if !status.up {
        if let Some(error) = &status.last_error {
            line.push_str(&format!(" ({error})"));
        }
    }
    (line, left)
}
