//! The `idle_drop_exporter simulate` command: a TCP proxy that forgets idle flows the way a NAT
//! gateway or a load balancer does, so a team can reproduce `kind: Closed` locally and check its
//! pool settings before deploying.
//!
//! Point the application (or the exporter) at `--listen` instead of the database; every client
//! connection becomes a flow to `--upstream`. A flow over which no byte has passed in either
//! direction for `--idle-timeout` is forgotten according to `--mode` (see [`Mode`]). Each flow
//! logs one line when it opens and one when it ends (with its fate); counters are on
//! `/metrics` when `--web.listen-address` is given. See `docs/simulate.md`.
//!
//! - this file: flags, [`Settings`], [`main`] (the binary) and [`run`] (the accept loop the
//!   binary and the tests share);
//! - [`flow`]: one flow: copying, idle tracking, the three fates;
//! - [`labels`]: the words flows and metrics share (a flow's fate, a direction);
//! - [`metrics`]: the simulator's own registry and its `/metrics` server.

pub mod flow;
pub mod labels;
pub mod metrics;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{LogConfig, LogFormat};

pub use labels::Fate;
pub use metrics::SimulatorMetrics;

/// What the simulated middlebox does to a flow that stayed idle for the idle timeout.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Stop forwarding both ways without telling anyone (AWS NLB, Azure LB, conntrack): the
    /// client's next query gets no answer until its own timeout fires.
    Silent,
    /// Forget the flow and answer the client's next packet with an RST (AWS NAT gateway).
    Reset,
    /// Close both sides with a FIN at once (a proxy, Envoy, a NAT instance): the client sees
    /// EOF while idle, quaint's `Error { kind: Closed, cause: None }`.
    Fin,
}

impl Mode {
    /// The `mode` label value and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Silent => "silent",
            Mode::Reset => "reset",
            Mode::Fin => "fin",
        }
    }
}

/// Flags of `idle_drop_exporter simulate`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Address the applications connect to instead of the database (e.g. 127.0.0.1:6543).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The real server, HOST:PORT (resolved at each new flow).
    #[arg(long, value_name = "HOST:PORT")]
    pub upstream: String,
    /// Idle time (no byte in either direction) after which a flow is forgotten; humantime
    /// (500ms, 30s, 5m).
    #[arg(long = "idle-timeout", value_name = "DURATION", value_parser = parse_timeout)]
    pub idle_timeout: Duration,
    /// What happens to a flow at expiry.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Most flows open at once; new connections beyond it are closed at once and counted as
    /// `refused_max_flows`.
    #[arg(long = "max-flows", value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_flows: u32,
    /// How long connecting to the upstream may take before the client is closed.
    #[arg(long = "upstream-connect-timeout", value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    pub connect_timeout: Duration,
    /// Address to serve the simulator's /metrics on (off unless given).
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    pub web_listen_address: Option<SocketAddr>,
    #[command(flatten)]
    pub logging: crate::logging::LogFlags,
}

/// Above zero and at most [`crate::format::MAX_DURATION`] (30 days), like every duration.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::format::parse_duration(text)
}

/// What [`run`] needs: the checked flags minus listening and logging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// HOST:PORT of the real server.
    pub upstream: String,
    pub idle_timeout: Duration,
    pub mode: Mode,
    pub max_flows: usize,
    pub connect_timeout: Duration,
}

impl Args {
    /// The settings these flags describe.
    pub fn settings(&self) -> Settings {
        Settings {
            upstream: self.upstream.clone(),
            idle_timeout: self.idle_timeout,
            mode: self.mode,
            max_flows: self.max_flows as usize,
            connect_timeout: self.connect_timeout,
        }
    }

    /// The log settings these flags describe.
    pub fn log(&self) -> LogConfig {
        self.logging.over(LogConfig {
            format: LogFormat::Text,
            level: "info".to_string(),
        })
    }
}

/// Runs the proxy until SIGINT/SIGTERM; exits 1 if an address cannot be bound.
pub async fn main(args: Args) -> ExitCode {
    crate::logging::init(&args.log());
    let settings = args.settings();
    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(address = %args.listen, error = %e, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let web = match args.web_listen_address {
        Some(address) => match TcpListener::bind(address).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::error!(address = %address, error = %e, "cannot listen for /metrics");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let metrics = Arc::new(SimulatorMetrics::new(&settings));
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            let which = crate::shutdown::terminated().await;
            tracing::info!(signal = which, "received signal; closing every flow");
            stop.cancel();
        }
    });
    let http = web.map(|listener| {
        tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving /metrics");
        tokio::spawn(metrics::serve(listener, metrics.clone(), stop.clone()))
    });
    tracing::info!(
        listen = %args.listen,
        upstream = %settings.upstream,
        idle_timeout = %humantime::format_duration(settings.idle_timeout),
        mode = settings.mode.as_str(),
        max_flows = settings.max_flows,
        "simulator started"
    );
    run(settings, listener, metrics, stop).await;
    if let Some(http) = http {
        let _ = http.await;
    }
    tracing::info!("simulator stopped");
    ExitCode::SUCCESS
}

/// Accepts client connections on `listener` and runs each as a flow to the upstream, until
/// `shutdown`; then closes every flow and returns once they are all gone. The binary and the
/// tests call this.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    metrics: Arc<SimulatorMetrics>,
    shutdown: CancellationToken,
) {
    let settings = Arc::new(settings);
    let permits = Arc::new(Semaphore::new(settings.max_flows));
    let flows = TaskTracker::new();
    let mut next_id: u64 = 0;
    loop {
        let Some((stream, client_address)) = crate::listener::accept(&listener, &shutdown).await
        else {
            break;
        };
        next_id += 1;
        let id = next_id;
        metrics.flows_opened.inc();
        tracing::info!(flow = id, client = %client_address, upstream = %settings.upstream, "flow opened");
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            metrics.ended(Fate::RefusedMaxFlows);
            tracing::warn!(
                flow = id,
                client = %client_address,
                fate = Fate::RefusedMaxFlows.as_str(),
                max_flows = settings.max_flows,
                "flow ended"
            );
            continue;
        };
        let context = flow::Context {
            id,
            client_address,
            settings: settings.clone(),
            metrics: metrics.clone(),
            shutdown: shutdown.clone(),
            permit,
        };
        flows.spawn(flow::run(context, stream));
    }
    drop(listener);
    flows.close();
    flows.wait().await;
}
