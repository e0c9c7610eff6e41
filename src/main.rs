//! The `idle_drop_exporter` binary: flags, configuration, logging, then the daemon; or one of
//! the tools for the person in trouble (`discover`, `simulate`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use idle_drop_exporter::{config, daemon, http, logging, oneshot, recipes, shutdown, simulator};

/// Exit status for an invalid configuration (sysexits' EX_CONFIG).
const EXIT_BAD_CONFIG: u8 = 78;

/// Measures after how long the network path silently drops idle PostgreSQL connections and
/// exports it to Prometheus.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Flags {
    #[command(subcommand)]
    tool: Option<Tool>,
    /// Configuration file.
    #[arg(
        long = "config",
        visible_alias = "config.file",
        default_value = "config.yaml"
    )]
    config: PathBuf,
    /// Address to serve /metrics on; overrides `listen_address` in the file.
    #[arg(long = "web.listen-address")]
    listen_address: Option<std::net::SocketAddr>,
    /// TLS and basic auth for our endpoint, in Prometheus exporter-toolkit's web-config format
    /// (docs/web-config.md).
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,
    /// Log level or filter (error, warn, info, debug, trace); overrides the file.
    #[arg(long = "log.level")]
    log_level: Option<String>,
    /// Log format (text or json); overrides the file.
    #[arg(long = "log.format", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Check the configuration file and exit (0 if valid, 78 if not).
    #[arg(long = "check-config")]
    check_config: bool,
}

#[derive(Subcommand, Debug)]
enum Tool {
    /// Measure one target's idle-drop threshold once and print settings for your pool.
    Discover(Box<oneshot::Args>),
    /// Run a TCP proxy that forgets idle flows like a NAT gateway or load balancer.
    Simulate(simulator::Args),
    /// Print pool settings for a threshold you already know, without measuring.
    Recipes(recipes::command::Args),
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    if let Some(tool) = flags.tool {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        return match tool {
            Tool::Discover(args) => runtime.block_on(oneshot::main(*args)),
            Tool::Simulate(args) => runtime.block_on(simulator::main(args)),
            Tool::Recipes(args) => recipes::command::main(args),
        };
    }
    let mut config = match config::load(&flags.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if let Some(path) = &flags.web_config_file {
        if let Err(e) = http::web_config::load(path) {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
        config.web_config_file = Some(path.clone());
    }
    if flags.check_config {
        for warning in &config.warnings {
            eprintln!("warning: {warning}");
        }
        println!(
            "{}: OK ({} targets)",
            flags.config.display(),
            config.targets.len()
        );
        return ExitCode::SUCCESS;
    }
    if let Some(address) = flags.listen_address {
        config.listen_address = address;
    }
    if let Some(level) = flags.log_level {
        config.log.level = level;
    }
    if let Some(format) = flags.log_format.as_deref() {
        config.log.format = if format == "json" {
            config::LogFormat::Json
        } else {
            config::LogFormat::Text
        };
    }
    logging::init(&config.log);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        // Listening from before anything starts until the end: see `shutdown`.
        let signals = match shutdown::Signals::new() {
            Ok(signals) => signals,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for signals");
                return ExitCode::FAILURE;
            }
        };
        let listener = match tokio::net::TcpListener::bind(config.listen_address).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(address = %config.listen_address, error = %e, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(address = %config.listen_address, targets = config.targets.len(), "idle_drop_exporter started");
        let stop = CancellationToken::new();
        let (trigger, inbox) = daemon::reload_channel();
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
        daemon::run(flags.config, config, listener, (trigger, inbox), stop).await;
        signals.abort();
        logging::flush(std::time::Duration::from_secs(2));
        ExitCode::SUCCESS
    })
}
