//! File work off the daemon's loop: reading and checking the configuration, the target files
//! and the web configuration runs on a thread of its own, under a deadline, so a slow or hostile
//! file (a hung network mount, a huge file set) costs only its own refusal while the daemon goes
//! on answering signals, `/-/ready` and probing.
//!
//! A dedicated thread rather than `spawn_blocking`: work that overruns its deadline is left
//! behind (a read stuck in the kernel cannot be cancelled), and the runtime's shutdown waits for
//! blocking tasks but not for a detached thread. How many may be left behind is bounded per
//! [`Lane`]: past that, new work is refused ([`Outcome::Busy`]) until one ends.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

/// How long reading and checking the configuration file, or one refresh of the target files,
/// may take.
pub const FILE_WORK_DEADLINE: Duration = Duration::from_secs(10);

/// One kind of work (the target files, a reload, the web configuration), with how many of its
/// threads may run at once, overdue ones included.
#[derive(Clone, Debug)]
pub struct Lane {
    name: &'static str,
    running: Arc<AtomicUsize>,
    max: usize,
}

/// Set when a piece of work's thread ends (for one that overran its deadline: when it is no
/// longer stuck).
#[derive(Clone, Debug, Default)]
pub struct Ended(Arc<AtomicBool>);

impl Ended {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// How a piece of work went.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    /// Still running at the deadline; left behind. `Ended` is set once it finishes.
    Overdue(Ended),
    /// Not started: the lane already has its most threads running (some overdue).
    Busy,
}

impl Lane {
    pub fn new(name: &'static str, max: usize) -> Lane {
        Lane {
            name,
            running: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// Runs `work` on a thread of its own; its result, or [`Outcome::Overdue`] at `deadline`.
    pub async fn run<T: Send + 'static>(
        &self,
        deadline: Duration,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Outcome<T> {
        let mut result = None;
        let outcome = self
            .stream(
                deadline,
                move |emit| {
                    emit(work());
                },
                |value| result = Some(value),
            )
            .await;
        match (outcome, result) {
            (Outcome::Done(()), Some(value)) => Outcome::Done(value),
            (Outcome::Overdue(ended), _) => Outcome::Overdue(ended),
            (Outcome::Busy, _) => Outcome::Busy,
            // The thread died (a panic) before giving its result: as good as never ending.
            (Outcome::Done(()), None) => Outcome::Overdue(Ended(Arc::new(AtomicBool::new(true)))),
        }
    }

    /// Runs `work` on a thread of its own, handing each event it emits to `on` as it comes,
    /// until it ends or `deadline` passes (the events before the deadline have been handed).
    /// Past the deadline, `emit` returns false: the work should stop, nobody is listening.
    pub async fn stream<E: Send + 'static>(
        &self,
        deadline: Duration,
        work: impl FnOnce(&mut dyn FnMut(E) -> bool) + Send + 'static,
        mut on: impl FnMut(E),
    ) -> Outcome<()> {
        let taken = self
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        if taken.is_err() {
            return Outcome::Busy;
        }
        let ended = Ended::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let running = self.running.clone();
        let flag = ended.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("idle-drop-{}", self.name))
            .spawn(move || {
                // Counted down however the work ends (a panic included).
                struct Done(Arc<AtomicUsize>, Ended);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.1 .0.store(true, Ordering::Release);
                        self.0.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                let _done = Done(running, flag);
                work(&mut |event| tx.send(event).is_ok());
            });
        if let Err(e) = spawned {
            self.running.fetch_sub(1, Ordering::AcqRel);
            tracing::error!(lane = self.name, error = %e, "cannot start a thread for file work");
            return Outcome::Busy;
        }
        let received = tokio::time::timeout(deadline, async {
            while let Some(event) = rx.recv().await {
                on(event);
            }
        })
        .await;
        match received {
            Ok(()) => Outcome::Done(()),
            Err(_) => Outcome::Overdue(ended),
        }
    }
}

/// For code without a runtime (`main` before it starts one): `work` on a thread of its own,
/// `None` if it is still running after `deadline` (it is left behind).
pub fn blocking<T: Send + 'static>(
    deadline: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("idle-drop-load".to_string())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .ok()?;
    rx.recv_timeout(deadline).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overdue_work_is_left_behind_and_the_lane_is_bounded() {
        let lane = Lane::new("test", 2);
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Arc::new(std::sync::Mutex::new(wait));
        let stuck = |wait: Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>| {
            move || {
                let _ = wait.lock().unwrap().recv();
                7
            }
        };
        let start = std::time::Instant::now();
        let Outcome::Overdue(first) = lane
            .run(Duration::from_millis(100), stuck(wait.clone()))
            .await
        else {
            panic!("not overdue")
        };
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(!first.is_set());
        // One more may run (and finish); while two are stuck, none.
        assert!(matches!(
            lane.run(Duration::from_secs(5), || 1).await,
            Outcome::Done(1)
        ));
        let Outcome::Overdue(second) = lane.run(Duration::from_millis(100), stuck(wait)).await
        else {
            panic!("not overdue")
        };
        assert!(matches!(
            lane.run(Duration::from_secs(5), || 1).await,
            Outcome::Busy
        ));
        release.send(()).unwrap();
        release.send(()).unwrap();
        while !(first.is_set() && second.is_set()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(matches!(
            lane.run(Duration::from_secs(5), || 2).await,
            Outcome::Done(2)
        ));
    }

    #[tokio::test]
    async fn events_before_the_deadline_are_handed_over() {
        let lane = Lane::new("test", 1);
        let mut seen = Vec::new();
        let outcome = lane
            .stream(
                Duration::from_millis(300),
                |emit| {
                    emit(1);
                    emit(2);
                    std::thread::sleep(Duration::from_secs(1));
                    assert!(!emit(3), "nobody listens past the deadline");
                },
                |e| seen.push(e),
            )
            .await;
        assert!(matches!(outcome, Outcome::Overdue(_)));
        assert_eq!(seen, [1, 2]);
    }
}
