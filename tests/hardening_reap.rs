//! Orphaned zombies in bursts against the real binary (issue 6): every
//! one is reaped, none is left, and drainit's memory stays flat.
//!
//! The child is a shell that runs `sigrec --orphans N --exit 0` BURSTS
//! times: each run forks N intermediates that fork one grandchild each and
//! exit, so N grandchildren are orphaned to drainit (PID 1) and exit at
//! once. The intermediates and the sigrec runs are reaped by their own
//! parents, so drainit's reaped counter must end at exactly BURSTS x N.
//!
//! Sizing: sigrec makes ~5,500 orphans a second here (two forks each, in
//! the debug build), so the default 20 x 5,000 = 100,000 takes ~20 s. Each
//! burst keeps under 2 x N processes alive, far below pid_max (32,768).
//! HARDENING_BURSTS and HARDENING_ORPHANS change it (bench/soak.sh runs
//! a bigger one by hand).
mod common;
mod hardening_common;

use std::time::{Duration, Instant};

use common::*;
use hardening_common::*;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn bursts_of_orphans_are_all_reaped_and_memory_stays_flat() {
    let bursts = knob("HARDENING_BURSTS", 20);
    let orphans = knob("HARDENING_ORPHANS", 5000);
    let files = TempDir::new("reap");
    let (progress, done) = (files.arg("progress"), files.arg("done"));
    let port = free_port();
    let health = format!("127.0.0.1:{port}");
    let addr = health.parse().unwrap();
    // Between bursts the shell waits for the test's go-ahead (a file),
    // so the test can measure drainit at a quiet moment.
    let go = files.arg("go");
    let script = format!(
        "i=0; while [ $i -lt {bursts} ]; do \
           while [ ! -e {go}.$i ]; do sleep 0.01; done; \
           {sigrec} --orphans {orphans} --exit 0 || exit 1; \
           i=$((i+1)); echo $i > {progress}; \
         done; exec {sigrec} --ready {done}",
        sigrec = sigrec_arg()
    );
    let mut init = Init::new(&[
        "--health-addr",
        &health,
        "--drain-delay",
        "0",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .start();
    wait_for_health(addr);
    let pid = init.pid;
    let reaped = || metric(addr, "drainit_zombies_reaped_total").unwrap_or(-1.0) as u64;
    let burst_done = |n: u64| {
        std::fs::read_to_string(files.path("progress"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .is_some_and(|p| p >= n)
    };

    let started = Instant::now();
    let mut rss = Vec::new();
    for i in 0..bursts {
        std::fs::write(format!("{go}.{i}"), "").unwrap();
        wait_for(Duration::from_secs(60), &format!("burst {i}"), || {
            burst_done(i + 1) || !init.alive()
        });
        assert!(
            init.alive(),
            "drainit exited during burst {i}: {}",
            init.stderr()
        );
        // Every orphan of this burst has been reaped before the next.
        wait_for(
            Duration::from_secs(30),
            &format!("the orphans of burst {i} to be reaped"),
            || reaped() >= (i + 1) * orphans,
        );
        rss.push(rss_kib(pid));
    }
    let took = started.elapsed();
    wait_for_file(&files.path("done"), secs(10.0));
    assert_eq!(reaped(), bursts * orphans, "reaped exactly the orphans");
    let left = zombies(&init);
    assert!(left.is_empty(), "zombies left: {left:?}");
    // Flat: after the first burst (allocator warm-up), never more than
    // 256 KiB above it, however many bursts followed.
    let first = rss[0];
    let most = *rss.iter().max().unwrap();
    eprintln!(
        "figures: {} orphaned zombies in {bursts} bursts of {orphans} reaped in {took:?}; \
         drainit RSS after each burst (KiB): {rss:?}",
        bursts * orphans
    );
    assert!(
        most <= first + 256,
        "drainit's RSS grew from {first} to {most} KiB over the bursts: {rss:?}"
    );
    assert_eq!(threads(pid), 2, "drainit's threads");
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(secs(10.0)), 0, "{}", init.stderr());
}
