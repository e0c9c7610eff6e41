use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::postgres::connection::query_tag;

const NAME: &str = "idle_drop_exporter/00000000deadbeef";

fn tag() -> String {
    query_tag(NAME)
}

fn row(state: &str, query: &str) -> ServerView {
    ServerView::Row(ActivityRow {
        state: state.into(),
        query: query.into(),
    })
}

/// The server's row after use `n` of ours.
fn after_use(state: &str, n: u64) -> ServerView {
    row(state, &format!("{}{}SELECT 1", tag(), UseMarker(n).text()))
}

fn tcp(unacked_bytes: u32, retransmits: u32) -> TcpState {
    TcpState {
        unacked_bytes,
        retransmits,
        rto: Duration::from_millis(816),
    }
}

/// What the lab's silent box gives: unacknowledged at the answer after one retransmission,
/// a second one since, unacknowledged for longer than a round trip and the ACK delay.
fn dead_socket() -> SocketEvidence {
    SocketEvidence {
        at_answer: tcp(41, 1),
        now: tcp(41, 2),
        retransmitted_for: Duration::from_millis(260),
        control_round_trip: Duration::from_millis(5),
    }
}

const SENT: UseMarker = UseMarker(7);

fn judge(server: &ServerView, socket: Option<&SocketEvidence>) -> Arrival {
    verdict(SENT, &tag(), server, socket)
}

#[test]
fn both_witnesses_say_never_arrived() {
    assert_eq!(
        judge(&after_use("idle", 6), Some(&dead_socket())),
        Arrival::NeverArrived
    );
    // An older use, or the identity query (before any use), is as good as the previous use.
    assert_eq!(
        judge(&after_use("idle", 1), Some(&dead_socket())),
        Arrival::NeverArrived
    );
    let identity = row("idle", &format!("{}SELECT pg_backend_pid()", tag()));
    assert_eq!(
        judge(&identity, Some(&dead_socket())),
        Arrival::NeverArrived
    );
}

#[test]
fn the_sent_use_on_the_server_arrived_whatever_the_socket_says() {
    for state in ["idle", "active", "idle in transaction"] {
        assert_eq!(
            judge(&after_use(state, 7), Some(&dead_socket())),
            Arrival::Arrived
        );
        assert_eq!(judge(&after_use(state, 7), None), Arrival::Arrived);
    }
}

#[test]
fn a_server_that_is_not_idle_on_an_earlier_use_is_never_a_death() {
    let socket = dead_socket();
    for server in [
        after_use("active", 6),
        after_use("idle in transaction", 6),
        after_use("", 6),
        // Newer than what we sent: not a text we know the order of.
        after_use("idle", 8),
        // Not ours: another client's query, a hidden one, a garbled marker.
        row("idle", "SELECT 1"),
        row("idle", "<insufficient privilege>"),
        row("idle", &format!("{}/* use seven */ SELECT 1", tag())),
        row("idle", &format!("{}/* use 6", tag())),
        row(
            "idle",
            &format!("{}SELECT 1", query_tag("idle_drop_exporter/other")),
        ),
        ServerView::Missing,
        ServerView::Unanswered,
        ServerView::NotOurs,
    ] {
        assert_eq!(
            judge(&server, Some(&socket)),
            Arrival::Unknown,
            "{server:?}"
        );
    }
}

#[test]
fn the_socket_must_say_it_too() {
    let server = after_use("idle", 6);
    assert_eq!(
        judge(&server, None),
        Arrival::Unknown,
        "an unreadable socket"
    );
    let change = |f: &dyn Fn(&mut SocketEvidence)| {
        let mut socket = dead_socket();
        f(&mut socket);
        judge(&server, Some(&socket))
    };
    assert_eq!(change(&|s| s.now = tcp(0, 0)), Arrival::Unknown, "acked");
    assert_eq!(change(&|s| s.now.unacked_bytes = 0), Arrival::Unknown);
    assert_eq!(change(&|s| s.at_answer.unacked_bytes = 0), Arrival::Unknown);
    assert_eq!(
        change(&|s| {
            s.at_answer = tcp(41, 0);
            s.now = tcp(41, 1);
        }),
        Arrival::Unknown,
        "too few retransmissions"
    );
    assert_eq!(
        change(&|s| s.at_answer = tcp(41, 2)),
        Arrival::Unknown,
        "no retransmission after the answer proved the path working"
    );
    assert_eq!(
        change(&|s| s.retransmitted_for = Duration::from_millis(204)),
        Arrival::Unknown,
        "its ACK may still be on its way"
    );
    assert_eq!(
        change(&|s| s.retransmitted_for = s.control_round_trip + ACK_SLACK),
        Arrival::NeverArrived
    );
    assert_eq!(
        change(&|s| s.control_round_trip = Duration::from_secs(2)),
        Arrival::Unknown,
        "a slow control answer asks for a longer wait"
    );
}

#[test]
fn markers_follow_the_tag_and_are_read_back() {
    let text = format!("{}{}SELECT 2", tag(), UseMarker(12).text());
    assert!(
        text.starts_with(&tag()),
        "the ghost check's prefix still holds"
    );
    assert_eq!(text, format!("/* {NAME} */ /* use 12 */ SELECT 2"));
    assert_eq!(
        UseMarker::in_query(&text, &tag()),
        LastQuery::Use(UseMarker(12))
    );
    assert_eq!(
        UseMarker::in_query(&format!("{}SELECT 1", tag()), &tag()),
        LastQuery::BeforeAnyUse
    );
    assert_eq!(
        UseMarker::in_query("/* use 12 */ SELECT 2", &tag()),
        LastQuery::NotOurs
    );
}

#[test]
fn the_control_query_matches_the_identity_and_reads_no_clock() {
    let backend = BackendIdentity {
        pid: 4242,
        backend_start: "2026-12-04 23:00:00.5+00".into(),
        exclusive: true,
        application_name: NAME.into(),
    };
    let sql = activity_query(&backend).expect("ours alone");
    assert!(sql.contains("pid = 4242"), "{sql}");
    assert!(
        sql.contains("backend_start::text = '2026-12-04 23:00:00.5+00'"),
        "{sql}"
    );
    assert!(
        sql.contains(&format!("application_name = '{NAME}'")),
        "{sql}"
    );
    // Clock skew between client and server cannot move a verdict: nothing of the server's
    // clock is read (backend_start is matched as text, an identity, never compared in time).
    for clock in [
        "now()",
        "state_change",
        "query_start",
        "xact_start",
        "clock_",
    ] {
        assert!(!sql.contains(clock), "{sql} reads {clock}");
    }
    let pooled = BackendIdentity {
        exclusive: false,
        ..backend.clone()
    };
    assert_eq!(
        activity_query(&pooled),
        None,
        "a pooler's backend is not asked"
    );
    let attempt = BackendIdentity { pid: 0, ..backend };
    assert_eq!(activity_query(&attempt), None, "no pid, nothing to match");
}

proptest! {
    /// Whatever the witnesses say, a death is declared only when each says it positively.
    #[test]
    fn never_arrived_only_on_both_positive_witnesses(
        state in prop::sample::select(vec!["idle", "active", "idle in transaction", ""]),
        last in 0u64..10,
        answer in (0u32..3, 0u32..4),
        now in (0u32..3, 0u32..5),
        retransmitted_for_ms in 0u64..1000,
        round_trip_ms in 0u64..1000,
    ) {
        let server = after_use(state, last);
        let socket = SocketEvidence {
            at_answer: tcp(answer.0, answer.1),
            now: tcp(now.0, now.1),
            retransmitted_for: Duration::from_millis(retransmitted_for_ms),
            control_round_trip: Duration::from_millis(round_trip_ms),
        };
        let arrival = judge(&server, Some(&socket));
        if arrival == Arrival::NeverArrived {
            prop_assert!(state == "idle" && last < SENT.0);
            prop_assert!(answer.0 > 0 && now.0 > 0);
            prop_assert!(now.1 >= MIN_RETRANSMITS && now.1 > answer.1);
            prop_assert!(retransmitted_for_ms >= round_trip_ms + 200);
        }
        prop_assert_eq!(arrival == Arrival::Arrived, last == SENT.0);
    }
}

/// A pooler's backend (not ours alone) is never asked about: its row says nothing of our
/// flow, and the engine's probe then costs the control connection nothing.
#[tokio::test]
async fn a_poolers_backend_costs_no_control_query() {
    let sent = Sent {
        marker: UseMarker(3),
        socket: SocketId {
            inode: 0,
            local: "127.0.0.1:1".parse().unwrap(),
            peer: "127.0.0.1:2".parse().unwrap(),
        },
        tag: tag(),
        backend: BackendIdentity {
            pid: 4242,
            backend_start: "2026-12-05 00:00:00+00".into(),
            exclusive: false,
            application_name: NAME.into(),
        },
    };
    let asked = std::sync::atomic::AtomicBool::new(false);
    let found = confirm_with(
        &sent,
        |_| async {
            asked.store(true, std::sync::atomic::Ordering::Relaxed);
            ServerView::Missing
        },
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(found.arrival, Arrival::Unknown);
    assert_eq!(found.server, Some(ServerView::NotOurs));
    assert!(!asked.load(std::sync::atomic::Ordering::Relaxed));
}
