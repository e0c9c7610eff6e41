//! Plain pgJDBC (no pool): the application holds its connections, so what it can do is bound a
//! read and check a connection itself before it uses one that has been idle.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{set, Shape};
use super::super::{secs_up, Timings, Variant};

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "pgJDBC 42.5 (Debian 12; read in 42.5.5)",
    clock: Clock::None,
    minimum_exempt: true,
    shrink: "no pool: a connection lives as long as the application holds it",
    check: "none of its own; Connection.isValid(seconds) runs an empty statement with the network timeout lowered to that many seconds and answers false on any error",
    socket_bound: "socketTimeout (seconds; also ends slow queries, and closes the connection); tcpKeepAlive=true only turns SO_KEEPALIVE on with the system's timers (2 h on Linux): pgJDBC 42.5 has no keepalive idle or interval setting",
    keepalive_recipe: false,
    can_evict: true,
    source: "pgJDBC 42.5.5 (Debian libpostgresql-jdbc-java, javap): PgConnection.isValid, PGProperty (SOCKET_TIMEOUT, TCP_KEEP_ALIVE)",
};

/// How long a connection may sit unused before the application checks it: HikariCP's default
/// aliveBypassWindowMs, the check every Java pool makes.
const CHECK_AFTER_MS: u64 = 500;
/// isValid takes whole seconds; a live connection answers an empty statement in milliseconds.
const VALID_SECONDS: u64 = 1;

pub(crate) fn shape(_variant: Variant, t: &Timings) -> Shape {
    let read_s = secs_up(t.read_timeout);
    let valid_s = VALID_SECONDS;
    let settings = vec![
        set("socketTimeout", json!(read_s)),
        set("isValid_after_idle_ms", json!(CHECK_AFTER_MS)),
        set("isValid_seconds", json!(valid_s)),
    ];
    Shape {
        text: format!(
            "jdbc:postgresql://HOST/DB?socketTimeout={read_s}\n\
             // and before using a connection idle over {CHECK_AFTER_MS} ms (isValid_after_idle_ms):\n\
             if (!conn.isValid({valid_s})) {{ conn.close(); conn = DriverManager.getConnection(url, props); }}"
        ),
        settings,
        why: format!(
            "pgJDBC cannot retire or keep alive a connection by itself, so the application asks \
             isValid({valid_s}) before using one that sat idle: a connection the path forgot answers \
             false within {valid_s} s and is replaced; socketTimeout turns any other dead read into \
             an error after {read_s} s"
        ),
        first_request_bound: std::time::Duration::from_secs(valid_s + 1),
    }
}
