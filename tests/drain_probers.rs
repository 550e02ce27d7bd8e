//! `--drain-checks N` counts per prober: every load balancer instance (a
//! source address and User-Agent) heard before the drain must see N
//! unready answers; drainit's own probes and ignored User-Agents never
//! count; a prober that goes silent stops holding the wait; with no prober
//! the wait is the fixed delay. The child ignores SIGTERM, so drainit
//! can still be asked about the drain after it was forwarded.
mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A load balancer instance's health check: `GET /readyz` from `from`
/// with its User-Agent, every `every`, until stopped. Records when each
/// answer came and its status.
struct Prober {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<(Instant, u16)>>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Prober {
    fn start(from: Ipv4Addr, agent: &str, every: Duration, addr: SocketAddr) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let ua = format!("User-Agent: {agent}");
        let (s, a) = (Arc::clone(&stop), Arc::clone(&answers));
        // It stops by itself once drainit is gone.
        let handle = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok(code) = try_code_from(from, addr, "/readyz", &[&ua]) else {
                    return;
                };
                a.lock().unwrap().push((Instant::now(), code));
                thread::sleep(every);
            }
        });
        Prober {
            stop,
            answers,
            handle: Some(handle),
        }
    }

    fn answers(&self) -> Vec<(Instant, u16)> {
        self.answers.lock().unwrap().clone()
    }

    /// When its `n`-th unready answer came.
    fn nth_unready(&self, n: usize) -> Option<Instant> {
        self.answers()
            .into_iter()
            .filter(|(_, code)| *code == 503)
            .nth(n - 1)
            .map(|(at, _)| at)
    }

    fn wait_for_probes(&self, n: usize) {
        wait_for(secs(10.0), "the prober to probe", || {
            self.answers().len() >= n
        });
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Two unready answers per prober, a short linger, and a timeout long
/// enough that only the probers can end the wait.
const CHECKS_2: [&str; 7] = [
    "-v",
    "--drain-checks",
    "2",
    "--drain-linger",
    "0.2",
    "--drain-timeout",
    "30",
];

/// drainit with `opts` over a child that ignores SIGTERM, once ready.
fn ready(opts: &[&str]) -> Sup {
    let sup = start_sigrec(opts, &["--ignore-term"]);
    wait_for_state(sup.addr, "ready", secs(10.0));
    sup
}

const FAST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const SLOW: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// Two HAProxy instances, one checking every 0.2 s and one every 1.5 s:
/// the child gets SIGTERM only after the slow one has seen 2 unready
/// answers (counted together, the fast one's 2 were enough).
#[test]
fn every_instance_must_see_the_drain() {
    let sup = ready(&CHECKS_2);
    let mut fast = Prober::start(FAST, "HAProxy", secs(0.2), sup.addr);
    let mut slow = Prober::start(SLOW, "HAProxy", secs(1.5), sup.addr);
    slow.wait_for_probes(2);
    sup.init.signal(libc::SIGTERM);
    let term = wait_for_signal(&sup.out, libc::SIGTERM, secs(20.0));
    fast.halt();
    slow.halt();
    let slow_second = slow
        .nth_unready(2)
        .expect("the slow prober saw the drain twice");
    let fast_second = fast
        .nth_unready(2)
        .expect("the fast prober saw the drain twice");
    assert!(
        term > slow_second,
        "SIGTERM reached the child {:?} before the slow prober's 2nd unready answer",
        slow_second - term
    );
    assert!(term > fast_second);
    let status = status_doc(sup.addr);
    let probers = status["probers"].as_array().unwrap().clone();
    assert_eq!(probers.len(), 2, "{status}");
    for p in &probers {
        assert_eq!(p["user_agent"], "HAProxy", "{p}");
        assert_eq!(p["standing"], "saw the drain", "{p}");
    }
    assert_eq!(status["drain"]["wait_ended"], "checks", "{status}");
    assert_eq!(status["drain"]["probers_waited_for"], 2, "{status}");
    let metrics = request("GET", sup.addr, "/metrics", &[]).body;
    assert!(
        metrics
            .contains("drainit_prober_unready_answers{addr=\"127.0.0.3\",user_agent=\"HAProxy\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("drainit_drain_waits_total{ended=\"checks\"} 1"),
        "{metrics}"
    );
    let log = sup
        .init
        .log_when("the end of the wait", |l| l.contains("drain wait over"));
    assert!(
        log.contains("127.0.0.2 (HAProxy)") && log.contains("127.0.0.3 (HAProxy)"),
        "the end of the wait names the probers: {log}"
    );
}

/// The container's own HEALTHCHECK (`drainit probe`) is no balancer: run
/// before and during the drain, it neither becomes a prober nor ends the
/// wait, which is the fixed delay.
#[test]
fn drainits_own_probes_do_not_shorten_the_drain() {
    let opts = [
        "--drain-checks",
        "3",
        "--drain-delay",
        "3",
        "--drain-linger",
        "0.1",
    ];
    let sup = ready(&opts);
    let addr = sup.addr.to_string();
    let probe = || run_drainit(&["probe", "--addr", &addr], &[], secs(10.0));
    for _ in 0..3 {
        assert_eq!(probe().code, 0);
    }
    let sent = Instant::now();
    sup.init.signal(libc::SIGTERM);
    wait_for_state(sup.addr, "draining", secs(10.0));
    while recorded(&sup.out).is_empty() && sent.elapsed() < secs(10.0) {
        assert_eq!(probe().code, 1, "drainit probe during the drain");
    }
    let took = wait_for_signal(&sup.out, libc::SIGTERM, secs(10.0)) - sent;
    assert!(
        took >= secs(2.9),
        "drainit probe ended the wait after {took:?}"
    );
    assert!(status_doc(sup.addr)["probers"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// A balancer that was itself removed stops probing: after about 3 of its
/// intervals it no longer holds the wait (here its timeout of 30 s).
#[test]
fn a_prober_that_goes_silent_stops_holding_the_wait() {
    let sup = ready(&CHECKS_2);
    let _fast = Prober::start(FAST, "HAProxy", secs(0.2), sup.addr);
    let mut gone = Prober::start(SLOW, "HAProxy", secs(0.5), sup.addr);
    gone.wait_for_probes(3);
    gone.halt();
    let last = gone.answers().last().unwrap().0;
    sup.init.signal(libc::SIGTERM);
    let term = wait_for_signal(&sup.out, libc::SIGTERM, secs(20.0));
    assert!(
        term - last >= secs(1.4),
        "SIGTERM {:?} after the silent prober's last probe, before its 3 intervals of 0.5 s",
        term - last
    );
    assert!(term - last < secs(10.0), "the silent prober held the wait");
    sup.init.log_when("the silence in the log", |l| {
        l.contains("127.0.0.3 (HAProxy) stopped probing")
    });
}

/// No prober before the drain (probes begin only after it): the wait is
/// the fixed delay, and the log says why.
#[test]
fn without_probers_the_wait_is_the_fixed_delay() {
    let opts = [
        "-v",
        "--drain-checks",
        "2",
        "--drain-delay",
        "2",
        "--drain-linger",
        "0.1",
    ];
    let sup = ready(&opts);
    let sent = Instant::now();
    sup.init.signal(libc::SIGTERM);
    wait_for_state(sup.addr, "draining", secs(10.0));
    let _late = Prober::start(FAST, "HAProxy", secs(0.1), sup.addr);
    let took = wait_for_signal(&sup.out, libc::SIGTERM, secs(10.0)) - sent;
    assert!(
        took >= secs(1.9),
        "the late prober ended the wait after {took:?}"
    );
    sup.init.log_when("the fallback in the log", |l| {
        l.contains("no prober was seen before the drain; the wait is the fixed delay")
    });
}

/// A User-Agent named with --drain-checks-ignore-ua never counts, even
/// from a load balancer's address: with it the wait is the fixed delay.
#[test]
fn ignored_user_agents_never_count() {
    let opts = [
        "--drain-checks",
        "1",
        "--drain-delay",
        "2",
        "--drain-checks-ignore-ua",
        "kube-probe",
    ];
    let sup = ready(&opts);
    let kubelet = Prober::start(FAST, "kube-probe/1.29", secs(0.1), sup.addr);
    kubelet.wait_for_probes(3);
    let sent = Instant::now();
    sup.init.signal(libc::SIGTERM);
    let took = wait_for_signal(&sup.out, libc::SIGTERM, secs(10.0)) - sent;
    assert!(
        took >= secs(1.9),
        "the kubelet's probes ended the wait after {took:?}"
    );
}
