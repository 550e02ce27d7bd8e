//! No busy work: while the child runs and nothing happens, drainit does not
//! wake up at all (tini wakes every second), with or without its health
//! server.
mod common;

use std::fs;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use common::*;

/// CPU ticks (utime + stime, all threads), context switches (voluntary and
/// not, summed over every thread) and the thread list.
#[derive(Debug, PartialEq, Eq)]
struct Activity {
    ticks: u64,
    switches: u64,
    threads: Vec<String>,
}

fn activity(pid: i32) -> Activity {
    let f = stat_fields(pid).expect("drainit is running");
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    let mut threads: Vec<String> = fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    threads.sort();
    let mut switches = 0;
    for t in &threads {
        let status = fs::read_to_string(format!("/proc/{pid}/task/{t}/status")).unwrap_or_default();
        for name in ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"] {
            switches += field(&status, name).map_or(0, |v| v.parse::<u64>().unwrap());
        }
    }
    Activity {
        ticks,
        switches,
        threads,
    }
}

fn assert_idle(health: Option<SocketAddr>) {
    let dir = TempDir::new("idle");
    let ready = dir.arg("ready");
    let s = sigrec_arg();
    let addr = health.map_or("none".to_string(), |a| a.to_string());
    // No drain wait on SIGTERM at the end: this test is not about draining.
    let args = [
        "--health-addr",
        &addr,
        "--drain-delay",
        "0",
        "--",
        &s,
        "--ready",
        &ready,
    ];
    let mut init = Init::new(&args).start();
    wait_for_file(&dir.path("ready"), secs(10.0));
    if let Some(a) = health {
        wait_for_health(a);
    }
    // Start-up (and the probe above) may still be finishing: wait until
    // nothing moves for a moment before measuring.
    wait_for(secs(10.0), "drainit to settle", || {
        let before = activity(init.pid);
        thread::sleep(Duration::from_millis(300));
        activity(init.pid) == before
    });
    let before = activity(init.pid);
    // The behaviour under test is a span of time.
    thread::sleep(Duration::from_secs(5));
    let after = activity(init.pid);
    assert!(init.alive(), "drainit exited: {}", init.stderr());
    assert_eq!(
        before, after,
        "health {addr}: drainit woke up or used CPU while idle"
    );
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(secs(10.0)), 0, "log:\n{}", init.stderr());
}

#[test]
fn idle_drainit_never_wakes_up() {
    assert_idle(None);
}

#[test]
fn idle_drainit_with_health_server_never_wakes_up() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    assert_idle(Some(addr));
}
