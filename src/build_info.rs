//! What this binary was built from, filled in by `build.rs` at build time: the version, git
//! revision and branch, build time, rustc version and platform. `--version` prints it the way
//! Prometheus' own exporters do, `idle_drop_build_info` carries it as labels, and the start log
//! line names it.
//!
//! A value the build could not know (no git in a source tarball, a Docker build without the
//! build arguments) reads `unknown`, never vergen's placeholder or an empty string.

/// The value shown for anything the build did not know.
pub const UNKNOWN: &str = "unknown";

/// What vergen emits for a value it could not compute.
const VERGEN_PLACEHOLDER: &str = "VERGEN_IDEMPOTENT_OUTPUT";

/// The provenance of this binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: &'static str,
    /// The full git commit hash the build was made from.
    pub revision: &'static str,
    pub branch: &'static str,
    /// UTC, to the second (RFC 3339).
    pub build_date: String,
    /// The compiler's version, `1.88.0`.
    pub rustc_version: &'static str,
    /// The target triple, `x86_64-unknown-linux-gnu`.
    pub platform: &'static str,
}

/// This binary's provenance.
pub fn get() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        revision: known(option_env!("VERGEN_GIT_SHA")),
        branch: known(option_env!("VERGEN_GIT_BRANCH")),
        build_date: to_the_second(known(option_env!("VERGEN_BUILD_TIMESTAMP"))),
        rustc_version: known(option_env!("VERGEN_RUSTC_SEMVER")),
        platform: known(option_env!("IDLE_DROP_TARGET")),
    }
}

/// A value from the build, or [`UNKNOWN`] when it was not set, empty or vergen's placeholder.
fn known(value: Option<&'static str>) -> &'static str {
    match value.map(str::trim) {
        None | Some("") | Some(VERGEN_PLACEHOLDER) => UNKNOWN,
        Some(value) => value,
    }
}

/// `2026-12-04T19:32:25.065893658Z` as `2026-12-04T19:32:25Z` (vergen keeps the nanoseconds).
fn to_the_second(timestamp: &str) -> String {
    match timestamp.split_once('.') {
        Some((seconds, fraction))
            if fraction.ends_with('Z')
                && fraction[..fraction.len() - 1]
                    .bytes()
                    .all(|b| b.is_ascii_digit()) =>
        {
            format!("{seconds}Z")
        }
        _ => timestamp.to_string(),
    }
}

impl BuildInfo {
    /// `--version`, in the layout of Prometheus' exporters (`prometheus/common/version`), Go's
    /// version line replaced by rustc's.
    pub fn version_text(&self) -> String {
        format!(
            "idle_drop_exporter, version {} (branch: {}, revision: {})\n  build date:       {}\n  rustc version:    {}\n  platform:         {}\n",
            self.version,
            self.branch,
            self.revision,
            self.build_date,
            self.rustc_version,
            self.platform
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a tarball vergen cannot run git: it emits its placeholder, or (when the variable is
    /// given empty, as a Docker build without the argument does) an empty value.
    #[test]
    fn what_the_build_did_not_know_reads_unknown() {
        assert_eq!(known(None), UNKNOWN);
        assert_eq!(known(Some("")), UNKNOWN);
        assert_eq!(known(Some(" ")), UNKNOWN);
        assert_eq!(known(Some("VERGEN_IDEMPOTENT_OUTPUT")), UNKNOWN);
        assert_eq!(known(Some("5823df5")), "5823df5");
    }

    #[test]
    fn the_build_date_is_kept_to_the_second() {
        assert_eq!(
            to_the_second("2026-12-04T19:32:25.065893658Z"),
            "2026-12-04T19:32:25Z"
        );
        assert_eq!(
            to_the_second("2026-12-04T19:32:25Z"),
            "2026-12-04T19:32:25Z"
        );
        assert_eq!(to_the_second(UNKNOWN), UNKNOWN);
    }

    #[test]
    fn version_text_has_the_prometheus_layout() {
        let info = BuildInfo {
            version: "0.1.0",
            revision: "abc123",
            branch: "main",
            build_date: "2026-12-04T19:32:25Z".to_string(),
            rustc_version: "1.88.0",
            platform: "x86_64-unknown-linux-gnu",
        };
        assert_eq!(
            info.version_text(),
            "idle_drop_exporter, version 0.1.0 (branch: main, revision: abc123)\n  build date:       2026-12-04T19:32:25Z\n  rustc version:    1.88.0\n  platform:         x86_64-unknown-linux-gnu\n"
        );
    }
}
