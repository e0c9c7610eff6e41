//! Build provenance for `--version`, `idle_drop_build_info` and the start log line: the git
//! revision and branch, the build time and the rustc version, through vergen (git on the
//! command line). `src/build_info.rs` reads them.
//!
//! Outside a git checkout (a source tarball, a Docker build without `.git`) vergen emits its
//! placeholder, which `build_info` shows as `unknown`, unless the value is given in the
//! environment under vergen's own name (`VERGEN_GIT_SHA`, `VERGEN_GIT_BRANCH`,
//! `VERGEN_BUILD_TIMESTAMP`): the Dockerfile passes its build arguments that way. `SOURCE_DATE_EPOCH`
//! sets the build time for a reproducible build.

use vergen_gitcl::{BuildBuilder, Emitter, GitclBuilder, RustcBuilder};

/// The values a build may give instead of computing them (vergen reads them itself).
const GIVEN: [&str; 3] = [
    "VERGEN_GIT_SHA",
    "VERGEN_GIT_BRANCH",
    "VERGEN_BUILD_TIMESTAMP",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The Dockerfile sets each from a build argument that defaults to empty: empty means not
    // given (vergen would take "" as the value).
    for name in GIVEN {
        println!("cargo:rerun-if-env-changed={name}");
        if std::env::var_os(name).is_some_and(|value| value.is_empty()) {
            std::env::remove_var(name);
        }
    }
    let build = BuildBuilder::default().build_timestamp(true).build()?;
    let rustc = RustcBuilder::default().semver(true).build()?;
    let git = GitclBuilder::default().sha(false).branch(true).build()?;
    // Quiet: a tarball without git is a normal way to build, not something to warn about; the
    // binary says `unknown` instead.
    Emitter::default()
        .quiet()
        .add_instructions(&build)?
        .add_instructions(&rustc)?
        .add_instructions(&git)?
        .emit()?;
    // The platform line of --version (what Go exporters print as GOOS/GOARCH).
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=IDLE_DROP_TARGET={target}");
    for file in branch_files() {
        println!("cargo:rerun-if-changed={file}");
    }
    Ok(())
}

/// The files a commit changes: vergen watches HEAD and, in a plain clone, the branch's ref
/// file; in a worktree (`git worktree add`) that file lives in the main repository and vergen
/// missed it, so a commit left the old revision in the binary. `--git-path` finds it in both.
fn branch_files() -> Vec<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|text| text.trim().to_string())
            .filter(|text| !text.is_empty())
    };
    let mut files = Vec::new();
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        files.extend(git(&["rev-parse", "--git-path", &reference]));
    }
    files.extend(git(&["rev-parse", "--git-path", "packed-refs"]));
    // Cargo reruns a build script every time for a watched file that does not exist (a ref
    // only in packed-refs, or no packed-refs yet): the binary would be rebuilt every time.
    files.retain(|file| std::path::Path::new(file).exists());
    files
}
