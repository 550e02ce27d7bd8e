//! What the supervisor, the health server and the checks share: the drain
//! state machine, counters for /metrics, and a way to wake the supervisor.
//!
//! Locks are held only to read or update a few fields, never across I/O,
//! so the health server can never stall the signal loop.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use log::info;

use crate::drain::{Effect, Machine};
use crate::json;
use crate::signals::{self, MAX_SIGNAL};

pub struct Shared {
    machine: Mutex<Machine>,
    /// Where the traffic watcher waits for a drain that wants it.
    pub traffic_watch: TrafficWatch,
    pub metrics: Metrics,
    pub waker: Waker,
    pub child_pid: AtomicI32,
    pub started: Instant,
    checks: Mutex<Vec<CheckReport>>,
}

impl Shared {
    pub fn new(machine: Machine) -> Shared {
        Shared {
            machine: Mutex::new(machine),
            traffic_watch: TrafficWatch::default(),
            metrics: Metrics::default(),
            waker: Waker,
            child_pid: AtomicI32::new(0),
            started: Instant::now(),
            checks: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on the state machine. The lock is held only while `f`
    /// runs; what the machine asks of the world (log lines, waking the
    /// traffic watcher) happens after it is released, so a stalled log can
    /// never hold the lock. A panic while it was held
    /// cannot leave the machine half-updated (each transition is one
    /// assignment), so a poisoned lock is taken over rather than spreading
    /// the panic to PID 1.
    pub fn machine<R>(&self, f: impl FnOnce(&mut Machine) -> R) -> R {
        let (result, effects) = {
            let mut machine = self.machine.lock().unwrap_or_else(PoisonError::into_inner);
            let result = f(&mut machine);
            (result, machine.take_effects())
        };
        for effect in effects {
            match effect {
                Effect::Log(line) => info!("{line}"),
                Effect::WatchTraffic => self.traffic_watch.drain_began(),
            }
        }
        result
    }

    pub fn check_reports(&self) -> MutexGuard<'_, Vec<CheckReport>> {
        self.checks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counters behind /metrics.
pub struct Metrics {
    forwarded: [AtomicU64; MAX_SIGNAL as usize + 1],
    pub reaped: AtomicU64,
    answers: Mutex<Vec<(&'static str, u16, u64)>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            forwarded: std::array::from_fn(|_| AtomicU64::new(0)),
            reaped: AtomicU64::new(0),
            answers: Mutex::new(Vec::new()),
        }
    }
}

impl Metrics {
    pub fn count_forwarded(&self, sig: libc::c_int) {
        if let Some(c) = usize::try_from(sig)
            .ok()
            .and_then(|i| self.forwarded.get(i))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (signal number, count) for every signal forwarded at least once.
    pub fn forwarded(&self) -> Vec<(libc::c_int, u64)> {
        let counts = self.forwarded.iter().map(|c| c.load(Ordering::Relaxed));
        (0..).zip(counts).filter(|(_, n)| *n > 0).collect()
    }

    pub fn count_answer(&self, path: &'static str, code: u16) {
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        match answers
            .iter_mut()
            .find(|(p, c, _)| *p == path && *c == code)
        {
            Some(entry) => entry.2 += 1,
            None => answers.push((path, code, 1)),
        }
    }

    pub fn answers(&self) -> Vec<(&'static str, u16, u64)> {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Drains that want the traffic watched, counted, and a way to wait for
/// the next one: between drains the watcher sleeps here, costing nothing.
#[derive(Default)]
pub struct TrafficWatch {
    drains: Mutex<u64>,
    began: Condvar,
}

impl TrafficWatch {
    fn drain_began(&self) {
        *self.drains.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.began.notify_all();
    }

    /// Waits until more than `seen` drains have begun; returns how many.
    pub fn wait_past(&self, seen: u64) -> u64 {
        let mut drains = self.drains.lock().unwrap_or_else(PoisonError::into_inner);
        while *drains <= seen {
            drains = self
                .began
                .wait(drains)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *drains
    }
}

/// Makes the supervisor read the machine's deadline again, after another
/// thread changed what it should be (a drain met its checks, say).
pub struct Waker;

impl Waker {
    /// A SIGCHLD drainit sends itself: blocked in every thread, it waits
    /// for the supervisor's sigtimedwait, which reaps and goes round its
    /// loop on every SIGCHLD. Pending ones merge, which is all a wake-up needs.
    pub fn wake(&self) {
        let _ = signals::send(std::process::id() as libc::pid_t, libc::SIGCHLD);
    }
}

/// The last result of one check, shown by /healthz and /status.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub name: String,
    pub liveness: bool,
    pub ok: bool,
    pub duration: Duration,
    pub error: Option<String>,
}

impl CheckReport {
    pub fn to_json(&self) -> String {
        format!(
            "{{\"name\":\"{}\",\"kind\":\"{}\",\"ok\":{},\"duration_ms\":{:.1},\"error\":{}}}",
            json::escape(&self.name),
            if self.liveness {
                "liveness"
            } else {
                "readiness"
            },
            self.ok,
            self.duration.as_secs_f64() * 1000.0,
            self.error
                .as_ref()
                .map_or("null".into(), |e| format!("\"{}\"", json::escape(e))),
        )
    }
}
