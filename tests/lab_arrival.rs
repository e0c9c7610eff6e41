//! Server-side confirmation of a silent death (issue 18, part 1), against the lab's real
//! PostgreSQL behind its conntrack box: `postgres::arrival` says `NeverArrived` about a use sent
//! on a flow the box forgot, about a second after the send (instead of `tcp_user_timeout`, 10 s),
//! and never about a use on a live flow: a slow query, a stopped backend (whose row alone
//! looks exactly like a death's), a stopped server, a loaded control connection. Clock skew
//! cannot move a verdict because no time is read from the server (the control query's text is
//! checked in the unit tests); the last test proves it with the server's wall clock three hours
//! ahead and then three hours behind this machine's (libfaketime, `lab.sh restart-postgres
//! --clock-offset`).

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use idle_drop_exporter::postgres::arrival::{self, Arrival, Sent, ServerView};
use idle_drop_exporter::postgres::connection::{
    Attempt, Connector, LastQuery, ProbeConnection, ProbeOutcome, UseMarker,
};
use tokio::time::Instant;

/// The default `tcp_user_timeout`: what a silent death costs without the confirmation.
const USE_TIMEOUT: Duration = Duration::from_secs(10);
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long each live case is watched: past the dead flow's verdict (about 1 s).
const WATCH: Duration = Duration::from_millis(2500);

fn connector(lab: &Lab) -> Arc<Connector> {
    let config = idle_drop_exporter::config::parse(
        std::path::Path::new("test.yaml"),
        &format!(
            "targets:\n  - name: a\n    dsn: {}\n    password_file: {}\n    sslmode: disable\n    connect_timeout: 3s\n    query_timeout: 10s\n    tcp_user_timeout: 10s\n",
            lab.dsn(),
            lab.password_file()
        ),
    )
    .unwrap();
    Arc::new(Connector::new(&config.targets[0].connect_spec()).unwrap())
}

async fn open(connector: &Connector) -> ProbeConnection {
    let conn = connector.open(&Attempt::new(), None, |_| {}).await.unwrap();
    assert!(
        conn.backend.exclusive,
        "a direct connection's backend is its own"
    );
    conn
}

fn alive(outcome: &ProbeOutcome) -> bool {
    matches!(outcome, ProbeOutcome::Alive)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_on_a_flow_the_box_forgot_never_arrived_within_a_second_and_a_half() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("ardead", "silent", 5);
    let connector = connector(&lab);
    let mut probe = open(&connector).await;
    assert!(alive(&probe.probe("SELECT 1", USE_TIMEOUT).await));
    // The second, for a control connection that answers slowly.
    let mut second = open(&connector).await;
    assert!(alive(&second.probe("SELECT 1", USE_TIMEOUT).await));
    // Past the box's 5 s: it forgot the flows and drops what the probes send next.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let control = open(&connector).await;
    let sent = Sent::next(&probe).unwrap();
    let started = Instant::now();
    let in_flight = tokio::spawn(async move { probe.probe("SELECT 2", USE_TIMEOUT).await });
    let found = arrival::confirm(&sent, &control, Duration::from_secs(3), CONTROL_TIMEOUT).await;
    let took = started.elapsed();
    eprintln!(
        "dead flow: {:?} {:.3} s after the send; server {:?}; socket {:?}",
        found.arrival,
        took.as_secs_f64(),
        found.server,
        found.socket
    );
    assert_eq!(found.arrival, Arrival::NeverArrived, "{found:?}");
    assert!(took <= Duration::from_millis(1500), "took {took:?}");
    // The server's witness: idle, its last query the previous use's.
    let Some(ServerView::Row(row)) = &found.server else {
        panic!("the control connection read the row: {found:?}");
    };
    assert_eq!(row.state, "idle");
    assert_eq!(
        UseMarker::in_query(&row.query, &sent.tag),
        LastQuery::Use(UseMarker(sent.marker.0 - 1))
    );
    // And the slow path agrees, later: the use gets no answer.
    assert!(
        !in_flight.is_finished(),
        "the use must still be retransmitting"
    );
    in_flight.abort();

    // A loaded control connection (a 1 s statement ahead of the row's query) delays the verdict
    // (it waits a round trip longer for an acknowledgement) but still gives it.
    let sent = Sent::next(&second).unwrap();
    let started = Instant::now();
    let in_flight = tokio::spawn(async move { second.probe("SELECT 2", USE_TIMEOUT).await });
    let busy = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        control
            .simple_query("SELECT pg_sleep(1)", CONTROL_TIMEOUT)
            .await
    };
    let (found, busy) = tokio::join!(
        arrival::confirm(&sent, &control, Duration::from_secs(5), CONTROL_TIMEOUT),
        busy
    );
    busy.unwrap();
    let took = started.elapsed();
    eprintln!(
        "dead flow, loaded control connection: {:?} {:.3} s after the send; socket {:?}",
        found.arrival,
        took.as_secs_f64(),
        found.socket
    );
    assert_eq!(found.arrival, Arrival::NeverArrived, "{found:?}");
    let socket = found.socket.unwrap();
    // The row's query waited behind the statement (sent about 0.35 s before it).
    assert!(
        socket.control_round_trip >= Duration::from_millis(300),
        "{socket:?}"
    );
    in_flight.abort();
    control.close().await;
}

/// What watching one use on a live flow found.
struct Watched {
    confirmation: arrival::Confirmation,
    /// The row read once, `snapshot_after` the send, and the verdict the server's side alone
    /// (no socket) gives it.
    snapshot: ServerView,
    snapshot_verdict: Arrival,
    outcome: ProbeOutcome,
}

/// Sends `query` as the next use of `probe` and, while it is in flight, runs `confirm` for
/// [`WATCH`], reads the session's row `snapshot_after` the send, and runs `meanwhile`.
async fn watch_use(
    probe: &mut ProbeConnection,
    control: &ProbeConnection,
    query: &str,
    snapshot_after: Duration,
    meanwhile: impl std::future::Future<Output = ()>,
) -> Watched {
    let sent = Sent::next(probe).unwrap();
    let backend = probe.backend.clone();
    let snapshot = async {
        tokio::time::sleep(snapshot_after).await;
        arrival::fetch(control, &backend, CONTROL_TIMEOUT).await
    };
    let (outcome, confirmation, snapshot, ()) = tokio::join!(
        probe.probe(query, USE_TIMEOUT),
        arrival::confirm(&sent, control, WATCH, CONTROL_TIMEOUT),
        snapshot,
        meanwhile,
    );
    let snapshot_verdict = arrival::verdict(sent.marker, &sent.tag, &snapshot, None);
    Watched {
        confirmation,
        snapshot,
        snapshot_verdict,
        outcome,
    }
}

/// Resumes `pids` (stopped before the use was sent) `after` the send.
async fn resume_after(pids: &[String], after: Duration) {
    tokio::time::sleep(after).await;
    assert!(signal("CONT", pids), "kill -CONT {pids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_use_on_a_live_flow_is_never_called_lost() {
    if skip_without_lab(&[]) {
        return;
    }
    // The box forgets nothing within the test: every flow is live.
    let lab = Lab::up("arlive", "silent", 600);
    let connector = connector(&lab);
    let mut probe = open(&connector).await;
    let control = open(&connector).await;
    assert!(alive(&probe.probe("SELECT 1", USE_TIMEOUT).await));
    let ms = Duration::from_millis;

    // A slow query: the server shows the use running, by its marker.
    let slow = watch_use(&mut probe, &control, "SELECT pg_sleep(3)", ms(500), async {
    })
    .await;
    report("slow query", &slow);
    assert_eq!(
        slow.snapshot_verdict,
        Arrival::Arrived,
        "{:?}",
        slow.snapshot
    );
    assert!(alive(&slow.outcome));

    // A stopped backend: its row alone looks exactly like a death's (idle, the previous use),
    // but its host's kernel acknowledges the bytes.
    let pid = probe.backend.pid.to_string();
    let previous = probe.next_use().0 - 1;
    assert!(
        signal("STOP", std::slice::from_ref(&pid)),
        "kill -STOP {pid}"
    );
    let stopped = watch_use(&mut probe, &control, "SELECT 1", ms(500), async {
        resume_after(std::slice::from_ref(&pid), ms(3000)).await
    })
    .await;
    report("stopped backend", &stopped);
    let ServerView::Row(row) = &stopped.snapshot else {
        panic!("{:?}", stopped.snapshot)
    };
    assert_eq!(row.state, "idle", "{row:?}");
    assert_eq!(
        UseMarker::in_query(&row.query, probe.tag()),
        LastQuery::Use(UseMarker(previous))
    );
    assert!(alive(&stopped.outcome));

    // The whole server stopped (the control connection's backend too).
    let all = lab.server_processes();
    assert!(signal("STOP", &all), "kill -STOP {all:?}");
    let server = watch_use(&mut probe, &control, "SELECT 1", ms(500), async {
        resume_after(&all, ms(3000)).await
    })
    .await;
    report("stopped server", &server);
    assert!(alive(&server.outcome));

    // A loaded control connection: a 1.5 s statement ahead of every control query.
    let busy = async {
        control
            .simple_query("SELECT pg_sleep(1.5)", CONTROL_TIMEOUT)
            .await
            .unwrap();
    };
    let loaded = watch_use(&mut probe, &control, "SELECT 1", ms(100), busy).await;
    report("loaded control connection", &loaded);
    // Read after the statement ahead of it, by when the use had run.
    assert_eq!(
        loaded.snapshot_verdict,
        Arrival::Arrived,
        "{:?}",
        loaded.snapshot
    );
    assert!(alive(&loaded.outcome));

    for (case, watched) in [
        ("slow query", &slow),
        ("stopped backend", &stopped),
        ("stopped server", &server),
        ("loaded control connection", &loaded),
    ] {
        assert_ne!(
            watched.confirmation.arrival,
            Arrival::NeverArrived,
            "{case}: {:?}",
            watched.confirmation
        );
    }
    probe.close().await;
    control.close().await;
}

fn report(case: &str, watched: &Watched) {
    eprintln!(
        "{case}: confirm {:?} (server {:?}, socket {:?}); row {:?} -> {:?}; use {}",
        watched.confirmation.arrival,
        watched.confirmation.server,
        watched.confirmation.socket,
        watched.snapshot,
        watched.snapshot_verdict,
        watched.outcome.label()
    );
}

/// How far the server's wall clock is from this machine's, in seconds (server minus client).
async fn clock_offset(control: &ProbeConnection) -> f64 {
    let rows = control
        .simple_query("SELECT extract(epoch FROM now())::text", CONTROL_TIMEOUT)
        .await
        .unwrap();
    let server: f64 = rows[0].first().cloned().flatten().unwrap().parse().unwrap();
    let client = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    server - client
}

/// A server clock hours off changes no verdict: a live use is still never called lost, and a
/// use on a forgotten flow still never arrived. (A check that compared the row's `state_change`
/// with the send would fail one way with the clock ahead and the other way with it behind.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_clock_hours_off_changes_no_verdict() {
    if skip_without_lab(&[]) {
        return;
    }
    let lab = Lab::up("arskew", "silent", 5);
    let connector = connector(&lab);
    for (offset, hours) in [("+3h", 3.0), ("-3h", -3.0)] {
        lab.lab(&["restart-postgres", &lab.name, "--clock-offset", offset]);
        let mut probe = open(&connector).await;
        let control = open(&connector).await;
        let skew = clock_offset(&control).await;
        eprintln!("server clock {offset}: {skew:.1} s from this machine's");
        assert!((skew - hours * 3600.0).abs() < 60.0, "skew {skew} s");

        let live = watch_use(
            &mut probe,
            &control,
            "SELECT pg_sleep(2)",
            Duration::from_millis(500),
            async {},
        )
        .await;
        report(&format!("slow query, clock {offset}"), &live);
        assert_eq!(
            live.snapshot_verdict,
            Arrival::Arrived,
            "{:?}",
            live.snapshot
        );
        assert_ne!(live.confirmation.arrival, Arrival::NeverArrived);
        assert!(alive(&live.outcome));

        // Past the box's 5 s: the probe's flow is forgotten. A control connection that idled
        // as long would be too, so a fresh one reads the row.
        control.close().await;
        tokio::time::sleep(Duration::from_secs(7)).await;
        let control = open(&connector).await;
        let sent = Sent::next(&probe).unwrap();
        let in_flight = tokio::spawn(async move { probe.probe("SELECT 2", USE_TIMEOUT).await });
        let found =
            arrival::confirm(&sent, &control, Duration::from_secs(3), CONTROL_TIMEOUT).await;
        eprintln!("dead flow, clock {offset}: {found:?}");
        assert_eq!(
            found.arrival,
            Arrival::NeverArrived,
            "clock {offset}: {found:?}"
        );
        in_flight.abort();
        control.close().await;
    }
}
