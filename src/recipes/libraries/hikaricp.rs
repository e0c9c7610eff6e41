//! HikariCP with pgJDBC, in properties spelling.

use serde_json::json;

use super::super::pools::{Clock, PoolModel};
use super::super::spelling::{set, Shape};
use super::super::{millis, secs_up, Timings, Variant};
use crate::format::human;

pub(crate) const MODEL: PoolModel = PoolModel {
    versions: "HikariCP 2.7.9 (Debian) with pgJDBC 42.5",
    clock: Clock::Age,
    minimum_exempt: true,
    shrink: "maxLifetime (age, 30 s at least) retires each connection; idleTimeout (10 s at least) only above minimumIdle, at the housekeeper's run every 30 s",
    check: "isValid on borrow after 500 ms idle, bounded by validationTimeout (250 ms at least); a failed check tries the next connection, oldest first",
    socket_bound: "pgJDBC socketTimeout (seconds; also ends slow queries)",
    keepalive_recipe: false,
    can_evict: true,
    source: "HikariCP 2.7.9 (Debian libhikaricp-java, decompiled): HikariPool.getConnection, HouseKeeper.run, PoolBase.isConnectionAlive, HikariConfig.validateNumerics; pgJDBC 42.5 PGProperty",
};

/// HikariCP's floor for maxLifetime: below it the setting is reset to 30 min.
const HIKARI_MIN_LIFETIME_MS: u64 = 30_000;
/// HikariCP's default maximumPoolSize: what the validation timeout is sized for.
const POOL: u64 = 10;

/// HikariCP 2.7.9 validates on borrow (after 0.5 s idle) with `validationTimeout`, and cannot
/// retire connections younger than 30 s (`maxLifetime` below that is reset to 30 min).
pub(crate) fn shape(_variant: Variant, t: &Timings) -> Shape {
    let lifetime_ms = millis(t.lifetime);
    let read_s = secs_up(t.read_timeout);
    let one_second = std::time::Duration::from_secs(1);
    if lifetime_ms >= HIKARI_MIN_LIFETIME_MS {
        let settings = vec![
            set("maxLifetime", json!(lifetime_ms)),
            set("validationTimeout", json!(1000)),
            set("dataSource.socketTimeout", json!(read_s)),
        ];
        return Shape {
            text: format!(
                "maxLifetime={lifetime_ms}\nvalidationTimeout=1000\ndataSource.socketTimeout={read_s}"
            ),
            settings,
            why: format!(
                "maxLifetime retires every connection by age before the path forgets it ({}), the \
                 check on borrow catches anything else within 1 s, and socketTimeout ends any other dead read",
                human(t.lifetime)
            ),
            first_request_bound: one_second,
        };
    }
    let validation_ms = (lifetime_ms / POOL).clamp(250, 1000);
    let settings = vec![
        set("validationTimeout", json!(validation_ms)),
        set("dataSource.socketTimeout", json!(read_s)),
    ];
    Shape {
        text: format!(
            "validationTimeout={validation_ms}\ndataSource.socketTimeout={read_s}\n\
             # sized for maximumPoolSize <= {POOL}: a larger pool needs validationTimeout <= {lifetime_ms} / maximumPoolSize (250 at least)"
        ),
        settings,
        why: format!(
            "HikariCP 2.7.9 cannot retire connections younger than 30 s, but it checks every connection \
             idle over 0.5 s before lending it: a check that gets no answer in {validation_ms} ms replaces the \
             connection, so a whole pool of dead ones is got through within {}; the first request after a long \
             idle may wait that long",
            human(t.lifetime)
        ),
        first_request_bound: t.lifetime + one_second,
    }
}
