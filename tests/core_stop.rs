//! Stopping: the grace period ends in SIGKILL, adopted daemons are stopped
//! with the child and waited for, and nothing the child started outlives
//! drainit.
//!
//! Tests that must show processes are gone after drainit exits run it as a
//! subreaper without a PID namespace: as PID 1, the kernel would kill the
//! namespace's leftovers itself and hide a missing clean-up.
mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;

/// Kills, when dropped, processes a test found outside drainit's reach
/// (they would otherwise outlive a failed subreaper-mode test).
struct Reap(Vec<i32>);

impl Drop for Reap {
    fn drop(&mut self) {
        kill_all(&self.0);
    }
}

struct Started {
    init: Init,
    dir: TempDir,
    /// sigrec, the main child.
    child: i32,
}

impl Started {
    fn out(&self) -> PathBuf {
        self.dir.path("out")
    }
    fn daemon(&self) -> PathBuf {
        self.dir.path("daemon")
    }
}

/// `drainit OPTS -- sigrec --out OUT --ready READY SIGREC_OPTS`, where
/// "DAEMON" in SIGREC_OPTS stands for the daemon's record file.
fn start(pid1: bool, opts: &[&str], sigrec_opts: &[&str]) -> Started {
    let dir = TempDir::new("stop");
    let (out, ready, daemon) = (dir.arg("out"), dir.arg("ready"), dir.arg("daemon"));
    let s = sigrec_arg();
    let mut args = vec!["--health-addr", "none"];
    if !pid1 {
        args.push("-s");
    }
    args.extend_from_slice(opts);
    args.extend_from_slice(&["--", &s, "--out", &out, "--ready", &ready]);
    args.extend(
        sigrec_opts
            .iter()
            .map(|a| if *a == "DAEMON" { daemon.as_str() } else { a }),
    );
    let builder = Init::new(&args);
    let init = if pid1 {
        builder.start()
    } else {
        builder.no_namespace().start()
    };
    wait_for_file(&dir.path("ready"), secs(10.0));
    let child = *children_of(init.pid)
        .iter()
        .find(|&&p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.contains(&ready))
        })
        .expect("sigrec is drainit's child");
    Started { init, dir, child }
}

fn reaped_with(stderr: &str, status: i32) -> usize {
    stderr
        .lines()
        .filter(|l| {
            l.contains("reaped zombie process") && l.ends_with(&format!("(status {status})"))
        })
        .count()
}

fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn child_ignoring_sigterm_is_killed_when_the_grace_period_ends() {
    let mut s = start(true, &["--grace", "1.5"], &["--ignore-term"]);
    let sent = Instant::now();
    send_and_see(&s.init, libc::SIGTERM, &s.out(), libc::SIGTERM);
    let code = s.init.code(secs(15.0));
    let took = sent.elapsed();
    assert_eq!(code, 137, "log:\n{}", s.init.stderr());
    assert!(
        took >= secs(1.4) && took < secs(8.0),
        "killed after {took:?}, grace 1.5 s; log:\n{}",
        s.init.stderr()
    );
    assert!(
        s.init.stderr().contains("did not exit within"),
        "{}",
        s.init.stderr()
    );
}

/// The child exits on SIGTERM at once but leaves workers behind that never
/// got the stop signal (no -g): they get SIGTERM when the child is gone,
/// not a SIGKILL at the end of a long grace period.
#[test]
fn leftovers_of_a_stopped_child_get_sigterm_promptly() {
    let mut s = start(true, &["-w", "--grace", "30"], &["--sleep-children", "2"]);
    assert_eq!(children_of(s.child).len(), 2);
    s.init.signal(libc::SIGTERM);
    // Well inside the 30 s grace: a clean-up that waits it out fails here.
    assert_eq!(s.init.code(secs(10.0)), 0, "log:\n{}", s.init.stderr());
    let log = s.init.stderr();
    assert_eq!(
        reaped_with(&log, 143),
        2,
        "both died of SIGTERM; log:\n{log}"
    );
}

/// The child exits on its own, leaving workers: they are sent SIGTERM,
/// reaped, and nothing is left when drainit exits.
#[test]
fn leftovers_of_a_child_that_exits_are_terminated_and_reaped() {
    for pid1 in [true, false] {
        let mut s = start(
            pid1,
            &["-w"],
            &["--sleep-children", "3", "--exit-after", "500"],
        );
        let workers = children_of(s.child);
        let _cleanup = Reap(workers.clone());
        assert_eq!(workers.len(), 3);
        assert_eq!(s.init.code(secs(10.0)), 0, "log:\n{}", s.init.stderr());
        let log = s.init.stderr();
        assert_eq!(reaped_with(&log, 143), 3, "pid1 {pid1}; log:\n{log}");
        assert_eq!(
            log.matches("sending SIGTERM to leftover process").count(),
            3,
            "{log}"
        );
        for w in workers {
            assert!(gone(w), "pid1 {pid1}: worker {w} outlived drainit");
        }
    }
}

/// A leftover that ignores SIGTERM is SIGKILLed after a short, bounded
/// wait (2 s, never more than --grace) and reaped before drainit exits.
#[test]
fn leftover_ignoring_sigterm_is_killed_after_a_short_wait() {
    let mut s = start(
        false,
        &["-w"],
        &[
            "--daemon",
            "DAEMON",
            "--daemon-ignore-term",
            "--exit-after",
            "500",
        ],
    );
    let daemon: Vec<i32> = children_of(s.init.pid)
        .into_iter()
        .filter(|&p| p != s.child)
        .collect();
    let _cleanup = Reap(daemon.clone());
    assert_eq!(daemon.len(), 1, "the daemon was adopted by drainit");
    let path = s.daemon();
    wait_for(secs(10.0), "the daemon to get SIGTERM", || {
        recorded(&path).contains(&libc::SIGTERM)
    });
    let termed = Instant::now();
    assert_eq!(s.init.code(secs(10.0)), 0, "log:\n{}", s.init.stderr());
    let took = termed.elapsed();
    assert!(
        took >= secs(1.5) && took < secs(8.0),
        "SIGKILL {took:?} after SIGTERM; log:\n{}",
        s.init.stderr()
    );
    assert_eq!(recorded(&path), [libc::SIGTERM]);
    assert_eq!(reaped_with(&s.init.stderr(), 137), 1, "{}", s.init.stderr());
    assert!(gone(daemon[0]), "the daemon outlived drainit");
}

/// A daemon the child started (reparented to drainit) gets the stop signal
/// while the child is still stopping, not only once it has exited.
#[test]
fn adopted_daemon_gets_the_stop_signal_with_the_child() {
    let mut s = start(
        true,
        &["--grace", "30"],
        &["--ignore-term", "--daemon", "DAEMON"],
    );
    let path = s.daemon();
    send_and_see(&s.init, libc::SIGTERM, &s.out(), libc::SIGTERM);
    wait_for(secs(10.0), "the daemon to get SIGTERM", || {
        recorded(&path) == [libc::SIGTERM]
    });
    assert!(running(s.child), "the child (ignoring SIGTERM) still runs");
    kill_all(&[s.child]);
    assert_eq!(s.init.code(secs(10.0)), 137, "log:\n{}", s.init.stderr());
}

/// ...and drainit waits for it until the grace period ends (then kills it),
/// without sending it the signal twice.
#[test]
fn adopted_daemon_is_waited_for_until_the_grace_period_ends() {
    let mut s = start(
        false,
        &["--grace", "2", "-w"],
        &["--daemon", "DAEMON", "--daemon-ignore-term"],
    );
    let daemon: Vec<i32> = children_of(s.init.pid)
        .into_iter()
        .filter(|&p| p != s.child)
        .collect();
    let _cleanup = Reap(daemon.clone());
    assert_eq!(daemon.len(), 1);
    let sent = Instant::now();
    s.init.signal(libc::SIGTERM);
    assert_eq!(s.init.code(secs(15.0)), 0, "log:\n{}", s.init.stderr());
    let took = sent.elapsed();
    assert!(
        took >= secs(1.9) && took < secs(8.0),
        "drainit exited {took:?} after SIGTERM, grace 2 s; log:\n{}",
        s.init.stderr()
    );
    assert_eq!(
        recorded(&s.daemon()),
        [libc::SIGTERM],
        "exactly one SIGTERM"
    );
    assert_eq!(reaped_with(&s.init.stderr(), 137), 1, "{}", s.init.stderr());
    assert!(gone(daemon[0]), "the daemon outlived drainit");
}

/// --no-wait-adopted (tini's behaviour): no stop signal for daemons; they
/// are SIGKILLed once the child is gone, without waiting for the grace.
#[test]
fn no_wait_adopted_kills_daemons_without_sigterm() {
    for (opt, env) in [
        ("--no-wait-adopted", None),
        ("-w", Some(("DRAINIT_NO_WAIT_ADOPTED", "1"))),
    ] {
        let dir = TempDir::new("nowait");
        let (ready, daemon) = (dir.arg("ready"), dir.arg("daemon"));
        let s = sigrec_arg();
        let args = [
            "-s",
            "--health-addr",
            "none",
            "--grace",
            "30",
            opt,
            "--",
            &s,
            "--ready",
            &ready,
            "--daemon",
            &daemon,
        ];
        let mut b = Init::new(&args).no_namespace();
        if let Some((k, v)) = env {
            b = b.env(k, v);
        }
        let mut init = b.start();
        wait_for_file(&dir.path("ready"), secs(10.0));
        let pids: Vec<i32> = children_of(init.pid);
        let _cleanup = Reap(pids.clone());
        assert_eq!(pids.len(), 2, "sigrec and its daemon");
        init.signal(libc::SIGTERM);
        assert_eq!(
            init.code(secs(10.0)),
            0,
            "{opt} {env:?}; log:\n{}",
            init.stderr()
        );
        assert_eq!(
            recorded(&dir.path("daemon")),
            [] as [i32; 0],
            "{opt} {env:?}"
        );
        assert!(
            init.stderr().contains("killing leftover process"),
            "{}",
            init.stderr()
        );
        for p in pids {
            assert!(gone(p), "{opt} {env:?}: {p} outlived drainit");
        }
    }
}
