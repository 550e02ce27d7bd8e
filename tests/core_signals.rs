//! Signal forwarding, as PID 1: every catchable signal sent to drainit
//! reaches the child (the kernel drops signals to PID 1 that it neither
//! blocks nor handles, so this is where an init goes wrong), `-g` signals
//! the whole group, and `-r` rewrites or drops.
mod common;

use std::path::PathBuf;

use common::*;

/// sigrec under drainit (no health server, so no drain holds SIGTERM
/// back), started and ready to record into `out`.
struct Rec {
    init: Init,
    out: PathBuf,
    child: i32,
    _dir: TempDir,
}

fn start(opts: &[&str], env: &[(&str, &str)], sigrec_opts: &[&str]) -> Rec {
    start_in(&["--health-addr", "none"], opts, env, sigrec_opts)
}

/// As [`start`], with `mode` (see [`Mode`]) instead of no health server.
fn start_in(mode: &[&str], opts: &[&str], env: &[(&str, &str)], sigrec_opts: &[&str]) -> Rec {
    let dir = TempDir::new("sig");
    let (out, ready) = (dir.arg("out"), dir.arg("ready"));
    let s = sigrec_arg();
    let mut args = mode.to_vec();
    args.extend_from_slice(opts);
    args.extend_from_slice(&["--", &s, "--out", &out, "--ready", &ready]);
    args.extend_from_slice(sigrec_opts);
    let mut builder = Init::new(&args);
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    let init = builder.start();
    wait_for_file(&dir.path("ready"), secs(10.0));
    let children = children_of(init.pid);
    assert_eq!(children.len(), 1, "drainit's children: {children:?}");
    Rec {
        child: children[0],
        out: dir.path("out"),
        init,
        _dir: dir,
    }
}

/// Bit `sig` of a /proc status signal-set line (hex).
fn has_bit(status: &str, line: &str, sig: i32) -> bool {
    let mask = u64::from_str_radix(field(status, line).unwrap(), 16).unwrap();
    mask & (1 << (sig - 1)) != 0
}

/// Whether `pid` has `sig` (or the SIGKILL a fatal signal turns into)
/// pending, or is exiting.
fn hit_by(pid: i32, sig: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    !running(pid)
        || [sig, libc::SIGKILL]
            .iter()
            .any(|&s| has_bit(&status, "SigPnd", s) || has_bit(&status, "ShdPnd", s))
}

#[test]
fn every_catchable_signal_reaches_the_child() {
    in_every_mode(every_catchable_signal_reaches_the_child_in);
}

fn every_catchable_signal_reaches_the_child_in(mode: Mode) {
    let rt = libc::SIGRTMIN();
    let max = libc::SIGRTMAX();
    // The terminating ones last: they start the grace period (long here).
    let signals = [
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGPIPE,
        libc::SIGALRM,
        libc::SIGSTKFLT,
        libc::SIGCONT,
        libc::SIGURG,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGWINCH,
        libc::SIGIO,
        libc::SIGPWR,
        rt,
        rt + 1,
        rt + 10,
        max - 1,
        max,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
    ];
    let mode_args = mode.args();
    let mode_args: Vec<&str> = mode_args.iter().map(String::as_str).collect();
    let mut rec = start_in(&mode_args, &["--grace", "60"], &[], &["--ignore-term"]);
    if !rec.init.as_pid1 {
        eprintln!("NOTE: not PID 1 here, so the kernel's PID-1 signal rules are not exercised");
    }
    // One at a time: the same standard signal sent twice before delivery
    // would merge, and each must be seen to arrive on its own.
    for sig in signals {
        send_and_see(&rec.init, sig, &rec.out, sig);
    }
    assert_eq!(recorded(&rec.out), signals, "each exactly once");
    kill_all(&[rec.child]);
    assert_eq!(
        rec.init.code(secs(10.0)),
        137,
        "log:\n{}",
        rec.init.stderr()
    );
}

/// tini swallows SIGTTIN/SIGTTOU; without a terminal they are plain
/// signals the app may want (and SIGTSTP is how `docker pause`-like tools
/// and shells ask it to stop).
#[test]
fn job_control_signals_are_forwarded_without_a_tty() {
    let mut rec = start(&[], &[], &[]);
    for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
        send_and_see(&rec.init, sig, &rec.out, sig);
    }
    // The child caught them and still runs: SIGTERM ends it normally.
    send_and_see(&rec.init, libc::SIGTERM, &rec.out, libc::SIGTERM);
    assert_eq!(rec.init.code(secs(10.0)), 0, "log:\n{}", rec.init.stderr());
}

/// With -g (or tini's env, or drainit's), a forwarded signal reaches the
/// child's group: the sleepers, with default dispositions, die of SIGUSR1.
#[test]
fn process_group_mode_signals_the_whole_group() {
    for (opts, env) in [
        (vec!["-g"], vec![]),
        (vec!["--process-group"], vec![]),
        (vec![], vec![("TINI_KILL_PROCESS_GROUP", "1")]),
        (vec![], vec![("DRAINIT_PROCESS_GROUP", "yes")]),
    ] {
        let mut rec = start(&opts, &env, &["--sleep-children", "3"]);
        let sleepers = children_of(rec.child);
        assert_eq!(sleepers.len(), 3, "{opts:?} {env:?}: sleepers {sleepers:?}");
        assert!(sleepers.iter().all(|&p| running(p)));
        send_and_see(&rec.init, libc::SIGUSR1, &rec.out, libc::SIGUSR1);
        wait_for(
            secs(10.0),
            &format!("{opts:?} {env:?}: the sleepers to die of SIGUSR1"),
            || sleepers.iter().all(|&p| !running(p)),
        );
        rec.init.signal(libc::SIGTERM);
        assert_eq!(rec.init.code(secs(10.0)), 0, "log:\n{}", rec.init.stderr());
    }
}

/// Without -g only the child itself is signalled.
#[test]
fn without_process_group_mode_only_the_child_is_signalled() {
    let mut rec = start(&[], &[], &["--sleep-children", "2"]);
    let sleepers = children_of(rec.child);
    assert_eq!(sleepers.len(), 2, "sleepers {sleepers:?}");
    send_and_see(&rec.init, libc::SIGUSR1, &rec.out, libc::SIGUSR1);
    // Once a later signal arrived, the kill() that carried SIGUSR1 has
    // long returned: had it gone to the group, it would be pending (as
    // itself or as the SIGKILL a fatal signal becomes) or done its work.
    send_and_see(&rec.init, libc::SIGUSR2, &rec.out, libc::SIGUSR2);
    for &p in &sleepers {
        assert!(!hit_by(p, libc::SIGUSR1), "sleeper {p} got SIGUSR1");
    }
    rec.init.signal(libc::SIGTERM);
    assert_eq!(rec.init.code(secs(10.0)), 0, "log:\n{}", rec.init.stderr());
}

#[test]
fn rewrite_maps_signals_by_name_or_number() {
    let opts = [
        "-r",
        "TERM:USR1",
        "--rewrite",
        "1:12",
        "-r",
        "SIGWINCH:rtmin+2",
    ];
    let mut rec = start(&opts, &[], &[]);
    send_and_see(&rec.init, libc::SIGTERM, &rec.out, libc::SIGUSR1);
    send_and_see(&rec.init, libc::SIGHUP, &rec.out, libc::SIGUSR2);
    send_and_see(&rec.init, libc::SIGWINCH, &rec.out, libc::SIGRTMIN() + 2);
    // Not rewritten: passes as it is (and ends sigrec).
    send_and_see(&rec.init, libc::SIGINT, &rec.out, libc::SIGINT);
    assert_eq!(rec.init.code(secs(10.0)), 0, "log:\n{}", rec.init.stderr());
}

/// A stop signal is rewritten once: swapped, TERM arrives as INT (and
/// ends sigrec), not rewritten back to TERM on its way to the stop.
#[test]
fn swapped_stop_signals_stay_swapped() {
    let mut rec = start(&["-r", "TERM:INT", "-r", "INT:TERM"], &[], &[]);
    send_and_see(&rec.init, libc::SIGTERM, &rec.out, libc::SIGINT);
    assert_eq!(rec.init.code(secs(10.0)), 0, "log:\n{}", rec.init.stderr());
}

#[test]
fn rewrite_from_the_environment() {
    let env = [("DRAINIT_REWRITE", "TERM:USR1, HUP:USR2")];
    let mut rec = start(&[], &env, &[]);
    send_and_see(&rec.init, libc::SIGTERM, &rec.out, libc::SIGUSR1);
    send_and_see(&rec.init, libc::SIGHUP, &rec.out, libc::SIGUSR2);
    send_and_see(&rec.init, libc::SIGINT, &rec.out, libc::SIGINT);
    assert_eq!(rec.init.code(secs(10.0)), 0, "log:\n{}", rec.init.stderr());
}

/// `-r SIG:0` drops SIG. The marker (SIGUSR2) is sent after SIGUSR1 and
/// has a higher number, so a forwarded SIGUSR1 would be recorded first.
#[test]
fn rewrite_to_zero_drops_the_signal() {
    let mut rec = start(&["-r", "USR1:0"], &[], &[]);
    rec.init.signal(libc::SIGUSR1);
    send_and_see(&rec.init, libc::SIGUSR2, &rec.out, libc::SIGUSR2);
    assert_eq!(recorded(&rec.out), [libc::SIGUSR2]);
    send_and_see(&rec.init, libc::SIGTERM, &rec.out, libc::SIGTERM);
    assert_eq!(rec.init.code(secs(10.0)), 0, "log:\n{}", rec.init.stderr());
}

/// Signals 32 up to SIGRTMIN belong to the C library (32-33 glibc's, as
/// for the build under test; 32-34 musl's, the static release's). Sent to
/// drainit they must neither kill it (musl's own sigprocmask would not
/// block them: kill -34 killed the static build and orphaned its child)
/// nor reach the child. 34 is an ordinary signal for glibc and forwarded.
#[test]
fn c_library_signals_neither_kill_drainit_nor_reach_the_child() {
    let release = release(&[std::env::consts::ARCH], "signals-dist");
    let Some(dist) = released(&release) else {
        return;
    };
    let static_build = release_binary(dist, std::env::consts::ARCH);
    let static_build = static_build.to_string_lossy();
    // A real-time signal sent after them: pending real-time signals are
    // delivered lowest first, so anything forwarded before it is recorded
    // before it.
    let marker = 40;
    for (program, forwarded) in [(DRAINIT, vec![34, marker]), (&static_build, vec![marker])] {
        let dir = TempDir::new("libc-signals");
        let (out, ready) = (dir.arg("out"), dir.arg("ready"));
        let s = sigrec_arg();
        let args = [
            "-s",
            "--health-addr",
            "none",
            "--",
            &s,
            "--out",
            &out,
            "--ready",
            &ready,
        ];
        let mut init = Init::new(&args).program(&[program]).no_namespace().start();
        wait_for_file(&dir.path("ready"), secs(10.0));
        for sig in [32, 33, 34, marker] {
            init.signal(sig);
        }
        wait_for_signal(&dir.path("out"), marker, secs(10.0));
        assert!(init.alive(), "{program}: {}", init.stderr());
        assert_eq!(recorded(&dir.path("out")), forwarded, "{program}");
        init.signal(libc::SIGTERM);
        assert_eq!(init.code(secs(10.0)), 0, "{program}: {}", init.stderr());
    }
}
