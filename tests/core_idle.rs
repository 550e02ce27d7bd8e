//! No busy work: while the child runs and nothing happens, drainit does not
//! wake up at all (tini wakes every second), with or without its health
//! server, and an idle keep-alive client does not change that.
mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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
    settle(&init);
    let (before, after) = five_seconds(&mut init);
    assert_eq!(
        before, after,
        "health {addr}: drainit woke up or used CPU while idle"
    );
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(secs(10.0)), 0, "log:\n{}", init.stderr());
}

/// Waits until start-up (and the probes of it) are over: nothing moves
/// for a moment.
fn settle(init: &Init) {
    wait_for(secs(10.0), "drainit to settle", || {
        let before = activity(init.pid);
        thread::sleep(Duration::from_millis(300));
        activity(init.pid) == before
    });
}

/// drainit's activity before and after 5 s.
fn five_seconds(init: &mut Init) -> (Activity, Activity) {
    let before = activity(init.pid);
    // The behaviour under test is a span of time.
    thread::sleep(Duration::from_secs(5));
    let after = activity(init.pid);
    assert!(init.alive(), "drainit exited: {}", init.stderr());
    (before, after)
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

/// Prometheus keeps its scrape connection open between scrapes: that costs
/// at most the one wake-up of the connection's idle timeout (15 s), never
/// a periodic sweep (which woke drainit 4 times a second). The bound of 2
/// leaves room for the health thread going back to sleep after its answer.
#[test]
fn an_idle_keep_alive_client_does_not_wake_drainit() {
    let mut sup = start_sigrec(&["--drain-delay", "0"], &[]);
    settle(&sup.init);
    let mut client = TcpStream::connect(sup.addr).unwrap();
    client
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    client.set_read_timeout(Some(secs(5.0))).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !(answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}\n")) {
        let n = client.read(&mut buf).expect("the answer to /readyz");
        assert!(n > 0, "drainit closed the keep-alive connection");
        answer.extend_from_slice(&buf[..n]);
    }
    let (before, after) = five_seconds(&mut sup.init);
    let woke = after.switches - before.switches;
    eprintln!("figures: one idle keep-alive client: {woke} wake-ups of drainit in 5 s");
    assert!(
        woke <= 2,
        "drainit woke {woke} times in 5 s with one idle keep-alive client"
    );
    // Still open: the connection was idle, not closed.
    client.set_nonblocking(true).unwrap();
    let still_open =
        matches!(client.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(still_open, "the keep-alive connection was closed");
    sup.init.signal(libc::SIGTERM);
    assert_eq!(sup.init.code(secs(10.0)), 0, "log:\n{}", sup.init.stderr());
}
