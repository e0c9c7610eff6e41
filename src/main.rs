//! The `idle_drop_exporter` binary: flags, configuration, logging, then the daemon; or one of
//! the tools for the person in trouble (`discover`, `simulate`, `recipes`), or the shell
//! completions and man page (`completions`, `man`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use idle_drop_exporter::listener::ListenAddress;
use idle_drop_exporter::{
    build_info, config, daemon, discover, format, http, logging, offload, recipes, shutdown,
    simulator, storage,
};

/// Exit status for an invalid configuration (sysexits' EX_CONFIG).
const EXIT_BAD_CONFIG: u8 = 78;

/// The end of `--help` (and the man page's extra section): what is not a flag.
const AFTER_HELP: &str = "\
Listens on 0.0.0.0:10187 (default port 10187) unless --web.listen-address or the file's
listen_address says otherwise. Serves /metrics, / (status page), /-/healthy, /-/ready and
/-/reload.

Exit status:
  0   stopped by SIGTERM or SIGINT; --config.check found the configuration valid
  1   cannot listen on an address, or cannot install the signal handlers
  2   wrong flags or command line
  78  invalid configuration (file, target file, web config or --storage.path), named with
      FILE:LINE: FIELD (sysexits' EX_CONFIG)
  (discover: 0 measured, 1 probe failure, 2 usage, 130 interrupted; see discover --help)

Signals:
  SIGHUP           reload the configuration file (as POST /-/reload); a bad file keeps the
                   running configuration
  SIGTERM, SIGINT  stop: every probe connection is closed (up to 15 s), then open HTTP
                   requests get 5 s to finish";

/// Measures after how long the network path silently drops idle PostgreSQL connections and
/// exports it to Prometheus.
#[derive(Parser, Debug)]
#[command(
    name = "idle_drop_exporter",
    about,
    after_help = AFTER_HELP,
    disable_version_flag = true,
    args_conflicts_with_subcommands = true
)]
struct Flags {
    #[command(subcommand)]
    tool: Option<Tool>,
    /// Print the version, git revision, build date and rustc version, and exit.
    #[arg(long)]
    version: bool,
    /// Configuration file.
    #[arg(
        long = "config.file",
        visible_alias = "config",
        default_value = "config.yaml"
    )]
    config: PathBuf,
    /// Address to serve /metrics on: :PORT (every interface, IPv4 and IPv6), HOST:PORT,
    /// IP:PORT or [IPv6]:PORT. Repeat it to listen on several. Overrides `listen_address` in
    /// the file [default: the file's, else 0.0.0.0:10187]
    #[arg(
        long = "web.listen-address",
        value_name = "[HOST]:PORT",
        value_parser = ListenAddress::parse,
        action = clap::ArgAction::Append
    )]
    listen_addresses: Vec<ListenAddress>,
    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        default_value = config::DEFAULT_TELEMETRY_PATH,
        value_parser = config::parse_telemetry_path
    )]
    telemetry_path: String,
    /// TLS and basic auth for our endpoint, in Prometheus exporter-toolkit's web-config format
    /// (docs/web-config.md).
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,
    /// Probe only this replica's share of the targets: I/N (0 <= I < N), a target belonging to
    /// shard I when a stable hash of its name is I modulo N.
    #[arg(long = "shard", value_parser = config::Shard::parse)]
    shard: Option<config::Shard>,
    /// Directory where each target's last measurement is kept, so a restart resumes from it
    /// instead of measuring from zero (off by default).
    #[arg(long = "storage.path")]
    storage_path: Option<PathBuf>,
    #[command(flatten)]
    log: logging::LogFlags,
    /// Check the configuration file and exit (0 if valid, 78 if not).
    #[arg(long = "config.check", visible_alias = "check-config")]
    check_config: bool,
    /// With --config.check: an environment variable a target names (dsn_env, password_env)
    /// that is unset is a warning, not an error, so CI can lint a configuration without its
    /// secrets.
    #[arg(long = "config.check.allow-missing-env", requires = "check_config")]
    allow_missing_env: bool,
}

#[derive(Subcommand, Debug)]
enum Tool {
    /// Measure one target's idle-drop threshold once and print settings for your pool.
    Discover(Box<discover::Args>),
    /// Run a TCP proxy that forgets idle flows like a NAT gateway or load balancer.
    Simulate(simulator::Args),
    /// Print pool settings for a threshold you already know, without measuring.
    Recipes(recipes::command::Args),
    /// Print a shell completion script (bash: `source <(idle_drop_exporter completions bash)`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `idle_drop_exporter man | man -l -`.
    Man,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    if flags.version {
        print!("{}", build_info::get().version_text());
        return ExitCode::SUCCESS;
    }
    if let Some(tool) = flags.tool {
        return run_tool(tool);
    }
    let missing_env = if flags.allow_missing_env {
        config::MissingEnv::Warn
    } else {
        config::MissingEnv::Refuse
    };
    let path = flags.config.clone();
    let loaded = within_deadline(&flags.config, move || {
        config::load_checking(&path, missing_env)
    });
    let mut config = match loaded {
        Ok(config) => config,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if let Some(path) = &flags.web_config_file {
        let web = path.clone();
        if let Err(e) = within_deadline(path, move || http::web_config::load(&web).map(drop)) {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
        config.web_config_file = Some(path.clone());
    }
    config.telemetry_path = flags.telemetry_path.clone();
    if let Some(dir) = &flags.storage_path {
        // Checked here so a wrong flag stops the start; the daemon opens the store itself.
        if let Err(e) = storage::Store::open(dir) {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
        config.storage_path = Some(dir.clone());
    }
    config.shard = flags.shard;
    if flags.check_config {
        return check_config(&flags, &config);
    }
    // Held until the process ends: a second exporter on the same directory refuses to start.
    let _storage_lock = match lock_storage(&config) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    // The file's listen_address stays in the config (a reload compares against it).
    let addresses = if flags.listen_addresses.is_empty() {
        vec![config.listen_address.clone()]
    } else {
        flags.listen_addresses.clone()
    };
    config.log = flags.log.over(config.log);
    logging::init(&config.log);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(serve(flags.config, config, addresses))
}

/// `discover`, `simulate`, `recipes`, `completions`, `man`.
fn run_tool(tool: Tool) -> ExitCode {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    };
    let status = match tool {
        Tool::Discover(args) => runtime().block_on(discover::main(*args)),
        Tool::Simulate(args) => runtime().block_on(simulator::main(args)),
        Tool::Recipes(args) => recipes::command::main(args),
        Tool::Completions { shell } => {
            let mut command = Flags::command();
            clap_complete::generate(
                shell,
                &mut command,
                "idle_drop_exporter",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Tool::Man => man(),
    };
    // Log lines go through a queue; the last ones (the signal, the shutdown) must not be lost.
    logging::flush(std::time::Duration::from_secs(2));
    status
}

/// The man page: the daemon's flags, the commands, exit status and signals, and the version.
fn man() -> ExitCode {
    let command = Flags::command().version(build_info::get().version);
    let page = clap_mangen::Man::new(command);
    let mut out = Vec::new();
    let rendered = page.render(&mut out);
    use std::io::Write;
    match rendered.and_then(|()| std::io::stdout().write_all(&out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idle_drop_exporter man: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds every address, then runs the daemon until SIGTERM or SIGINT.
async fn serve(
    config_path: PathBuf,
    config: config::Config,
    addresses: Vec<ListenAddress>,
) -> ExitCode {
    // Listening from before anything starts until the end: see `shutdown`.
    let signals = match shutdown::Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for signals");
            return ExitCode::FAILURE;
        }
    };
    let mut listeners = Vec::new();
    for address in &addresses {
        match address.bind().await {
            Ok(listener) => listeners.push(listener),
            Err(e) => {
                tracing::error!(address = %address, error = %e, "cannot listen");
                return ExitCode::FAILURE;
            }
        }
    }
    let bound: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let build = build_info::get();
    tracing::info!(
        version = build.version,
        revision = build.revision,
        branch = build.branch,
        build_date = %build.build_date,
        rustc_version = build.rustc_version,
        address = %bound.join(","),
        inline_targets = config.targets.len(),
        target_files = config.target_files.patterns.len(),
        "idle_drop_exporter started"
    );
    let stop = CancellationToken::new();
    let (trigger, inbox) = idle_drop_exporter::reload::channel();
    let signals = {
        let stop = stop.clone();
        let trigger = trigger.clone();
        tokio::spawn(signals.relay(stop, move || {
            let trigger = trigger.clone();
            async move {
                let _ = trigger.reload().await;
            }
        }))
    };
    daemon::run(config_path, config, listeners, (trigger, inbox), stop).await;
    signals.abort();
    logging::flush(std::time::Duration::from_secs(2));
    ExitCode::SUCCESS
}

/// Locks `--storage.path` (if given) for this process; a directory another exporter holds is
/// refused with one line and exit status 78.
fn lock_storage(config: &config::Config) -> Result<Option<storage::DirLock>, ExitCode> {
    config
        .storage_path
        .as_deref()
        .map(storage::lock)
        .transpose()
        .map_err(|e| {
            eprintln!("invalid configuration: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        })
}

/// Reads and checks a file (`load`) on a thread of its own: refused if that takes longer than
/// [`offload::FILE_WORK_DEADLINE`] (a hung mount), as the daemon refuses it on reload.
fn within_deadline<T: Send + 'static>(
    file: &std::path::Path,
    load: impl FnOnce() -> Result<T, config::ConfigError> + Send + 'static,
) -> Result<T, config::ConfigError> {
    offload::blocking(offload::FILE_WORK_DEADLINE, load).unwrap_or_else(|| {
        Err(config::ConfigError {
            file: file.to_path_buf(),
            line: None,
            field: String::new(),
            reason: format!(
                "reading and checking the file took longer than {}",
                format::duration(offload::FILE_WORK_DEADLINE)
            ),
        })
    })
}

/// `--config.check`: the configuration file was loaded; reads its target files as the daemon
/// would at start and prints what it found. Unlike the daemon, which starts with the good files
/// and logs a refused one, any refused target file fails the check.
fn check_config(flags: &Flags, config: &config::Config) -> ExitCode {
    let mut target_files = config::TargetFiles::default();
    let read = target_files.refresh(&config.target_files, &config.targets, &flags.config, true);
    for warning in config.warnings.iter().chain(&read.warnings) {
        eprintln!("warning: {warning}");
    }
    for refusal in &read.refused {
        eprintln!("invalid target file: {refusal}");
    }
    let all: Vec<&config::TargetConfig> = config
        .targets
        .iter()
        .chain(target_files.targets())
        .collect();
    let shard = flags.shard.map_or(String::new(), |shard| {
        let owned = all.iter().filter(|t| shard.owns(&t.name)).count();
        format!(", {owned} in shard {shard}")
    });
    let bad = !target_files.all_known();
    let verdict = if bad { "REFUSED" } else { "OK" };
    println!(
        "{}: {verdict} ({} targets{shard})",
        flags.config.display(),
        all.len()
    );
    if !config.target_files.patterns.is_empty() {
        println!("  inline: {} targets", config.targets.len());
        for file in target_files.files() {
            let state = if file.ok { "" } else { " (refused)" };
            println!("  {}: {} targets{state}", file.path.display(), file.targets);
        }
    }
    if bad {
        ExitCode::from(EXIT_BAD_CONFIG)
    } else {
        ExitCode::SUCCESS
    }
}

/// Hostile command lines: every flag of the daemon and of its three commands, with plausible or
/// arbitrary Unicode values. Parsing (and the checks `discover` and `simulate` run on what was
/// parsed) never panics, and a refusal never repeats the DSN's password.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Marks both ends of a password; nothing else generated contains them.
    const PW_OPEN: char = '\u{1F511}';
    const PW_CLOSE: char = '\u{1F512}';

    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(any::<char>(), 0..10)
            .prop_map(|c| String::from_iter(c).replace([PW_OPEN, PW_CLOSE, '\0'], "~"))
    }

    const DURATIONS: &[&str] = &["1s", "90s", "1h", "500ms", "0s", "31days", "290000000000y"];

    /// (flag, plausible values) per command; `None` is the daemon.
    fn flags(tool: Option<&str>) -> Vec<(&'static str, Vec<&'static str>)> {
        match tool {
            None => vec![
                ("--config", vec!["config.yaml", "/nonexistent/c.yaml"]),
                (
                    "--web.listen-address",
                    vec![
                        "127.0.0.1:0",
                        "[::1]:10187",
                        ":10187",
                        "localhost:10187",
                        "nowhere",
                        "::1:80",
                    ],
                ),
                ("--web.config.file", vec!["web.yml"]),
                (
                    "--storage.path",
                    vec!["/var/lib/idle_drop_exporter", "/nonexistent"],
                ),
                ("--log.level", vec!["info", "debug"]),
                ("--log.format", vec!["text", "logfmt", "json", "xml"]),
                ("--check-config", vec![]),
                ("--config.check.allow-missing-env", vec![]),
            ],
            Some("discover") => vec![
                (
                    "--dsn",
                    vec!["postgres://probe@db/app", "host=db user=probe"],
                ),
                ("--password-env", vec!["NOPE_UNSET"]),
                ("--sslmode", vec!["require", "verify-full", "bogus"]),
                ("--budget", vec!["8", "2", "1", "65", "-3"]),
                ("--range-min", DURATIONS.to_vec()),
                ("--range-max", DURATIONS.to_vec()),
                ("--precision", vec!["5%", "0%", "60%", "nan%"]),
                ("--time-limit", DURATIONS.to_vec()),
                ("--connect-timeout", DURATIONS.to_vec()),
                ("--query-timeout", DURATIONS.to_vec()),
                ("--tcp-user-timeout", DURATIONS.to_vec()),
                ("--app-max-idle-lifetime", DURATIONS.to_vec()),
                ("--margin", vec!["20%", "95%"]),
                ("--socket-timeout", DURATIONS.to_vec()),
                ("--keepalive-check", vec!["true", "false", "maybe"]),
                ("--json", vec![]),
                ("--log.level", vec!["warn", "nope[["]),
                ("--log.format", vec!["logfmt", "json", "xml"]),
            ],
            Some("simulate") => vec![
                ("--listen", vec!["127.0.0.1:6543", "localhost:1"]),
                ("--upstream", vec!["127.0.0.1:5432"]),
                ("--idle-timeout", DURATIONS.to_vec()),
                ("--mode", vec!["silent", "reset", "fin", "drop"]),
                ("--max-flows", vec!["1", "0", "1000001", "1024"]),
                ("--upstream-connect-timeout", DURATIONS.to_vec()),
                ("--web.listen-address", vec!["127.0.0.1:0"]),
                ("--log.level", vec!["info"]),
                ("--log.format", vec!["text", "logfmt", "json"]),
            ],
            Some(_) => vec![
                ("--lower", DURATIONS.to_vec()),
                ("--upper", DURATIONS.to_vec()),
                ("--drop", vec!["silent", "reset", "fin"]),
                ("--box", vec!["packets", "requests", "unknown"]),
                ("--margin", vec!["20%", "0%", "90%", "91%"]),
                ("--socket-timeout", DURATIONS.to_vec()),
                ("--json", vec![]),
            ],
        }
    }

    /// Flags every run of the command needs; present in most generated command lines.
    const REQUIRED: &[&str] = &[
        "--dsn",
        "--listen",
        "--upstream",
        "--idle-timeout",
        "--mode",
        "--lower",
    ];

    /// A command line (each flag at most once, in table order, a plausible or an arbitrary
    /// value, sometimes a stray argument), and the password its DSN carries (if it has one).
    fn command_line() -> impl Strategy<Value = (Vec<String>, String)> {
        let tool = prop::sample::select(vec![
            None,
            Some("discover"),
            Some("simulate"),
            Some("recipes"),
        ]);
        let pick = (
            0u8..20,
            any::<prop::sample::Index>(),
            0u8..12,
            text(),
            any::<bool>(),
        );
        (tool, prop::collection::vec(pick, 18), text()).prop_map(|(tool, picks, pw)| {
            let password = format!("{PW_OPEN}{pw}{PW_CLOSE}");
            let mut argv = vec!["idle_drop_exporter".to_string()];
            argv.extend(tool.map(str::to_string));
            for ((name, values), (presence, value, how, text, joined)) in
                flags(tool).into_iter().zip(picks)
            {
                let present = if REQUIRED.contains(&name) {
                    presence > 0
                } else {
                    presence < 8
                };
                if !present {
                    continue;
                }
                let value = match how {
                    0..=7 if !values.is_empty() => values[value.index(values.len())].to_string(),
                    8 if name == "--dsn" => format!(
                        "postgres://probe:{}@db/app",
                        percent_encoding::utf8_percent_encode(
                            &password,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    ),
                    9 => {
                        // A stray argument of arbitrary text.
                        argv.push(text);
                        continue;
                    }
                    _ => text,
                };
                if values.is_empty() && how < 10 {
                    argv.push(name.to_string());
                } else if joined {
                    argv.push(format!("{name}={value}"));
                } else {
                    argv.push(name.to_string());
                    argv.push(value);
                }
            }
            (argv, password)
        })
    }

    fn leaks(shown: &str) -> bool {
        shown.contains(PW_OPEN) || shown.contains(PW_CLOSE)
    }

    /// Fuzz budget: 1,024 command lines per run (about a quarter for each command).
    const CLI_CASES: u32 = 1024;

    #[test]
    fn recipes_refuses_durations_beyond_thirty_days() {
        for flag in ["--lower", "--upper", "--socket-timeout"] {
            let mut argv = vec!["idle_drop_exporter", "recipes", "--lower", "1m"];
            argv.extend([flag, "290000000000y"]);
            if flag == "--lower" {
                argv.drain(2..4);
            }
            assert!(Flags::try_parse_from(&argv).is_err(), "{argv:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: CLI_CASES,
            failure_persistence: None,
            // Reproducible like the library's fuzzers (`IDLE_DROP_FUZZ_SEED` explores further).
            rng_seed: match std::env::var("IDLE_DROP_FUZZ_SEED").ok().as_deref() {
                Some("random") => proptest::test_runner::RngSeed::Random,
                Some(n) => proptest::test_runner::RngSeed::Fixed(n.parse().unwrap_or(0x1D1E_D50F)),
                None => proptest::test_runner::RngSeed::Fixed(0x1D1E_D50F),
            },
            ..ProptestConfig::default()
        })]

        #[test]
        fn any_command_line_is_parsed_or_refused_never_panics((argv, _pw) in command_line()) {
            match Flags::try_parse_from(&argv) {
                Err(e) => {
                    let shown = e.render().to_string();
                    prop_assert!(!leaks(&shown), "{argv:?}\n{shown}");
                }
                Ok(flags) => match flags.tool {
                    Some(Tool::Discover(args)) => {
                        if let Err(message) = discover::target_config(&args) {
                            prop_assert!(!leaks(&message), "{argv:?}\n{message}");
                        }
                    }
                    Some(Tool::Simulate(args)) => {
                        let s = args.settings();
                        prop_assert!(s.idle_timeout <= config::MAX_DURATION);
                        prop_assert!(s.connect_timeout <= config::MAX_DURATION);
                    }
                    Some(Tool::Recipes(args)) => {
                        let _ = recipes::command::main(args);
                    }
                    Some(Tool::Completions { .. } | Tool::Man) | None => {}
                },
            }
        }
    }
}
