//! The drain wait: a drain signal fails readiness at once and is held
//! until the proxy has stopped routing; then it reaches the child.
//!
//! Timings are asserted only here, where the behaviour is a timing, and
//! with generous bounds: "not before" bounds are safe because the test
//! starts its clock before drainit can see the signal.
mod common;

use std::time::Instant;

use common::*;

#[test]
fn fixed_delay_fails_readiness_at_once_and_forwards_after_it() {
    let mut sup = start_sigrec(&["--drain-delay", "1"], &["--term-exit", "7"]);
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    assert_eq!(get(addr, "/readyz").0, 200);

    let sent = Instant::now();
    sup.init.signal(libc::SIGTERM);
    // Readiness fails while the child has not seen the signal yet.
    wait_for(secs(5.0), "/readyz to answer 503", || {
        get(addr, "/readyz").0 == 503
    });
    let failed_after = sent.elapsed();
    assert!(
        recorded(&sup.out).is_empty(),
        "the child got SIGTERM before readiness failed ({failed_after:?})"
    );
    assert!(
        failed_after < secs(0.9),
        "readiness failed only after {failed_after:?}, not at once"
    );

    let seen = wait_for_signal(&sup.out, libc::SIGTERM, secs(10.0));
    let held = seen - sent;
    assert!(
        held >= secs(0.9) && held <= secs(5.0),
        "SIGTERM reached the child after {held:?}; expected about 1 s"
    );
    assert_eq!(recorded(&sup.out), vec![libc::SIGTERM]);
    assert_eq!(sup.init.code(secs(10.0)), 7, "{}", sup.init.stderr());
}

#[test]
fn drain_checks_forward_after_the_nth_unready_probe() {
    let mut sup = start_sigrec(
        &[
            "--drain-checks",
            "3",
            "--drain-delay",
            "30",
            "--drain-linger",
            "0.2",
        ],
        &[],
    );
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    // The test plays the proxy, which probes every 0.5 s before the drain
    // (drainit learns of it and waits for it)...
    probe_every(addr, "/readyz", 0.5, 3);
    let sent = Instant::now();
    sup.init.signal(libc::SIGTERM);
    // Watching /status does not count as a readiness probe.
    wait_for_state(addr, "draining", secs(10.0));

    // ...and during it: two failed probes are not enough...
    for n in 1..=2 {
        assert_eq!(get(addr, "/readyz").0, 503, "probe {n}");
    }
    // ...however long the proxy then takes (well past the 0.2 s linger,
    // and within 3 of its intervals, after which it would no longer count).
    std::thread::sleep(secs(1.0));
    assert!(
        recorded(&sup.out).is_empty(),
        "SIGTERM forwarded after only 2 of 3 probes"
    );
    let status = status_doc(addr);
    assert_eq!(status["state"].as_str(), Some("draining"));
    assert_eq!(status["drain"]["probes_answered"].as_f64(), Some(2.0));

    // The third probe: the proxy has seen us fail 3 times.
    let third = Instant::now();
    assert_eq!(get(addr, "/readyz").0, 503, "probe 3");
    let seen = wait_for_signal(&sup.out, libc::SIGTERM, secs(10.0));
    let after_third = seen - third;
    assert!(
        after_third >= secs(0.15),
        "forwarded {after_third:?} after the 3rd probe: no linger"
    );
    assert!(
        seen - sent < secs(10.0),
        "forwarded {:?} after SIGTERM: the checks did not end the 30 s wait",
        seen - sent
    );
    assert_eq!(recorded(&sup.out), vec![libc::SIGTERM]);
    assert_eq!(sup.init.code(secs(10.0)), 0, "{}", sup.init.stderr());
}

#[test]
fn health_path_counts_as_a_readiness_probe() {
    let mut sup = start_sigrec(
        &[
            "--drain-checks",
            "2",
            "--drain-delay",
            "30",
            "--drain-linger",
            "0.5",
        ],
        &[],
    );
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    probe_every(addr, "/health", 0.5, 3);
    sup.init.signal(libc::SIGTERM);
    wait_for_state(addr, "draining", secs(10.0));
    // (The linger lets the answer to the last probe out before the child,
    // and so drainit, exits.) Neither liveness nor the full check is a routing probe.
    for path in ["/livez", "/healthz", "/status", "/metrics"] {
        get(addr, path);
    }
    assert_eq!(get(addr, "/health").0, 503);
    assert_eq!(
        status_doc(addr)["drain"]["probes_answered"].as_f64(),
        Some(1.0)
    );
    let last = Instant::now();
    assert_eq!(get(addr, "/health").0, 503);
    let seen = wait_for_signal(&sup.out, libc::SIGTERM, secs(10.0));
    assert!(
        seen - last < secs(5.0),
        "the checks ended the wait, not its timeout"
    );
    assert_eq!(sup.init.code(secs(10.0)), 0, "{}", sup.init.stderr());
}

#[test]
fn second_drain_signal_forwards_at_once() {
    let mut sup = start_sigrec(&["--drain-delay", "30"], &[]);
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    sup.init.signal(libc::SIGTERM);
    wait_for_state(addr, "draining", secs(10.0));
    assert!(recorded(&sup.out).is_empty(), "SIGTERM must be held");

    let second = Instant::now();
    sup.init.signal(libc::SIGTERM);
    let seen = wait_for_signal(&sup.out, libc::SIGTERM, secs(10.0));
    assert!(
        seen - second < secs(5.0),
        "the second SIGTERM did not cut the 30 s wait short"
    );
    // The held signal is forwarded once, not once per signal received.
    assert_eq!(sup.init.code(secs(10.0)), 0, "{}", sup.init.stderr());
    assert_eq!(recorded(&sup.out), vec![libc::SIGTERM]);
}

#[test]
fn other_signals_pass_during_the_wait() {
    let mut sup = start_sigrec(&["--drain-delay", "30"], &[]);
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    sup.init.signal(libc::SIGTERM);
    wait_for_state(addr, "draining", secs(10.0));
    // SIGUSR1 is forwarded as usual, SIGINT too, and SIGINT ends the drain.
    sup.init.signal(libc::SIGUSR1);
    wait_for_signal(&sup.out, libc::SIGUSR1, secs(10.0));
    assert_eq!(state_of(addr), "draining");
    sup.init.signal(libc::SIGINT);
    wait_for_signal(&sup.out, libc::SIGINT, secs(10.0));
    assert_eq!(sup.init.code(secs(10.0)), 0, "{}", sup.init.stderr());
    assert_eq!(recorded(&sup.out), vec![libc::SIGUSR1, libc::SIGINT]);
}

#[test]
fn drain_timeout_caps_the_wait() {
    let mut sup = start_sigrec(
        &[
            "--drain-delay",
            "30",
            "--drain-checks",
            "100",
            "--drain-timeout",
            "1",
        ],
        &[],
    );
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    let sent = Instant::now();
    sup.init.signal(libc::SIGTERM);
    let seen = wait_for_signal(&sup.out, libc::SIGTERM, secs(10.0));
    let held = seen - sent;
    assert!(
        held >= secs(0.9) && held <= secs(5.0),
        "SIGTERM reached the child after {held:?}; expected the 1 s timeout"
    );
    assert_eq!(sup.init.code(secs(10.0)), 0, "{}", sup.init.stderr());
}

#[test]
fn child_exiting_during_the_wait_ends_it_at_once() {
    let files = TempDir::new("exit-on-own");
    let go = files.arg("go");
    let term = files.arg("term");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let addr_arg = addr.to_string();
    // A child that exits 7 on its own when told to (by a file, not a signal)
    // and notes any SIGTERM it gets.
    let script = format!(
        "trap 'echo TERM >> {term}' TERM; while [ ! -e {go} ]; do sleep 0.05; done; exit 7"
    );
    let mut init = Init::new(&[
        "--health-addr",
        &addr_arg,
        "--drain-delay",
        "30",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .start();
    wait_for_health(addr);
    wait_for_state(addr, "ready", secs(10.0));
    init.signal(libc::SIGTERM);
    wait_for_state(addr, "draining", secs(10.0));

    let told = Instant::now();
    std::fs::write(files.path("go"), "").unwrap();
    assert_eq!(init.code(secs(10.0)), 7, "{}", init.stderr());
    assert!(
        told.elapsed() < secs(5.0),
        "drainit waited {:?} for a child that was gone",
        told.elapsed()
    );
    assert!(
        !files.path("term").exists(),
        "the held SIGTERM reached the child"
    );
}

#[test]
fn drain_signal_while_not_ready_is_forwarded_at_once() {
    let files = TempDir::new("never-ready");
    let flag = files.arg("never");
    let mut sup = start_sigrec(&["--drain-delay", "30", "--ready-file", &flag], &[]);
    assert_eq!(state_of(sup.addr), "starting");
    let sent = Instant::now();
    sup.init.signal(libc::SIGTERM);
    let seen = wait_for_signal(&sup.out, libc::SIGTERM, secs(10.0));
    assert!(
        seen - sent < secs(5.0),
        "nothing routes to a starting container; there is nothing to drain"
    );
    assert_eq!(sup.init.code(secs(10.0)), 0, "{}", sup.init.stderr());
}

#[test]
fn drain_on_chooses_the_drain_signal() {
    // With --drain-on QUIT, SIGTERM is no longer held...
    let mut sup = start_sigrec(&["--drain-on", "QUIT", "--drain-delay", "30"], &[]);
    wait_for_state(sup.addr, "ready", secs(10.0));
    let sent = Instant::now();
    sup.init.signal(libc::SIGTERM);
    let seen = wait_for_signal(&sup.out, libc::SIGTERM, secs(10.0));
    assert!(seen - sent < secs(5.0), "SIGTERM was held");
    assert_eq!(sup.init.code(secs(10.0)), 0, "{}", sup.init.stderr());

    // ...and SIGQUIT is.
    let sup = start_sigrec(
        &["--drain-on", "QUIT", "--drain-delay", "30"],
        &["--ignore-term"],
    );
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    sup.init.signal(libc::SIGQUIT);
    wait_for_state(addr, "draining", secs(10.0));
    assert_eq!(get(addr, "/readyz").0, 503);
    sup.init.signal(libc::SIGUSR2);
    wait_for_signal(&sup.out, libc::SIGUSR2, secs(10.0));
    assert_eq!(recorded(&sup.out), vec![libc::SIGUSR2], "SIGQUIT is held");
    sup.init.signal(libc::SIGQUIT);
    wait_for_signal(&sup.out, libc::SIGQUIT, secs(10.0));
    wait_for_state(addr, "stopping", secs(10.0));
}

#[test]
fn held_signal_is_rewritten_when_forwarded() {
    let mut sup = start_sigrec(&["--rewrite", "TERM:QUIT", "--drain-delay", "0.5"], &[]);
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    let sent = Instant::now();
    sup.init.signal(libc::SIGTERM);
    wait_for_state(addr, "draining", secs(10.0));
    assert_eq!(get(addr, "/readyz").0, 503);
    let seen = wait_for_signal(&sup.out, libc::SIGQUIT, secs(10.0));
    assert!(
        seen - sent >= secs(0.4),
        "SIGQUIT came after {:?}",
        seen - sent
    );
    assert_eq!(sup.init.code(secs(10.0)), 0, "{}", sup.init.stderr());
    assert_eq!(recorded(&sup.out), vec![libc::SIGQUIT]);
}

#[test]
fn drain_signal_rewritten_to_zero_is_dropped() {
    // `--rewrite TERM:0` drops SIGTERM. It must not drain and then, with
    // nothing forwarded, SIGKILL the child when the grace period is over.
    let mut sup = start_sigrec(
        &[
            "--rewrite",
            "TERM:0",
            "--drain-delay",
            "0.3",
            "--grace",
            "0.5",
        ],
        &[],
    );
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    sup.init.signal(libc::SIGTERM);
    // Well past drain delay + grace.
    std::thread::sleep(secs(1.5));
    assert!(sup.init.alive(), "drainit ended: {}", sup.init.stderr());
    assert_eq!(state_of(addr), "ready", "{}", sup.init.stderr());
    assert_eq!(get(addr, "/readyz").0, 200);
    assert!(recorded(&sup.out).is_empty());
    sup.init.signal(libc::SIGINT);
    wait_for_signal(&sup.out, libc::SIGINT, secs(10.0));
    assert_eq!(sup.init.code(secs(10.0)), 0, "{}", sup.init.stderr());
}

#[test]
fn drain_plus_grace_over_the_stop_budget_is_warned_about() {
    let budget = "exceeds the stop timeout";
    for (opts, warned) in [
        // The default 3 s drain (and no grace) fits docker stop's 10 s.
        (vec![], false),
        (vec!["--drain-delay", "12"], true),
        (vec!["--drain-delay", "3", "--grace", "9"], true),
        (vec!["--drain-delay", "12", "--stop-timeout", "30"], false),
        (vec!["--drain-delay", "12", "--drain-timeout", "2"], false),
    ] {
        let sup = start_sigrec(&opts, &[]);
        // The warning is written before the child starts.
        let log = sup.init.stderr();
        assert_eq!(log.contains(budget), warned, "{opts:?}: {log}");
    }
}

/// Plays a load balancer's health check: `n` probes of `path`, `every`
/// seconds apart, answered 200.
fn probe_every(addr: std::net::SocketAddr, path: &str, every: f64, n: u32) {
    for k in 0..n {
        if k > 0 {
            std::thread::sleep(secs(every));
        }
        assert_eq!(get(addr, path).0, 200, "{path} before the drain");
    }
}
