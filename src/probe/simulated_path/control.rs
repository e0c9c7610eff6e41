//! The simulated server's answers to the control connection's questions: reachability, ghosts
//! (reaped when the test allows it) and the activity row the confirmation of a silent death reads.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{SimulatedPath, ROUND_TRIP};
use crate::postgres::arrival::{ActivityRow, ServerView};
use crate::postgres::connection::{query_tag, BackendIdentity, UseMarker};
use crate::probe::control::GhostVerdict;
use crate::probe::network::ControlLink;

#[derive(Clone)]
pub struct SimulatedControl {
    pub(super) path: SimulatedPath,
}

impl ControlLink for SimulatedControl {
    async fn healthy(&self) -> bool {
        tokio::time::sleep(ROUND_TRIP).await;
        self.path.server_up()
    }

    async fn ghost(&self, backend: BackendIdentity, _idle_since: Instant) -> GhostVerdict {
        tokio::time::sleep(ROUND_TRIP).await;
        if !self.path.server_up() {
            return GhostVerdict::Unknown;
        }
        let mut s = self.path.state();
        if backend.is_attempt() {
            return if !s.abandoned.contains(&backend.application_name) {
                GhostVerdict::Gone
            } else if s.reaping {
                s.abandoned.remove(&backend.application_name);
                GhostVerdict::Reaped
            } else {
                GhostVerdict::Alive
            };
        }
        if !s.sessions.contains(&backend.pid) {
            GhostVerdict::Gone
        } else if s.reaping {
            s.sessions.remove(&backend.pid);
            GhostVerdict::Reaped
        } else {
            GhostVerdict::Alive
        }
    }

    async fn activity(&self, backend: BackendIdentity) -> ServerView {
        tokio::time::sleep(ROUND_TRIP).await;
        let mut s = self.path.state();
        s.activity_queries += 1;
        if !self.path.server_up() {
            return ServerView::Unanswered;
        }
        if s.rows_hidden || !s.sessions.contains(&backend.pid) {
            return ServerView::Missing;
        }
        let received = s.received.get(&backend.pid).copied().unwrap_or(0);
        let marker = match received {
            0 => String::new(),
            n => UseMarker(n).text(),
        };
        ServerView::Row(ActivityRow {
            state: "idle".into(),
            query: format!("{}{marker}SELECT 1", query_tag(&backend.application_name)),
        })
    }

    fn is_up(&self) -> bool {
        self.path.server_up()
    }
    fn subscribe(&self) -> watch::Receiver<bool> {
        self.path.up.subscribe()
    }
    fn sessions(&self) -> usize {
        1
    }
    fn subscribe_sessions(&self) -> watch::Receiver<usize> {
        self.path.control_sessions.subscribe()
    }
    fn set_lower_bound(&self, lower: Option<Duration>) {
        self.path.state().control_lower_bound = lower;
    }
    /// The simulated control connection is new at every question while the server is up.
    fn connected_since(&self) -> Option<Instant> {
        self.path.server_up().then(Instant::now)
    }
}
