//! Rails' ActiveRecord pool (PostgreSQL adapter over ruby-pg, libpq), spelt as database.yml
//! lines to add under the environment's entry.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{keepalive_keys, seconds_value, set, ConnString, Shape};
use super::super::Setting;
use super::super::{millis, secs_down, secs_up, Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "ActiveRecord 6.1.7 (Debian 12's 6.1.7.10, with ruby-pg 1.4.5 on libpq 15)",
    clock: Clock::Idle,
    minimum_exempt: false,
    shrink: "the reaper thread, every reaping_frequency (60 s by default), disconnects every connection idle (since check-in) at least idle_timeout (300 s by default); the pool keeps no minimum",
    check: "every checkout runs verify!: SELECT 1 (PostgreSQLAdapter#active?) with no timeout of its own, and reconnects (PG::Connection#reset) when it fails; libpq's tcp_user_timeout bounds it behind conntrack, nothing behind a proxy",
    socket_bound: "libpq keys in database.yml (keepalives, keepalives_idle, keepalives_interval, keepalives_count, tcp_user_timeout in milliseconds): the adapter passes on every key libpq knows; no read timeout",
    keepalive_recipe: true,
    can_evict: true,
    source: "activerecord 6.1.7 connection_adapters/abstract/connection_pool.rb (Reaper, flush, checkout_and_verify), abstract_adapter.rb (verify!, seconds_idle, expire), postgresql_adapter.rb (postgresql_connection: conndefaults_hash keys; active?, reconnect!), database_configurations/hash_config.rb (idle_timeout, reaping_frequency)",
};

pub(crate) fn shape(variant: Variant, t: &Timings) -> Shape {
    let one_second = std::time::Duration::from_secs(1);
    match variant {
        Variant::Eviction => {
            let half = seconds_value(t.lifetime / 2);
            let settings = vec![
                set("idle_timeout", half.clone()),
                set("reaping_frequency", half),
                set("tcp_user_timeout", json!(millis(t.dead_bound))),
            ];
            Shape {
                text: yaml_lines(&settings),
                settings,
                why: format!(
                    "ActiveRecord 6.1 disconnects idle connections only when its reaper runs, every \
                     reaping_frequency, so idle_timeout and reaping_frequency both at half the safe \
                     lifetime ({}) close each one before the path forgets it; the SELECT 1 on every \
                     checkout reconnects one that died anyway, within tcp_user_timeout ({} s) behind conntrack",
                    human(t.lifetime / 2),
                    secs_up(t.dead_bound)
                ),
                first_request_bound: one_second,
            }
        }
        Variant::Keepalive => {
            let settings = keepalive_keys(t, ConnString::Libpq);
            Shape {
                text: yaml_lines(&settings),
                settings,
                why: format!(
                    "a keepalive every {} s resets the box's idle timer, so the flow never looks idle and \
                     the connections stay warm; the SELECT 1 ActiveRecord 6.1 runs on every checkout fails \
                     on a flow the box forgot anyway within tcp_user_timeout ({} s), and it reconnects",
                    secs_down(t.keepalive_idle),
                    secs_up(t.dead_bound)
                ),
                first_request_bound: one_second,
            }
        }
    }
}

/// `key: value` lines for database.yml, indented as under an environment's entry.
fn yaml_lines(settings: &[Setting]) -> String {
    settings
        .iter()
        .map(|s| format!("  {}: {}", s.key, s.value))
        .collect::<Vec<_>>()
        .join("\n")
}
