//! The `idle_drop_exporter discover` command: one measurement of one target with the daemon's
//! own engine ([`crate::probe::run`] in [`RunMode::DiscoverOnce`]), a live progress display on
//! stderr, and a report with copy-paste pool settings on stdout.
//!
//! The flags are turned into the same configuration the daemon reads (and checked by the same
//! validator), so a value refused here is refused for the same reason there.
//!
//! Exit status: 0 measured (including "nothing dropped up to the range's max"), 1 the probe
//! could not measure (target unreachable, time limit reached), 2 bad usage, 130 interrupted
//! (Ctrl-C prints what is known so far).

mod progress;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::raw::{RawFraction, RawKeepaliveProbe, RawRange, RawTarget};
use crate::config::{self, LogConfig, LogFormat, TargetConfig};
use crate::metrics::Metrics;
use crate::model::TargetState;
use crate::probe::publisher::Publisher;
use crate::probe::status::{StatusBoard, TargetStatus};
use crate::probe::{self, RunMode};
pub use report::{Outcome, Report};

/// The `target` label and status-board key of the one measured target.
const TARGET_NAME: &str = "discover";
/// How long closing the probe sessions may take after the measurement.
const CLOSE_GRACE: Duration = Duration::from_secs(15);
/// How much of `--time-limit` is kept for closing the sessions (at most a quarter of it): the
/// limit bounds the whole run, a connect under way and the close included.
const CLOSE_RESERVE: Duration = Duration::from_secs(4);
/// How long the target may stay unreachable before the measurement is given up.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(60);

pub const EXIT_MEASURED: u8 = 0;
pub const EXIT_PROBE_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

/// Flags of `idle_drop_exporter discover`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// PostgreSQL DSN, a URL (postgres://user@host:5432/db) or key=value. Keep the password out
    /// of it: use --password-env or --password-file. One of --dsn, --dsn-env, --dsn-file.
    #[arg(long, env = "IDLE_DROP_DSN", hide_env_values = true)]
    pub dsn: Option<String>,
    /// Environment variable holding the application's own URL (its DATABASE_URL): its pool
    /// settings are judged against the measurement, then stripped before connecting.
    #[arg(long, value_name = "VAR")]
    pub dsn_env: Option<String>,
    /// File holding the application's own URL (a mounted Secret), as --dsn-env.
    #[arg(long, value_name = "FILE")]
    pub dsn_file: Option<PathBuf>,
    /// File holding the password (one line).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// disable, prefer, require, verify-ca or verify-full (libpq meanings).
    #[arg(long)]
    pub sslmode: Option<String>,
    /// PEM CA bundle for verify-ca / verify-full.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Send the password if the server asks for it in clear text on a connection without TLS
    /// (refused by default, nothing sent; libpq's require_auth=password).
    #[arg(long)]
    pub allow_cleartext_password: bool,
    /// Sessions the measurement may hold on the server at once (one control connection plus
    /// probes), 2-64. More connections finish sooner.
    #[arg(long, default_value_t = 8)]
    pub budget: i64,
    /// Shortest idle time considered.
    #[arg(long, default_value = "1s")]
    pub range_min: String,
    /// Longest idle time considered; if nothing drops up to it, that is the answer.
    #[arg(long, default_value = "1h")]
    pub range_max: String,
    /// Stop when the bracket is this tight: (upper - lower) <= precision x (upper + lower).
    #[arg(long, default_value = "5%")]
    pub precision: String,
    /// Give up after this long and print the bracket so far [default: 2 x range-max + 1m;
    /// 3.25 x when the keepalive check runs after the bracket]. Bounds the whole run: the last
    /// quarter of it (at most 4 s) is kept for closing the sessions.
    #[arg(long, value_name = "DURATION", value_parser = parse_time_limit)]
    pub time_limit: Option<Duration>,
    /// TCP + TLS + startup timeout per connection [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// No answer within this long counts as a dead connection [default: 10s]; small values
    /// make silent drops cheaper to detect.
    #[arg(long, value_name = "DURATION")]
    pub query_timeout: Option<String>,
    /// TCP_USER_TIMEOUT on probe sockets [default: the query timeout].
    #[arg(long, value_name = "DURATION")]
    pub tcp_user_timeout: Option<String>,
    /// Your pool's current idle lifetime, to be told whether it is safe.
    #[arg(long, value_name = "DURATION")]
    pub app_max_idle_lifetime: Option<String>,
    /// Recommended lifetime = lower bound x (1 - margin).
    #[arg(long, default_value = "20%")]
    pub margin: String,
    /// Socket timeout the recommendation carries.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub socket_timeout: String,
    /// Idle one connection with TCP keepalives past the upper bound: if it lives, the box counts
    /// packets and keepalives are a fix; if not, it counts requests (a proxy). It opens at the
    /// start in a slot of the budget beside the discovery and is read once the bracket is known
    /// (usually at once); with a budget under 4 (5 with --app-max-idle-lifetime) there is no
    /// slot to spare, and it runs after the bracket: about 1.25 × the upper bound more.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub keepalive_check: bool,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Diagnostics on stderr (the report and progress are not log lines).
    #[command(flatten)]
    pub logging: crate::logging::LogFlags,
}

/// Runs the command: checks the flags, measures, prints the report; returns the exit status.
pub async fn main(args: Args) -> ExitCode {
    crate::logging::init(&args.logging.over(LogConfig {
        format: LogFormat::Text,
        level: "warn".to_string(),
    }));
    let target = match target_config(&args) {
        Ok(target) => target,
        Err(message) => {
            eprintln!("idle_drop_exporter discover: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // The discovery takes at most about 2 x the range max; the keepalive check beside it has
    // idled its 1.25 x the upper bound by then, after the bracket it needs that much more.
    let rounds = match probe::keepalive_check_timing(&target) {
        Some(probe::keepalive_check::CheckTiming::AfterBracket) => 3.25,
        _ => 2.0,
    };
    // At most 3.25 x MAX_DURATION + 1m: the range max is bounded by validation.
    let time_limit = args.time_limit.unwrap_or(
        target
            .idle_max
            .mul_f64(rounds)
            .saturating_add(Duration::from_secs(60)),
    );
    let interrupt = CancellationToken::new();
    {
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            crate::shutdown::terminated().await;
            interrupt.cancel();
        });
    }
    let display = std::cell::RefCell::new(progress::Display::stderr());
    let printed = std::cell::Cell::new(false);
    let print = |report: &Report| {
        display.borrow_mut().finish();
        print_report(report, args.json);
        printed.set(true);
    };
    let report = measure(
        target,
        time_limit,
        interrupt,
        |status, elapsed| display.borrow_mut().show(status, elapsed),
        print,
    )
    .await;
    if !printed.get() {
        print(&report);
    }
    ExitCode::from(report.outcome.exit_code())
}

fn print_report(report: &Report, json: bool) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(report).expect("a report serializes")
        )
    } else {
        write!(out, "{}", report.render_text())
    };
    let _ = out.flush();
}

/// Measures one target until discovery is over, `time_limit` passes, the target stays
/// unreachable, or `interrupt`; calls `progress` about once a second until the answer. Calls
/// `answer` with the report as soon as the answer is complete (the bracket, and the keepalive
/// verdict when the check runs), while the probe sessions still close: the person waiting
/// need not wait for that too. Every probe session is closed (and any ghost terminated) before
/// this returns the report: the one `answer` was given, if any.
pub async fn measure(
    target: TargetConfig,
    time_limit: Duration,
    interrupt: CancellationToken,
    mut progress: impl FnMut(&TargetStatus, Duration),
    answer: impl FnOnce(&Report),
) -> Report {
    let target = Arc::new(target);
    let metrics = Arc::new(Metrics::new());
    let board: StatusBoard = Default::default();
    let publish = Publisher::start(&metrics, &board, &target, None);
    let stop = CancellationToken::new();
    let mut task = tokio::spawn(probe::run(
        target.clone(),
        probe::RunContext::default(),
        publish,
        RunMode::DiscoverOnce,
        stop.clone(),
    ));
    let started = Instant::now();
    // The measurement stops early enough for the close to fit in the limit too. A limit too
    // far to be a clock reading is no limit (flags bound it well below that).
    let close_reserve = CLOSE_RESERVE.min(time_limit / 4);
    let deadline = started.checked_add(time_limit - close_reserve);
    let mut last_reachable = started;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    // How soon a complete answer is seen (a read of the status board).
    let mut answer_poll = tokio::time::interval(Duration::from_millis(50));
    let mut answer = Some(answer);
    let mut answered = None;
    let snapshot = || {
        board
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&target.name)
            .cloned()
            .expect("the target stays on the board")
    };
    let outcome = loop {
        tokio::select! {
            _ = &mut task => break None,
            _ = interrupt.cancelled() => break Some(Outcome::Interrupted),
            _ = until(deadline) => break Some(Outcome::TimeLimit),
            _ = answer_poll.tick(), if answered.is_none() => {
                let status = snapshot();
                if let (Some(outcome), Some(answer)) = (complete(&target, &status), answer.take()) {
                    let report = Report::new(&target, &status, outcome, started.elapsed());
                    answer(&report);
                    answered = Some(report);
                }
            }
            _ = ticker.tick() => {
                let status = snapshot();
                if answered.is_none() {
                    progress(&status, started.elapsed());
                }
                if status.up {
                    last_reachable = Instant::now();
                } else if last_reachable.elapsed() >= unreachable_limit(&target) {
                    break Some(Outcome::Unreachable);
                }
            }
        }
    };
    if let Some(outcome) = outcome {
        let grace = match outcome {
            Outcome::TimeLimit => close_reserve,
            _ => CLOSE_GRACE,
        };
        stop_within(&mut task, &stop, grace).await;
    }
    answered.unwrap_or_else(|| {
        let status = snapshot();
        // The engine ended by itself: it measured (its verdict was not seen in time).
        let outcome = outcome.or_else(|| complete(&target, &status));
        let outcome = outcome.unwrap_or(Outcome::Measured);
        Report::new(&target, &status, outcome, started.elapsed())
    })
}

/// Stops the run early and waits up to `grace` for its sessions to close.
async fn stop_within<T>(
    task: &mut tokio::task::JoinHandle<T>,
    stop: &CancellationToken,
    grace: Duration,
) {
    stop.cancel();
    if tokio::time::timeout(grace, &mut *task).await.is_err() {
        tracing::warn!(grace = %crate::format::duration(grace), "probe sessions still closing after the grace period");
        task.abort();
    }
}

/// The outcome, once `status` holds the whole answer: the discovery is over, and the keepalive
/// verdict is in when the bracket was found and the check runs (it runs only then).
fn complete(target: &TargetConfig, status: &TargetStatus) -> Option<Outcome> {
    match status.state {
        TargetState::NoDrop => Some(Outcome::NoDropUpToMax),
        TargetState::BelowRange => Some(Outcome::BelowRange),
        TargetState::Watching
            if status.keepalive_rescue.is_some()
                || probe::keepalive_check_timing(target).is_none() =>
        {
            Some(Outcome::Measured)
        }
        _ => None,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The longest `--time-limit`: four times the longest range max, above the default for it
/// (3.25 x range max + 1m).
pub const MAX_TIME_LIMIT: Duration = Duration::from_secs(4 * config::MAX_DURATION.as_secs());

/// `--time-limit`: a duration above zero and at most [`MAX_TIME_LIMIT`].
fn parse_time_limit(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be longer than zero".to_string());
    }
    if duration > MAX_TIME_LIMIT {
        return Err(format!(
            "longer than {}, the longest time limit accepted",
            humantime::format_duration(MAX_TIME_LIMIT)
        ));
    }
    Ok(duration)
}

/// Never reached: give up after a few connect attempts; once reached: allow an outage.
fn unreachable_limit(target: &TargetConfig) -> Duration {
    (target.connect_timeout * 2 + Duration::from_secs(3))
        .max(Duration::from_secs(8))
        .min(UNREACHABLE_LIMIT)
}

/// The flags as the daemon's configuration of one target, checked by the same validator.
/// Errors name the flag.
pub fn target_config(args: &Args) -> Result<TargetConfig, String> {
    let path = |p: &Path| p.display().to_string();
    let given = [
        args.dsn.is_some(),
        args.dsn_env.is_some(),
        args.dsn_file.is_some(),
    ];
    match given.iter().filter(|g| **g).count() {
        1 => {}
        0 => return Err("--dsn, --dsn-env or --dsn-file is required".to_string()),
        _ => {
            return Err(
                "give one of --dsn (or IDLE_DROP_DSN), --dsn-env and --dsn-file, not several"
                    .to_string(),
            )
        }
    }
    let raw = RawTarget {
        name: Some(TARGET_NAME.into()),
        dsn: args.dsn.clone(),
        dsn_env: args.dsn_env.clone(),
        dsn_file: args.dsn_file.as_deref().map(path),
        password_file: args.password_file.as_deref().map(path),
        password_env: args.password_env.clone(),
        sslmode: args.sslmode.clone(),
        ca_file: args.ca_file.as_deref().map(path),
        allow_cleartext_password: Some(args.allow_cleartext_password),
        connect_timeout: args.connect_timeout.clone(),
        probe_query: None,
        query_timeout: args.query_timeout.clone(),
        tcp_user_timeout: args.tcp_user_timeout.clone(),
        max_connections: Some(args.budget),
        idle_range: Some(RawRange {
            min: Some(args.range_min.clone()),
            max: Some(args.range_max.clone()),
        }),
        precision: Some(RawFraction::Text(args.precision.clone())),
        watch_ladder: None,
        app_max_idle_lifetime: args.app_max_idle_lifetime.clone(),
        recommendation_margin: Some(RawFraction::Text(args.margin.clone())),
        recommended_socket_timeout: Some(args.socket_timeout.clone()),
        // The interval is capped at a third of the lower bound when the check runs.
        keepalive_probe: args.keepalive_check.then(|| RawKeepaliveProbe {
            enabled: None,
            interval: Some("30s".into()),
        }),
        reap_ghosts: None,
        discovery_policy: None,
        labels: None,
    };
    let (target, warnings) = config::validate::target(Path::new("command line"), raw)
        .map_err(|e| format!("{}: {}", flag_of(&e.field), e.reason))?;
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    Ok(target)
}

/// The flag a configuration field came from (`targets[0].max_connections` → `--budget`).
fn flag_of(field: &str) -> String {
    let key = field.strip_prefix("targets[0]").unwrap_or(field);
    let key = key.trim_start_matches('.');
    let flag = match key {
        "max_connections" => "budget",
        "idle_range.min" => "range-min",
        "idle_range.max" | "idle_range" => "range-max",
        "recommendation_margin" => "margin",
        "recommended_socket_timeout" => "socket-timeout",
        "" => "arguments",
        other => return format!("--{}", other.replace('_', "-")),
    };
    format!("--{flag}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["discover", "--dsn", "postgres://probe@127.0.0.1:5432/db"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).expect("flags parse").args
    }

    #[test]
    fn flags_become_the_daemons_target_settings() {
        let t = target_config(&args(&[
            "--budget",
            "4",
            "--range-min",
            "2s",
            "--range-max",
            "10m",
            "--precision",
            "2%",
            "--query-timeout",
            "3s",
            "--app-max-idle-lifetime",
            "5m",
        ]))
        .unwrap();
        assert_eq!(t.max_connections, 4);
        assert_eq!(t.idle_min, Duration::from_secs(2));
        assert_eq!(t.idle_max, Duration::from_secs(600));
        assert!((t.precision - 0.02).abs() < 1e-9);
        assert_eq!(t.query_timeout, Duration::from_secs(3));
        assert_eq!(t.app_max_idle_lifetime, Some(Duration::from_secs(300)));
    }

    #[test]
    fn refusals_name_the_flag() {
        let e = target_config(&args(&["--budget", "500"])).unwrap_err();
        assert!(e.starts_with("--budget: "), "{e}");
        let e = target_config(&args(&["--range-min", "1m", "--range-max", "10s"])).unwrap_err();
        assert!(e.starts_with("--range-"), "{e}");
        let e = target_config(&args(&["--query-timeout", "soon"])).unwrap_err();
        assert!(e.starts_with("--query-timeout: "), "{e}");
        let e = target_config(&args(&["--sslmode", "sometimes"])).unwrap_err();
        assert!(e.starts_with("--sslmode: "), "{e}");
    }

    #[test]
    fn durations_beyond_the_bound_are_refused_not_panicked_on() {
        // `--range-max 300000000000y` and `--time-limit 300000000000y` used to exit 101.
        for flag in [
            "--range-max",
            "--query-timeout",
            "--connect-timeout",
            "--tcp-user-timeout",
            "--app-max-idle-lifetime",
            "--socket-timeout",
        ] {
            let e = target_config(&args(&[flag, "300000000000y"])).unwrap_err();
            assert!(e.starts_with(&format!("{flag}: ")), "{e}");
            assert!(e.contains("longest duration accepted"), "{e}");
        }
        for limit in ["300000000000y", "121days"] {
            let e = Cli::try_parse_from([
                "discover",
                "--dsn",
                "postgres://probe@127.0.0.1:5432/db",
                "--time-limit",
                limit,
            ])
            .err()
            .expect("refused");
            assert!(e.to_string().contains("longest time limit"), "{e}");
        }
        assert_eq!(
            args(&["--time-limit", "120days"]).time_limit,
            Some(MAX_TIME_LIMIT)
        );
        // The default time limit for the longest range is a valid clock offset.
        let t = target_config(&args(&["--range-max", "30days"])).unwrap();
        assert!(Instant::now()
            .checked_add(t.idle_max.mul_f64(3.25))
            .is_some());
    }

    #[test]
    fn the_applications_url_comes_from_dsn_env_or_dsn_file() {
        std::env::set_var(
            "IDLE_DROP_DISCOVER_TEST_URL",
            "postgresql://app:app-pw@127.0.0.1:5432/app?schema=public&max_idle_connection_lifetime=60",
        );
        let mut a = args(&[]);
        a.dsn = None;
        a.dsn_env = Some("IDLE_DROP_DISCOVER_TEST_URL".into());
        let t = target_config(&a).unwrap();
        assert_eq!(t.app_params.max_idle_connection_lifetime, Some(60));
        assert_eq!(t.app_max_idle_lifetime, Some(Duration::from_secs(60)));
        a.dsn_env = Some("IDLE_DROP_DISCOVER_SURELY_UNSET".into());
        let e = target_config(&a).unwrap_err();
        assert!(
            e.starts_with("--dsn-env: environment variable IDLE_DROP_DISCOVER_SURELY_UNSET"),
            "{e}"
        );
        a.dsn_env = None;
        a.dsn_file = Some(PathBuf::from("/nonexistent/url"));
        let e = target_config(&a).unwrap_err();
        assert!(e.starts_with("--dsn-file: cannot read"), "{e}");
        a.dsn_file = None;
        assert!(target_config(&a).unwrap_err().contains("is required"));
        let mut both = args(&[]);
        both.dsn_env = Some("IDLE_DROP_DISCOVER_TEST_URL".into());
        assert!(target_config(&both).unwrap_err().contains("not several"));
    }

    #[test]
    fn a_password_in_a_refused_dsn_is_not_repeated() {
        let mut a = args(&[]);
        a.dsn = Some("postgres://probe:s3cret-pw@127.0.0.1/db?sslmode=bogus".into());
        let e = target_config(&a).unwrap_err();
        assert!(!e.contains("s3cret-pw"), "{e}");
    }
}
