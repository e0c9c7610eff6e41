//! HikariCP in Spring Boot's spelling: the same settings as `hikaricp.rs`, as
//! `application.properties` lines. Spring Boot binds `spring.datasource.hikari.<kebab-case>` to
//! the HikariDataSource setter of the camelCase name (relaxed binding), and
//! `spring.datasource.hikari.data-source-properties.<name>` to a pgJDBC property, the name as
//! written.

use super::super::pools::PoolModel;
use super::super::spelling::Shape;
use super::super::{Timings, Variant};

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "HikariCP 2.7.9 (Debian) with pgJDBC 42.5, set through Spring Boot's spring.datasource.hikari.* properties",
    source: "HikariCP 2.7.9 as in hikaricp.rs; Spring Boot's relaxed binding (spring.datasource.hikari.* binds HikariDataSource's setters, kebab-case to camelCase; data-source-properties is a map passed to the driver)",
    ..super::hikaricp::MODEL
};

const PREFIX: &str = "spring.datasource.hikari.";

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    let plain = super::hikaricp::shape(variant, t);
    let text = plain
        .text
        .lines()
        .map(spring_line)
        .collect::<Vec<_>>()
        .join("\n");
    Shape { text, ..plain }
}

/// One properties line in Spring's spelling; comments stay as they are.
fn spring_line(line: &str) -> String {
    let Some((key, value)) = line.split_once('=').filter(|_| !line.starts_with('#')) else {
        return line.replace("validationTimeout", "validation-timeout");
    };
    match key.strip_prefix("dataSource.") {
        Some(driver) => format!("{PREFIX}data-source-properties.{driver}={value}"),
        None => format!("{PREFIX}{}={value}", kebab(key)),
    }
}

/// `maxLifetime` → `max-lifetime`: the canonical form Spring Boot documents.
pub(crate) fn kebab(camel: &str) -> String {
    let mut out = String::new();
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
