//! The DATABASE_URL the pool is built from: the job's server, the application's sizing
//! (`connection_limit`), and the recipe applied exactly as `idle_drop_exporter` printed it.
//!
//! The printed recipe is URL parameters. The URL the harness starts from already has one
//! (`?sslmode=disable`, as most production URLs have something), so the printed line that
//! starts with `&` is appended as it stands: a line spelt for a bare URL (`?...`) would turn
//! into a value of the previous parameter and fail here. The `?` line is checked too: on a
//! URL without parameters it must give the same parameters.

use serde_json::{Map, Value};
use url::Url;

use crate::job::Job;

/// The URL parameters quaint reads for its pool and sockets (quaint `PostgresUrl::
/// parse_query_params`); a recipe key outside these fails the job.
const KNOWN: &[&str] = &[
    "max_idle_connection_lifetime",
    "max_connection_lifetime",
    "socket_timeout",
    "pool_timeout",
    "connect_timeout",
    "connection_limit",
];

/// The job's server, without parameters.
fn server(job: &Job) -> Result<Url, String> {
    let d = &job.dsn;
    let mut url = Url::parse(&format!("postgresql://{}:{}/", d.host, d.port))
        .map_err(|e| format!("dsn: {e}"))?;
    url.set_username(&d.user).map_err(|_| "dsn: user")?;
    url.set_password(Some(&d.password))
        .map_err(|_| "dsn: password")?;
    url.set_path(&d.dbname);
    Ok(url)
}

/// The URL the pool runs with.
pub fn database_url(job: &Job) -> Result<String, String> {
    let bare = server(job)?;
    let mut base = format!("{bare}?sslmode=disable");
    if let Some(pool) = job.pool {
        base.push_str(&format!("&connection_limit={}", pool.max));
    }
    let Some(settings) = &job.recipe else {
        return Ok(base);
    };
    let url = match &job.recipe_text {
        Some(text) => {
            let with = format!("{base}{}", printed_line(text, '&')?);
            let alone = format!("{bare}{}", printed_line(text, '?')?);
            same_recipe(&with, &alone)?;
            with
        }
        None => format!("{base}{}", from_settings(settings)?),
    };
    check_settings(settings, &url)?;
    Ok(url)
}

/// The one printed line that starts with `lead`, up to the first blank (a note may follow).
fn printed_line(text: &str, lead: char) -> Result<String, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(lead))
        .collect();
    match lines.as_slice() {
        [one] => Ok(one.split_whitespace().next().unwrap_or("").to_string()),
        _ => Err(format!(
            "recipe_text: expected exactly one line starting with {lead:?}, found {}: {text:?}",
            lines.len()
        )),
    }
}

fn from_settings(settings: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::new();
    for (key, value) in settings {
        out.push_str(&format!("&{key}={}", plain(value)));
    }
    Ok(out)
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The parameters as quaint reads them: the last of a repeated key wins.
fn parameters(url: &str) -> Result<Vec<(String, String)>, String> {
    let url = Url::parse(url).map_err(|e| format!("the URL does not parse: {e}"))?;
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url.query_pairs() {
        out.retain(|(key, _)| key != &k);
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// The `?` spelling on a bare URL gives the recipe's parameters, as the `&` one does.
fn same_recipe(with: &str, alone: &str) -> Result<(), String> {
    let with = parameters(with)?;
    for (k, v) in parameters(alone)? {
        if !with.contains(&(k.clone(), v.clone())) {
            return Err(format!(
                "recipe_text: the '?' line sets {k}={v}, the '&' line does not"
            ));
        }
    }
    Ok(())
}

/// Every recipe setting is a key quaint reads, and the URL really carries its value.
fn check_settings(settings: &Map<String, Value>, url: &str) -> Result<(), String> {
    let params = parameters(url)?;
    for (key, value) in settings {
        if !KNOWN.contains(&key.as_str()) {
            return Err(format!(
                "recipe key {key:?}: not a quaint URL parameter ({KNOWN:?})"
            ));
        }
        let want = plain(value);
        match params.iter().find(|(k, _)| k == key) {
            Some((_, got)) if *got == want => {}
            Some((_, got)) => {
                return Err(format!(
                    "recipe {key}: the URL says {got}, the recipe {want}"
                ))
            }
            None => return Err(format!("recipe {key}: not in the URL as printed")),
        }
    }
    Ok(())
}

/// The URL's parameters, for the result (the password is in the authority, not here).
pub fn parameters_text(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|u| u.query().map(str::to_string))
        .unwrap_or_default()
}
