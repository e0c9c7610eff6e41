//! The control connection's old session never leaks (issue 9, defect 6). In reset mode the
//! middlebox forgets an idle flow and answers the client's next packet with a reset, while the
//! server keeps the session. Lowering the middlebox's timeout below the control connection's
//! ping interval kills the control connection that way: its old session must be terminated
//! soon after the reconnect (the ghost checks it carried count as its use, so the termination
//! guard sees it unused since), the server must never list more sessions than the budget, and
//! none may remain after shutdown.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::time::{Duration, Instant};

use common::*;

const BUDGET: usize = 6;

/// The exporter's oldest session on the server: the control connection (it connects first; no
/// probe opens before it is up).
fn oldest_exporter_pid(lab: &Lab) -> Option<i32> {
    lab.sql(
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'idle_drop_exporter%' \
         ORDER BY backend_start LIMIT 1",
    )
    .parse()
    .ok()
}

fn listed(lab: &Lab, pid: i32) -> bool {
    lab.sql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
    )) == "1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_control_connection_leaves_no_session_behind() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("h6cs", "reset", 16);
    let config = lab_config("c", &lab, &format!("    max_connections: {BUDGET}\n"));
    let sessions = SessionWatch::start(&lab.name);
    let exporter = Exporter::start(&config).await;
    let target = [("target", "c")];
    exporter
        .wait_for(Duration::from_secs(30), "the control connection", |m| {
            m.get("idle_drop_target_up", &target) == Some(1.0)
        })
        .await;
    let control_pid = oldest_exporter_pid(&lab).expect("the control session is listed");
    exporter
        .wait_for_state(Duration::from_secs(240), "c", "watching")
        .await;
    assert!(
        listed(&lab, control_pid),
        "the first control session lasted through discovery"
    );

    // The control connection pings every half of the lower bound (~8 s): a 5 s middlebox
    // forgets its flow between two pings.
    lab.set_timeout(5);
    exporter
        .wait_for(
            Duration::from_secs(90),
            "the control connection to be lost",
            |m| {
                m.sum(
                    "idle_drop_closed_connections_total",
                    &[("target", "c"), ("role", "control")],
                ) >= 1.0
            },
        )
        .await;
    let lost_at = Instant::now();
    while listed(&lab, control_pid) {
        assert!(
            lost_at.elapsed() < Duration::from_secs(15),
            "the dropped control connection's session (pid {control_pid}) is still listed {:?} \
             after the loss",
            lost_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Keep running a while: later control losses must not pile up sessions either.
    tokio::time::sleep(Duration::from_secs(20)).await;

    exporter.shutdown().await;
    let max = sessions.finish();
    assert!(
        max <= BUDGET,
        "the server listed {max} exporter sessions, budget {BUDGET}"
    );
    let left = lab.sessions_left_after(Duration::from_millis(3000));
    assert_eq!(
        left,
        0,
        "sessions left behind after shutdown: {}",
        lab.sql(
            "SELECT string_agg(pid || ' ' || state || ' ' || backend_start, ', ') \
             FROM pg_stat_activity WHERE application_name LIKE 'idle_drop_exporter%'"
        )
    );
}
