//! The `idle_drop_exporter simulate` command: a TCP proxy that forgets idle flows the way a NAT gateway or a
//! load balancer does, so a team can reproduce `kind: Closed` locally and check its pool
//! settings before deploying.

use std::process::ExitCode;

/// Flags of `idle_drop_exporter simulate`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the proxy until SIGINT/SIGTERM.
pub async fn main(_args: Args) -> ExitCode {
    eprintln!("simulate: not implemented yet");
    ExitCode::FAILURE
}
