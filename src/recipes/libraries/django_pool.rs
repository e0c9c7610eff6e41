//! Django's psycopg pool option (`OPTIONS: {"pool": ...}`, new in Django 5.1): a psycopg_pool
//! ConnectionPool per database alias, shared by every thread. A request takes a connection at its
//! first query and gives it back when it ends (CONN_MAX_AGE must stay 0). What the pool does
//! with idle connections is psycopg_pool's (`psycopg_pool.rs`): nothing looks at idle time before
//! lending one, so the application pings the idle ones itself.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{seconds_value, set, Shape};
use super::super::{millis, Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "Django 5.2 (the pool option is new in 5.1; read in 5.2.19) with psycopg_pool 3.3",
    clock: Clock::Age,
    minimum_exempt: true,
    shrink: "psycopg_pool's: max_idle closes at most one connection above min_size per max_idle period; max_lifetime is checked only when a connection is returned",
    check: "CONN_HEALTH_CHECKS sets check=ConnectionPool.check_connection (no timeout; getconn() backs off 1, 2, 4 s after failed checks); Django runs no check of its own on a pooled connection",
    socket_bound: "OPTIONS other than pool: libpq keywords (tcp_user_timeout) for every pooled connection",
    keepalive_recipe: false,
    can_evict: true,
    source: "Django 5.2 db/backends/postgresql/base.py (DatabaseWrapper.pool, get_new_connection, _close, close_if_health_check_failed); psycopg_pool 3.3 pool.py (check, _shrink_pool, _return_connection)",
};

pub(crate) fn shape(_variant: Variant, t: &Timings) -> Shape {
    let interval = t.lifetime / 2;
    let every = seconds_value(interval);
    let user_timeout = millis(t.dead_bound);
    let settings = vec![
        set("OPTIONS", json!({ "tcp_user_timeout": user_timeout })),
        set("check_interval", every.clone()),
    ];
    Shape {
        text: format!(
            "DATABASES[\"default\"].setdefault(\"OPTIONS\", {{}})[\"tcp_user_timeout\"] = {user_timeout}\n\n\
             # and once at startup (wsgi.py, or an AppConfig.ready()):\n\
             import logging, threading, time\n\
             from django.db import connections\n\n\
             def check_idle_connections(alias, every):\n\
             \x20   # pool.check() pings each idle connection and replaces broken ones\n\
             \x20   while True:\n\
             \x20       time.sleep(every)\n\
             \x20       try:\n\
             \x20           connections[alias].pool.check()\n\
             \x20       except Exception:\n\
             \x20           logging.exception(\"pool.check() failed; trying again in %s s\", every)\n\n\
             threading.Thread(target=check_idle_connections, args=(\"default\", {every}), daemon=True).start()"
        ),
        settings,
        why: format!(
            "Django hands requests the pool's connections as psycopg_pool keeps them, and psycopg_pool \
             never looks at idle time before lending one, so the application pings the idle ones \
             every {} (check_interval), which also keeps the path from ever seeing them idle",
            human(interval)
        ),
        first_request_bound: std::time::Duration::from_secs(1),
    }
}
