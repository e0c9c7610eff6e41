//! tokio-postgres with bb8: idle_timeout applies only when the reaper runs. The text is Rust that
//! compiles as printed: statements run where the user's `tokio_postgres::Config` is in `config`;
//! they leave a `builder` to size and build with the user's `PostgresConnectionManager`.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{keepalive_keys, seconds_value, set, ConnString, Shape};
use super::super::{secs_down, secs_up, Timings, Variant};
use super::rust_code::{duration_f64, tokio_postgres_keepalives, tokio_postgres_user_timeout};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "bb8 0.9.1 (bb8-postgres 0.9.0, tokio-postgres 0.7.18): read there, and the code compiled against them",
    clock: Clock::Idle,
    minimum_exempt: false,
    shrink: "idle_timeout and max_lifetime apply only when the reaper runs (reaper_rate, 30 s by default), min_idle included; new connections are opened up to min_idle after",
    check: "test_on_check_out (on by default) runs simple_query(\"\"), bounded only by connection_timeout for the whole get()",
    socket_bound: "tcp_user_timeout (tokio_postgres::Config::tcp_user_timeout; whole seconds in a connection string)",
    keepalive_recipe: true,
    can_evict: true,
    source: "bb8 0.9 api.rs (Builder), inner.rs (PoolInner::get, put_back), internals.rs (PoolInternals::reap); bb8-postgres 0.9 (is_valid); tokio-postgres 0.7 config.rs",
};

const FINISH: &str =
    "// then: builder.max_size(..).build(bb8_postgres::PostgresConnectionManager::new(config, tokio_postgres::NoTls)).await?";

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    if variant == Variant::Keepalive {
        return keepalive(t);
    }
    let dead_s = secs_up(t.dead_bound);
    let read_s = secs_up(t.read_timeout);
    let half = duration_f64(t.lifetime / 2);
    let settings = vec![
        set("idle_timeout", seconds_value(t.lifetime / 2)),
        set("reaper_rate", seconds_value(t.lifetime / 2)),
        set("test_on_check_out", json!(true)),
        set("connection_timeout", json!(read_s)),
        set("tcp_user_timeout", json!(dead_s)),
    ];
    Shape {
        text: format!(
            "use std::time::Duration;\n{}\nlet builder = bb8::Pool::builder()\n    \
             .idle_timeout(Some({half}))\n    .reaper_rate({half})\n    .test_on_check_out(true)\n    \
             .connection_timeout(Duration::from_secs({read_s}));\n{FINISH}",
            tokio_postgres_user_timeout(t)
        ),
        settings,
        why: format!(
            "bb8 applies idle_timeout only when its reaper runs (every 30 s unless reaper_rate says \
             otherwise), so both at half the safe lifetime ({}) close every idle connection, min_idle \
             included, before the path forgets it",
            human(t.lifetime / 2)
        ),
        first_request_bound: std::time::Duration::from_secs(1),
    }
}

fn keepalive(t: &Timings) -> Shape {
    let mut settings = keepalive_keys(t, ConnString::TokioPostgres);
    settings.push(set("test_on_check_out", json!(true)));
    Shape {
        text: format!(
            "use std::time::Duration;\n{}\nlet builder = bb8::Pool::builder().test_on_check_out(true);\n{FINISH}",
            tokio_postgres_keepalives(t)
        ),
        settings,
        why: format!(
            "a keepalive every {} s resets the box's idle timer, so the flow never looks idle and the \
             connections stay warm; bb8's test_on_check_out (an empty query before each get) fails on \
             a flow the box forgot anyway within tcp_user_timeout ({} s), and bb8 then opens another",
            secs_down(t.keepalive_idle),
            secs_up(t.dead_bound)
        ),
        first_request_bound: std::time::Duration::from_secs(1),
    }
}
