// 1. Reads the resolved versions of the pool libraries from Cargo.lock, so the harness reports
//    the versions it was really built with (`env!("LOCK_VERSION_bb8")` and so on).
// 2. Compiles the Rust recipes idle_drop_exporter prints (deadpool, bb8, sqlx, diesel), as
//    printed: runs the exporter's `recipes --json` for a fixed threshold and writes each text,
//    its numbers turned into `crate::printed::n(i)`, into $OUT_DIR/printed.rs. A text that does
//    not compile as printed fails this build. The harness later runs a job's printed text
//    through the compiled code when the two are the same code (src/printed.rs).
use std::fs;
use std::path::PathBuf;
use std::process::Command;

#[path = "src/tokens.rs"]
mod tokens;

const TRACKED: &[&str] = &[
    "deadpool",
    "deadpool-postgres",
    "tokio-postgres",
    "bb8",
    "bb8-postgres",
    "sqlx",
    "sqlx-postgres",
    "diesel",
    "r2d2",
    "pq-sys",
];

fn main() {
    lock_versions();
    printed_recipes();
}

fn lock_versions() {
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

/// How each library's text is wrapped: what is in scope before it, and what it leaves.
fn wrap(library: &str, variant: &str, code: &str) -> Option<String> {
    let name = format!("{library}_{variant}");
    let allow = "#[allow(unused_imports, unused_mut, clippy::all)]";
    Some(match library {
        "deadpool" => format!(
            "{allow}\npub fn {name}(mut config: tokio_postgres::Config) -> Result<deadpool_postgres::Pool, deadpool_postgres::BuildError> {{\n{code}\nOk(pool)\n}}\n"
        ),
        "bb8" => format!(
            "{allow}\npub fn {name}(config: &mut tokio_postgres::Config) -> bb8::Builder<bb8_postgres::PostgresConnectionManager<tokio_postgres::NoTls>> {{\n{code}\nbuilder\n}}\n"
        ),
        "sqlx" => format!("{allow}\npub fn {name}() -> sqlx::postgres::PgPoolOptions {{\n{code}\noptions\n}}\n"),
        // diesel's keepalive text is a connection-string suffix, handed to libpq as printed.
        "diesel" if variant == "eviction" => format!("{allow}\npub mod {name} {{\n{code}\n}}\n"),
        _ => return None,
    })
}

fn printed_recipes() {
    let binary = std::env::var("IDLE_DROP_EXPORTER").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
            .join("../../../target/debug/idle_drop_exporter")
    });
    println!("cargo:rerun-if-env-changed=IDLE_DROP_EXPORTER");
    println!("cargo:rerun-if-changed={}", binary.display());
    let mut generated = String::new();
    let mut skeletons = Vec::new();
    // T = 10 s: the texts' shape does not depend on T (numbers are checked apart).
    for box_counts in ["unknown", "packets"] {
        let out = Command::new(&binary)
            .args(["recipes", "--lower", "10s", "--drop", "silent", "--box", box_counts, "--json"])
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (build the exporter first: cargo build at the repository root)", binary.display()));
        assert!(out.status.success(), "{} recipes exited {}: {}", binary.display(), out.status, String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("recipes --json prints JSON");
        for r in report["recipes"].as_array().expect("a list of recipes") {
            let (library, variant) = (r["library"].as_str().unwrap(), r["variant"].as_str().unwrap());
            let text = r["text"].as_str().unwrap();
            if skeletons.iter().any(|(l, v, _)| l == library && v == variant) {
                continue;
            }
            let code = tokens::rewrite(text, |i, _| format!("crate::printed::n({i})"));
            if let Some(item) = wrap(library, variant, &code) {
                generated.push_str(&item);
                skeletons.push((library.to_string(), variant.to_string(), tokens::skeleton(text)));
            }
        }
    }
    generated.push_str("pub const SKELETONS: &[(&str, &str, &str)] = &[\n");
    for (l, v, s) in &skeletons {
        generated.push_str(&format!("    ({l:?}, {v:?}, {s:?}),\n"));
    }
    generated.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("printed.rs");
    fs::write(out, generated).expect("writing printed.rs");
}
