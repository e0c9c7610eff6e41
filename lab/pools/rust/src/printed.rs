//! The Rust recipes as idle_drop_exporter prints them, compiled into the harness by build.rs
//! (the texts the exporter prints for a threshold of 10 s, each number replaced by `n(i)`).
//!
//! A job carries the text printed for its own box (`recipe_text`). It runs through the compiled
//! code only if it is the same code, numbers aside (same skeleton); the compiled code then reads
//! the job's own numbers through [`n`]. So what runs is the printed text, and a text that does
//! not compile, or that no longer matches what was compiled, fails its cell.

use std::str::FromStr;
use std::sync::Mutex;

use crate::tokens;

include!(concat!(env!("OUT_DIR"), "/printed.rs"));

/// The numbers of the job's text, in order (one job per process).
static NUMBERS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The `i`-th number of the job's text, as the type the code wants there.
pub fn n<T: FromStr>(i: usize) -> T {
    let numbers = NUMBERS.lock().unwrap_or_else(|e| e.into_inner());
    let text = numbers
        .get(i)
        .unwrap_or_else(|| panic!("printed text: no number {i}"));
    text.parse()
        .unwrap_or_else(|_| panic!("printed text: number {i} ({text}) is not a {}", std::any::type_name::<T>()))
}

/// Finds the compiled text of `library` that is the same code as `text`, takes `text`'s numbers
/// for [`n`], and returns the variant (the name of the compiled function's suffix).
pub fn load(library: &str, text: &str) -> Result<&'static str, String> {
    let skeleton = tokens::skeleton(text);
    let Some((_, variant, _)) = SKELETONS
        .iter()
        .find(|(l, _, s)| *l == library && *s == skeleton)
    else {
        return Err(format!(
            "recipe_text is not the code compiled into the harness for {library} (rebuild it: install.sh)"
        ));
    };
    *NUMBERS.lock().unwrap_or_else(|e| e.into_inner()) = tokens::numbers(text);
    Ok(variant)
}

/// deadpool: the pool the printed code builds on `config`.
pub fn deadpool(
    variant: &str,
    config: tokio_postgres::Config,
) -> Result<deadpool_postgres::Pool, String> {
    let built = match variant {
        "eviction" => deadpool_eviction(config),
        "keepalive" => deadpool_keepalive(config),
        other => return Err(format!("no compiled deadpool {other} text")),
    };
    built.map_err(|e| format!("the printed code: {e}"))
}

/// bb8: the builder the printed code leaves, after it set what it sets on `config`.
pub fn bb8(
    variant: &str,
    config: &mut tokio_postgres::Config,
) -> Result<bb8::Builder<bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>>, String> {
    match variant {
        "eviction" => Ok(bb8_eviction(config)),
        "keepalive" => Ok(bb8_keepalive(config)),
        other => Err(format!("no compiled bb8 {other} text")),
    }
}

/// sqlx: the options the printed code leaves.
pub fn sqlx(variant: &str) -> Result<sqlx::postgres::PgPoolOptions, String> {
    match variant {
        "eviction" => Ok(sqlx_eviction()),
        other => Err(format!("no compiled sqlx {other} text")),
    }
}
