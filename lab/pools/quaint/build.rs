// Reads the resolved versions from this configuration's Cargo.lock, so the harness reports the
// mobc it was really built with (`env!("LOCK_VERSION_mobc")`, and quaint's).
use std::fs;

const TRACKED: &[&str] = &["mobc", "quaint", "tokio-postgres"];

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
