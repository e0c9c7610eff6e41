//! The `idle_drop_exporter recipes` command: the recipes for a threshold you already know (from
//! your cloud's documentation, or an earlier `discover`), without measuring. The pool matrix
//! uses it too, to run the variant `discover` did not pick.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use super::{for_path, BoxCounts, DropKind, Knobs, Measurement, Recipe, Timings};

/// Flags of `idle_drop_exporter recipes`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The longest idle known to survive on the path (the threshold's lower bound).
    #[arg(long, value_name = "DURATION", value_parser = crate::format::parse_duration)]
    pub lower: Duration,
    /// The shortest idle known to kill a connection, if known.
    #[arg(long, value_name = "DURATION", value_parser = crate::format::parse_duration)]
    pub upper: Option<Duration>,
    /// How a dropped connection looks.
    #[arg(long, value_enum, default_value = "silent")]
    pub drop: DropKind,
    /// Whether TCP keepalives keep an idle flow alive on the path.
    #[arg(long = "box", value_enum, default_value = "unknown")]
    pub box_counts: BoxCounts,
    /// Lifetime = lower × (1 − margin), e.g. 20%.
    #[arg(long, default_value = "20%", value_parser = parse_percent)]
    pub margin: f64,
    /// The longest a request may wait on a connection that died anyway.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = crate::format::parse_duration)]
    pub socket_timeout: Duration,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let fraction = text
        .trim()
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<f64>().ok())
        .map(|n| n / 100.0)
        .ok_or_else(|| format!("`{text}` is not a percentage like 20%"))?;
    if (0.0..=0.9).contains(&fraction) {
        Ok(fraction)
    } else {
        Err("must be between 0% and 90%".to_string())
    }
}

#[derive(Serialize)]
struct Output<'a> {
    box_counts: BoxCounts,
    timings: Timings,
    recipes: &'a [Recipe],
}

pub fn main(args: Args) -> ExitCode {
    let m = Measurement {
        lower: args.lower,
        upper: args.upper,
        drop: Some(args.drop),
        box_counts: args.box_counts,
    };
    let knobs = Knobs {
        margin: args.margin,
        socket_timeout: args.socket_timeout,
    };
    let Some(timings) = Timings::new(&m, &knobs) else {
        eprintln!("idle_drop_exporter recipes: --lower leaves no lifetime of at least 1s after the margin");
        return ExitCode::from(2);
    };
    let recipes = for_path(&m, &knobs);
    if args.json {
        let output = Output {
            box_counts: m.box_counts,
            timings,
            recipes: &recipes,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&output).expect("recipes serialize")
        );
    } else {
        println!(
            "Recipes for a path that drops idle connections after {} ({}; {}):\n",
            crate::format::human(m.lower),
            m.drop.map_or("?", DropKind::as_str),
            m.box_counts.describe()
        );
        print!("{}", super::render_text(&recipes));
    }
    ExitCode::SUCCESS
}
