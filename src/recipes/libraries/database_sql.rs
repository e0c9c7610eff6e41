//! Go's `database/sql` pool with the lib/pq driver (Debian's golang-github-lib-pq-dev, Go 1.19).

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{set, Shape};
use super::super::{millis, Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "Go 1.19 database/sql with lib/pq 1.10.7 (Debian 12)",
    clock: Clock::Age,
    minimum_exempt: false,
    shrink: "SetConnMaxLifetime (age) is checked when a connection is taken from the free list and by the cleaner; SetConnMaxIdleTime only by the cleaner goroutine; SetMaxIdleConns (2 by default) caps how many stay open between queries",
    check: "none: database/sql only tries a query again (twice on pooled connections, then once on a new one) when the driver returns driver.ErrBadConn",
    socket_bound: "none that ends a read: lib/pq 1.10.7 answers a context deadline with a cancel request on a new connection and leaves the read waiting; it parses no keepalive or tcp_user_timeout key (connect_timeout bounds connecting only), and Go's dialer keeps alive every 15 s",
    keepalive_recipe: false,
    can_evict: true,
    source: "Go 1.19 database/sql/sql.go (DB.conn, driverConn.expired, connectionCleanerRunLocked, maxBadConnRetries), net/dial.go (defaultTCPKeepAlive); lib/pq 1.10.7 conn.go (dial, DialOpen), conn_go18.go (watchCancel)",
};

pub(crate) fn shape(_variant: Variant, t: &Timings) -> Shape {
    let lifetime_ms = millis(t.lifetime);
    let settings = vec![set("conn_max_lifetime_ms", json!(lifetime_ms))];
    Shape {
        text: format!("db.SetConnMaxLifetime({lifetime_ms} * time.Millisecond)"),
        settings,
        why: format!(
            "database/sql checks a connection's age when it takes it from the free list and closes \
             it if older than {}, so no query is sent on one the path could have forgotten; \
             nothing else would end it: lib/pq's context deadline leaves a read on a dead flow \
             waiting",
            human(t.lifetime)
        ),
        first_request_bound: std::time::Duration::from_secs(1),
    }
}
