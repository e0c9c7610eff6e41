// Reads the resolved versions of the pool libraries from Cargo.lock, so the harness reports the
// versions it was really built with (`env!("LOCK_VERSION_bb8")` and so on).
use std::fs;

const TRACKED: &[&str] = &[
    "deadpool",
    "deadpool-postgres",
    "tokio-postgres",
    "bb8",
    "bb8-postgres",
    "sqlx",
    "sqlx-postgres",
];

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock =
        fs::read_to_string("Cargo.lock").expect("Cargo.lock is committed next to Cargo.toml");
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            if TRACKED.contains(&n.as_str()) {
                println!(
                    "cargo:rustc-env=LOCK_VERSION_{}={}",
                    n.replace('-', "_"),
                    v.trim_matches('"')
                );
            }
        }
    }
}
