//! Signal storms against the real binary (issue 6): tens of thousands of
//! mixed signals sent to drainit while the child runs. drainit keeps
//! forwarding (the child sees every kind), never deadlocks (it answers
//! /readyz and reaps throughout), never exits early, loses no queued
//! real-time signal, and a SIGTERM inside the storm drains exactly once:
//! one drain, the child's one SIGTERM only after the drain delay.
mod common;
mod hardening_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use hardening_common::*;

/// The mixed storm: standard signals (which coalesce while pending),
/// real-time ones (which queue), and SIGCHLD, which drainit must take as
/// "reap" and never forward.
fn kinds() -> Vec<i32> {
    vec![
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGHUP,
        libc::SIGWINCH,
        libc::SIGRTMIN(),
        libc::SIGRTMIN() + 1,
        libc::SIGRTMAX(),
        libc::SIGCHLD,
    ]
}

/// Sends the kinds round-robin to `pid` for `length`, paced in bursts of
/// 64; returns how many of each kill() accepted (a full real-time queue
/// answers EAGAIN, which is counted as not sent).
fn storm(pid: i32, length: Duration) -> Vec<(i32, u64)> {
    let kinds = kinds();
    let mut sent: Vec<(i32, u64)> = kinds.iter().map(|&k| (k, 0)).collect();
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < length {
        for _ in 0..64 {
            let i = n % kinds.len();
            // SAFETY: kill has no memory preconditions.
            if unsafe { libc::kill(pid, kinds[i]) } == 0 {
                sent[i].1 += 1;
            }
            n += 1;
        }
        thread::sleep(Duration::from_micros(2500));
    }
    sent
}

fn total(sent: &[(i32, u64)]) -> u64 {
    sent.iter().map(|s| s.1).sum()
}

#[test]
fn a_storm_of_signals_is_forwarded_and_drains_once() {
    let delay = 1.0;
    let mut sup = start_sigrec(
        &["--drain-delay", &delay.to_string(), "--grace", "30", "-v"],
        &[
            "--ignore-term",
            "--orphans",
            "300",
            "--orphans-sleep",
            "400",
        ],
    );
    wait_for_state(sup.addr, "ready", secs(10.0));
    let pid = sup.init.pid;
    let addr = sup.addr;

    // /readyz is asked throughout; it must always answer (200, then 503
    // once draining).
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let prober = thread::spawn(move || {
        let mut answers = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            let t = Instant::now();
            let r = try_request("GET", addr, "/readyz", &[])
                .unwrap_or_else(|e| panic!("/readyz failed in the storm: {e}"));
            answers.push((r.code, t.elapsed()));
            thread::sleep(Duration::from_millis(20));
        }
        answers
    });

    // Phase one: while the orphans die (and are reaped) in it.
    let length: f64 = std::env::var("HARDENING_STORM_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.2);
    let first = storm(pid, secs(length));
    assert!(
        sup.init.alive(),
        "drainit exited in the storm: {}",
        sup.init.stderr()
    );
    assert_eq!(state_of(addr), "ready");
    // The drain signal, inside the storm.
    let term_at = Instant::now();
    sup.init.signal(libc::SIGTERM);
    let drained = thread::spawn(move || storm(pid, secs(1.6)));
    wait_for_state(addr, "draining", secs(1.0));
    // Half way through the delay the child has not had it.
    thread::sleep(Duration::from_secs_f64(delay / 2.0).saturating_sub(term_at.elapsed()));
    assert!(
        !recorded(&sup.out).contains(&libc::SIGTERM),
        "SIGTERM reached the child before the drain delay"
    );
    let second = drained.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let answers = prober.join().expect("a /readyz probe failed in the storm");

    // Exactly one drain, ended by the delay, and one SIGTERM forwarded.
    wait_for_state(addr, "stopping", secs(5.0));
    let status = status_doc(addr);
    let waited = status["drain"]["waited_seconds"].as_f64().unwrap();
    assert_eq!(status["drains"].as_f64(), Some(1.0), "{status:?}");
    assert_eq!(status["drain"]["reason"].as_str(), Some("SIGTERM"));
    assert!(
        (delay..delay + 0.5).contains(&waited),
        "the drain held SIGTERM for {waited} s (delay {delay} s)"
    );
    assert_eq!(metric(addr, "drainit_drains_total"), Some(1.0));
    let terms = |r: &[i32]| r.iter().filter(|&&s| s == libc::SIGTERM).count();
    wait_for(secs(5.0), "the child to record SIGTERM", || {
        terms(&recorded(&sup.out)) >= 1
    });
    assert_eq!(terms(&recorded(&sup.out)), 1, "SIGTERM forwarded once");
    assert_eq!(
        metric(addr, "drainit_signals_forwarded_total{signal=\"SIGTERM\"}"),
        Some(1.0)
    );

    // Every kind reached the child; SIGCHLD never does (it means "reap").
    let sent: Vec<(i32, u64)> = first
        .iter()
        .zip(&second)
        .map(|(a, b)| (a.0, a.1 + b.1))
        .collect();
    let got = recorded(&sup.out);
    for &(sig, n) in &sent {
        let name = format!("signal {sig}");
        if sig == libc::SIGCHLD {
            assert!(!got.contains(&sig), "SIGCHLD was forwarded");
            continue;
        }
        assert!(n > 0, "no {name} could be sent");
        assert!(got.contains(&sig), "the child never saw {name}");
    }
    // Real-time signals queue: each one sent was forwarded, none lost.
    let forwarded = |name: &str| {
        metric(
            addr,
            &format!("drainit_signals_forwarded_total{{signal=\"{name}\"}}"),
        )
        .unwrap_or(0.0) as u64
    };
    for (sig, name) in [
        (libc::SIGRTMIN(), "SIGRTMIN+0"),
        (libc::SIGRTMIN() + 1, "SIGRTMIN+1"),
        (libc::SIGRTMAX(), "SIGRTMAX-0"),
    ] {
        let n = sent.iter().find(|s| s.0 == sig).unwrap().1;
        assert_eq!(forwarded(name), n, "{name}: sent {n}");
    }
    // It reaped throughout: the 300 orphans died in the first phase.
    assert_eq!(
        metric(addr, "drainit_zombies_reaped_total"),
        Some(300.0),
        "orphans reaped"
    );
    assert!(zombies(&sup.init).is_empty());
    let (codes, slowest) = (
        answers.iter().map(|a| a.0).collect::<Vec<_>>(),
        answers.iter().map(|a| a.1).max().unwrap(),
    );
    assert!(codes.iter().all(|c| *c == 200 || *c == 503), "{codes:?}");
    assert_eq!(codes.first(), Some(&200));
    assert_eq!(codes.last(), Some(&503));
    eprintln!(
        "figures: signal storm: {} signals sent to drainit in {:?} ({} kinds: {sent:?}); \
         {} /readyz answered meanwhile, slowest {slowest:?}; SIGTERM held {waited:.3} s; \
         the child recorded {} signals",
        total(&sent),
        term_at.elapsed() + secs(length),
        sent.len(),
        answers.len(),
        got.len()
    );
    assert!(
        total(&sent) >= 20_000,
        "the storm was too small: {}",
        total(&sent)
    );
    // Still in charge: the child is killed outright, drainit reports it.
    let child = child_host_pid(&sup);
    kill_all(&[child]);
    assert_eq!(sup.init.code(secs(10.0)), 137);
    let log = sup.init.stderr();
    for line in [
        "state ready -> draining: SIGTERM received",
        "state draining -> stopping: drain wait over (drain delay of 1s)",
        "state stopping -> exited: child exited with status 137",
    ] {
        assert_eq!(log.matches(line).count(), 1, "{line:?} once in:\n{log}");
    }
}
