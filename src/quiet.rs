//! The traffic watcher of `--drain-until-quiet`: while a drain waits for
//! the app's traffic to stop, it samples the app's sockets (traffic.rs)
//! every 100 ms and tells the drain machine when it saw a new connection
//! or received bytes. The samples are taken on a thread of their own: a
//! dump of a host network's sockets can take milliseconds, which the
//! signal loop must not spend.
//!
//! Between drains the thread sleeps on a condition variable: no wake-up,
//! no netlink socket.

use std::io;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::listeners;
use crate::reap;
use crate::shared::Shared;
use crate::signals;
use crate::traffic::{activity, Sampler};

/// How often the app's sockets are sampled during a drain wait.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Starts the watcher. `ports` overrides finding the app's listening
/// ports (`--drain-ports`).
pub fn start(shared: Arc<Shared>, ports: Option<Vec<u16>>) -> io::Result<()> {
    let builder = thread::Builder::new()
        .name("traffic".into())
        .stack_size(128 * 1024);
    signals::spawn(builder, move || {
        let mut seen = 0;
        loop {
            seen = shared.traffic_watch.wait_past(seen);
            watch(&shared, ports.as_deref());
        }
    })?;
    Ok(())
}

/// Samples the app's traffic until the drain no longer waits for it, or
/// until it cannot be sampled.
fn watch(shared: &Shared, ports: Option<&[u16]>) {
    let ports = ports.map_or_else(app_ports, <[u16]>::to_vec);
    shared.machine(|m| m.traffic_ports(ports.clone()));
    let mut sampler = Sampler::new();
    let mut last = match sampler.sample(&ports) {
        Ok(first) => first,
        Err(e) => return unavailable(shared, &e),
    };
    loop {
        thread::sleep(SAMPLE_EVERY);
        if !shared.machine(|m| m.watching_traffic()) {
            return;
        }
        let next = match sampler.sample(&ports) {
            Ok(next) => next,
            Err(e) => return unavailable(shared, &e),
        };
        let seen = activity(&last, &next);
        if seen.is_traffic() {
            let now = Instant::now();
            shared.machine(|m| m.traffic_seen(seen.new > 0, seen.receiving > 0, now));
        }
        last = next;
    }
}

fn unavailable(shared: &Shared, e: &io::Error) {
    shared.machine(|m| m.traffic_unavailable(e.to_string()));
    shared.waker.wake();
}

/// The ports that the processes under drainit (the app, and what it
/// started) listen on; not drainit's own.
fn app_ports() -> Vec<u16> {
    let me = std::process::id() as libc::pid_t;
    let pids: Vec<libc::pid_t> = reap::descendants(me)
        .unwrap_or_default()
        .iter()
        .map(|p| p.pid)
        .collect();
    listeners::listening_ports(&pids)
}
