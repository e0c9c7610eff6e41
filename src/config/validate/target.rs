//! One target's settings, checked section by section: its name, where it connects and how
//! (DSN, password, TLS), how it probes (timeouts, query, connection budget), what it measures
//! (idle range, precision), what it recommends and guards, its optional probes and policy, and
//! its labels (checked in `labels.rs`).
//! Each section is a function; [`Validator::target`] puts them together.

use std::time::Duration;

use super::super::locate::Step::{self, Index, Key};
use super::super::{raw, KeepaliveProbe, TargetConfig, MAX_CONNECTIONS_HARD_CAP};
use super::files::DsnSource;
use super::{Checked, Validator};
use crate::discovery::PolicyKind;
use crate::postgres::dsn::{self, ParsedDsn, SslMode};
use crate::postgres::tls::CaBundle;

/// The path of a field of target `i`.
fn at(i: usize, field: &'static str) -> [Step<'static>; 3] {
    [Key("targets"), Index(i), Key(field)]
}

/// Where a target connects: the driver settings with the password in, and what the DSN said.
struct Connection {
    source: DsnSource,
    parsed: ParsedDsn,
    driver: tokio_postgres::Config,
    display_dsn: String,
}

impl Validator<'_> {
    pub(super) fn target(
        &self,
        i: usize,
        raw: raw::RawTarget,
        warnings: &mut Vec<String>,
    ) -> Checked<TargetConfig> {
        let name = self.target_name(i, &raw)?;
        let labels = self.labels(i, raw.labels.as_ref())?;
        let conn = self.connection(i, &raw, &name, warnings)?;
        let (sslmode, ca_pem) = self.tls(i, &raw, &conn.parsed)?;
        let (connect_timeout, query_timeout, tcp_user_timeout) = self.timeouts(i, &raw)?;
        let probe_query = raw.probe_query.clone().unwrap_or_else(|| "SELECT 1".into());
        if probe_query.trim().is_empty() {
            return Err(self.error(&at(i, "probe_query"), "must not be empty"));
        }
        let max_connections = self.max_connections(i, &raw)?;
        let (idle_min, idle_max) = self.idle_range(i, &raw)?;
        let (precision, margin) = self.fractions(i, &raw)?;
        let watch_ladder = self.ladder(i, &raw.watch_ladder)?;
        let configured = match &raw.app_max_idle_lifetime {
            Some(_) => Some(self.duration(
                &at(i, "app_max_idle_lifetime"),
                &raw.app_max_idle_lifetime,
                "",
            )?),
            None => None,
        };
        let (app_max_idle_lifetime, app_lifetime_source) = self.app_lifetime(
            &name,
            &at(i, conn.source.field()),
            configured,
            &conn.parsed.app,
            warnings,
        )?;
        let recommended_socket_timeout = self.duration(
            &at(i, "recommended_socket_timeout"),
            &raw.recommended_socket_timeout,
            "10s",
        )?;
        Ok(TargetConfig {
            name,
            driver: conn.driver,
            display_dsn: conn.display_dsn,
            sslmode,
            ca_pem,
            connect_timeout,
            probe_query,
            query_timeout,
            tcp_user_timeout,
            max_connections,
            idle_min,
            idle_max,
            precision,
            watch_ladder,
            app_max_idle_lifetime,
            app_lifetime_source,
            app_params: conn.parsed.app,
            recommendation_margin: margin,
            recommended_socket_timeout,
            keepalive_probe: self.keepalive_probe(i, &raw)?,
            reap_ghosts: raw.reap_ghosts.unwrap_or(true),
            allow_cleartext_password: raw.allow_cleartext_password.unwrap_or(false),
            discovery_policy: self.discovery_policy(i, &raw)?,
            labels,
        })
    }

    fn target_name(&self, i: usize, raw: &raw::RawTarget) -> Checked<String> {
        let name = raw
            .name
            .clone()
            .ok_or_else(|| self.error(&[Key("targets"), Index(i)], "`name` is required"))?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(self.error(
                &at(i, "name"),
                format!("`{name}`: use 1-64 characters from A-Z a-z 0-9 - _ ."),
            ));
        }
        Ok(name)
    }

    /// The DSN and the password, put together into the driver's settings.
    fn connection(
        &self,
        i: usize,
        raw: &raw::RawTarget,
        name: &str,
        warnings: &mut Vec<String>,
    ) -> Checked<Connection> {
        let (source, parsed) = self.dsn(i, raw, warnings)?;
        let mut driver = parsed.config.clone();
        let display_dsn = dsn::redacted(&driver);

        let password = self.password(i, raw, driver.get_password().is_some(), warnings)?;
        // The application's own URL holds the application's secret by design; a `dsn` written
        // into this file is better off without it.
        if driver.get_password().is_some() && source == DsnSource::Dsn {
            warnings.push(format!(
                "target {name}: the DSN carries a password; prefer password_file or password_env"
            ));
        }
        if let Some(password) = password {
            driver.password(password.expose());
        }
        Ok(Connection {
            source,
            parsed,
            driver,
            display_dsn,
        })
    }

    /// `sslmode` (the field, else the DSN's, else `prefer`) and the CA bundle it needs.
    fn tls(
        &self,
        i: usize,
        raw: &raw::RawTarget,
        parsed: &ParsedDsn,
    ) -> Checked<(SslMode, Option<CaBundle>)> {
        let sslmode = match (&raw.sslmode, parsed.sslmode) {
            (Some(text), _) => text
                .parse::<SslMode>()
                .map_err(|e| self.error(&at(i, "sslmode"), e))?,
            (None, Some(from_dsn)) => from_dsn,
            (None, None) => SslMode::Prefer,
        };
        let ca_path = raw.ca_file.clone().or(parsed.sslrootcert.clone());
        let ca_pem = match ca_path {
            Some(file) => Some(self.ca_bundle(&at(i, "ca_file"), &file)?),
            None => None,
        };
        if matches!(sslmode, SslMode::VerifyCa | SslMode::VerifyFull) && ca_pem.is_none() {
            return Err(self.error(
                &at(i, "ca_file"),
                format!("sslmode {sslmode} needs ca_file (the CA bundle that signed the server's certificate)"),
            ));
        }
        Ok((sslmode, ca_pem))
    }

    /// `connect_timeout`, `query_timeout` and `tcp_user_timeout` (the query timeout unless set).
    fn timeouts(&self, i: usize, raw: &raw::RawTarget) -> Checked<(Duration, Duration, Duration)> {
        let connect_timeout =
            self.duration(&at(i, "connect_timeout"), &raw.connect_timeout, "5s")?;
        let query_timeout = self.duration(&at(i, "query_timeout"), &raw.query_timeout, "10s")?;
        let tcp_user_timeout = match &raw.tcp_user_timeout {
            Some(_) => self.duration(&at(i, "tcp_user_timeout"), &raw.tcp_user_timeout, "")?,
            None => query_timeout,
        };
        Ok((connect_timeout, query_timeout, tcp_user_timeout))
    }

    fn max_connections(&self, i: usize, raw: &raw::RawTarget) -> Checked<usize> {
        let max_connections = raw.max_connections.unwrap_or(8);
        if max_connections < 2 || max_connections as usize > MAX_CONNECTIONS_HARD_CAP {
            return Err(self.error(
                &at(i, "max_connections"),
                format!(
                    "{max_connections} is outside 2..={MAX_CONNECTIONS_HARD_CAP} (one session is the control connection, the rest probe; the cap protects the server)"
                ),
            ));
        }
        Ok(max_connections as usize)
    }

    /// `idle_range`: `min` below `max`.
    fn idle_range(&self, i: usize, raw: &raw::RawTarget) -> Checked<(Duration, Duration)> {
        let range_at = |f: &'static str| [Key("targets"), Index(i), Key("idle_range"), Key(f)];
        let (raw_min, raw_max) = match &raw.idle_range {
            Some(r) => (r.min.clone(), r.max.clone()),
            None => (None, None),
        };
        let idle_min = self.duration(&range_at("min"), &raw_min, "1s")?;
        let idle_max = self.duration(&range_at("max"), &raw_max, "1h")?;
        if idle_min >= idle_max {
            return Err(self.error(
                &range_at("min"),
                format!(
                    "min {} is not below max {}: the range is inverted",
                    humantime::format_duration(idle_min),
                    humantime::format_duration(idle_max)
                ),
            ));
        }
        Ok((idle_min, idle_max))
    }

    /// `precision` and `recommendation_margin`.
    fn fractions(&self, i: usize, raw: &raw::RawTarget) -> Checked<(f64, f64)> {
        let precision = self.fraction(&at(i, "precision"), &raw.precision, 0.05)?;
        if !(precision > 0.0 && precision <= 0.5) {
            return Err(self.error(&at(i, "precision"), "must be above 0% and at most 50%"));
        }
        let margin = self.fraction(
            &at(i, "recommendation_margin"),
            &raw.recommendation_margin,
            0.2,
        )?;
        if !(0.0..=0.9).contains(&margin) {
            return Err(self.error(
                &at(i, "recommendation_margin"),
                "must be between 0% and 90%",
            ));
        }
        Ok((precision, margin))
    }

    fn keepalive_probe(&self, i: usize, raw: &raw::RawTarget) -> Checked<Option<KeepaliveProbe>> {
        Ok(match &raw.keepalive_probe {
            Some(k) if k.enabled.unwrap_or(true) => Some(KeepaliveProbe {
                interval: self.duration(
                    &[
                        Key("targets"),
                        Index(i),
                        Key("keepalive_probe"),
                        Key("interval"),
                    ],
                    &k.interval,
                    "30s",
                )?,
            }),
            _ => None,
        })
    }

    fn discovery_policy(&self, i: usize, raw: &raw::RawTarget) -> Checked<PolicyKind> {
        match raw.discovery_policy.as_deref().map(str::trim) {
            None | Some("adaptive") => Ok(PolicyKind::Adaptive),
            Some("bisection") => Ok(PolicyKind::Bisection),
            Some("fixed_ladder") => Ok(PolicyKind::FixedLadder),
            Some(other) => Err(self.error(
                &at(i, "discovery_policy"),
                format!(
                    "`{other}` is not a discovery policy (adaptive, bisection or fixed_ladder; the last two are baselines for benchmarking)"
                ),
            )),
        }
    }
}
