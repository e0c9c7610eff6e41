//! The `idle_drop_exporter discover` command: one measurement of one target with the daemon's engine, a live
//! progress display, and a report with copy-paste pool settings.

use std::process::ExitCode;

/// Flags of `idle_drop_exporter discover`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Measures once and prints the report.
pub async fn main(_args: Args) -> ExitCode {
    eprintln!("discover: not implemented yet");
    ExitCode::FAILURE
}
