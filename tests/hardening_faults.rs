//! Faults around the real binary (issue 6): the child dies mid-drain or
//! leaves a daemon behind, stdio goes away, the health handler panics, the
//! health port is taken, /proc is missing or foreign, drainit is not PID 1,
//! stdin's terminal is gone or goes away. In each case drainit exits with
//! the right code, leaves nothing running, and its log says what happened.
mod common;
mod hardening_common;

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hardening_common::*;

fn assert_gone(pids: &[i32], what: &str) {
    for &p in pids {
        wait_for(secs(5.0), &format!("{what} {p} to be gone"), || !running(p));
    }
}

// ---------------------------------------------------------------------------
// The child dies during a drain wait.

/// The child ends on its own (here: SIGINT sent to it directly, which it
/// takes as "exit 3") while drainit holds a SIGTERM for a 30 s drain: the
/// drain ends at once, the held signal is never sent to the dead child,
/// and drainit exits with the child's code.
#[test]
fn child_exits_during_the_drain_wait() {
    let mut sup = start_sigrec(&["--drain-delay", "30", "-v"], &["--term-exit", "3"]);
    wait_for_state(sup.addr, "ready", secs(10.0));
    let child = child_host_pid(&sup);
    sup.init.signal(libc::SIGTERM);
    wait_for_state(sup.addr, "draining", secs(5.0));
    let t = Instant::now();
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(child, libc::SIGINT) }, 0);
    assert_eq!(sup.init.code(secs(10.0)), 3);
    assert!(t.elapsed() < secs(5.0), "drainit waited out the drain");
    let log = sup.init.stderr();
    assert!(
        log.contains("state draining -> exited: child exited with status 3"),
        "{log}"
    );
    assert!(!log.contains("could not forward"), "{log}");
    assert_eq!(
        recorded(&sup.out),
        [libc::SIGINT],
        "the held SIGTERM never went out"
    );
    assert_gone(&[child], "the child");
}

/// The child is SIGKILLed (by the OOM killer, say) mid-drain: exit 137.
#[test]
fn child_killed_mid_drain_exits_137() {
    let mut sup = start_sigrec(&["--drain-delay", "30", "-v"], &[]);
    wait_for_state(sup.addr, "ready", secs(10.0));
    let child = child_host_pid(&sup);
    sup.init.signal(libc::SIGTERM);
    wait_for_state(sup.addr, "draining", secs(5.0));
    kill_all(&[child]);
    assert_eq!(sup.init.code(secs(10.0)), 137);
    let log = sup.init.stderr();
    assert!(
        log.contains("state draining -> exited: child exited with status 137"),
        "{log}"
    );
    assert!(!log.contains("could not forward"), "{log}");
    assert_gone(&[child], "the child");
}

// ---------------------------------------------------------------------------
// The child leaves a daemon behind.

/// The child forks a daemon (setsid, double fork) and exits 4: the daemon,
/// adopted by drainit, gets SIGTERM, and drainit exits 4 once it is gone.
/// One that ignores SIGTERM is killed after min(2 s, --grace).
#[test]
fn daemonized_grandchild_is_terminated() {
    for ignore_term in [false, true] {
        let files = TempDir::new("daemon");
        let daemon = files.arg("daemon");
        let mut sigrec_opts = vec!["--daemon", daemon.as_str(), "--exit", "4"];
        if ignore_term {
            sigrec_opts.push("--daemon-ignore-term");
        }
        let sigrec = sigrec_arg();
        let mut args = vec!["--health-addr", "none", "--grace", "0.5", "--", &sigrec];
        args.extend(&sigrec_opts);
        let mut init = Init::new(&args).start();
        assert_eq!(init.code(secs(10.0)), 4, "{}", init.stderr());
        let log = init.stderr();
        if ignore_term {
            assert!(log.contains("sending SIGTERM to leftover process"), "{log}");
            assert!(log.contains("killing leftover process"), "{log}");
        } else {
            assert!(log.contains("sending SIGTERM to leftover process"), "{log}");
            assert!(!log.contains("killing leftover process"), "{log}");
        }
        // It was drainit that stopped it, with SIGTERM first.
        assert_eq!(recorded(&files.path("daemon")), [libc::SIGTERM], "{log}");
    }
}

// ---------------------------------------------------------------------------
// stdio goes away.

/// The child closes its stdout and stderr: nothing changes for drainit.
#[test]
fn child_closing_its_stdio_changes_nothing() {
    let files = TempDir::new("stdio");
    let (out, ready) = (files.arg("signals"), files.arg("ready"));
    let script = format!(
        "exec >&- 2>&-; exec {} --out {out} --ready {ready}",
        sigrec_arg()
    );
    let port = free_port();
    let health = format!("127.0.0.1:{port}");
    let addr: SocketAddr = health.parse().unwrap();
    let mut init = Init::new(&[
        "--health-addr",
        &health,
        "--drain-delay",
        "0",
        "-v",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .start();
    wait_for_file(&files.path("ready"), secs(10.0));
    wait_for_health(addr);
    send_and_see(&init, libc::SIGUSR1, &files.path("signals"), libc::SIGUSR1);
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(secs(10.0)), 0);
    assert!(init.stderr().contains("child exited with status 0"));
}

/// The host pid of `unshare`'s child (drainit), once it exists.
fn drainit_under(outer: &mut Child) -> i32 {
    let path = format!("/proc/{0}/task/{0}/children", outer.id());
    let mut pid = 0;
    wait_for(secs(10.0), "unshare to start drainit", || {
        pid = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        pid > 0 || outer.try_wait().unwrap().is_some()
    });
    pid
}

/// Waits for `outer` (unshare, which passes drainit's code on).
fn exit_code(outer: &mut Child, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = outer.try_wait().unwrap() {
            return s.code().expect("unshare died by a signal");
        }
        if Instant::now() > deadline {
            let _ = outer.kill();
            let _ = outer.wait();
            panic!("drainit did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills `pid` (drainit, PID 1 of its namespace: the namespace goes with
/// it) and waits for `outer`, when a test fails half way.
struct Reap<'a>(&'a mut Child, i32);

impl Drop for Reap<'_> {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            kill_all(&[self.1]);
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Nobody reads drainit's log any more (the log collector died): writes
/// to stderr fail with EPIPE and raise SIGPIPE in drainit itself. drainit
/// must not die of it, nor pass that SIGPIPE to the child, and it goes on
/// forwarding and exits with the child's code.
#[test]
fn a_dead_log_reader_does_not_kill_drainit() {
    if !require("PID namespaces", can_unshare(), "drainit must run as PID 1") {
        return;
    }
    let files = TempDir::new("epipe");
    let (out, ready) = (files.arg("signals"), files.arg("ready"));
    let port = free_port();
    let health = format!("127.0.0.1:{port}");
    let addr: SocketAddr = health.parse().unwrap();
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors, which are owned right after.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors from pipe2, owned once each.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut outer = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child", DRAINIT])
        .args(["-vv", "--health-addr", &health, "--drain-delay", "0", "--"])
        .args([sigrec_arg().as_str(), "--out", &out, "--ready", &ready])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(writer))
        .spawn()
        .unwrap();
    // The reader goes away: every log line from now on is EPIPE.
    drop(reader);
    let pid = drainit_under(&mut outer);
    let outer = Reap(&mut outer, pid);
    wait_for_file(&files.path("ready"), secs(10.0));
    wait_for_health(addr);
    // Each of these logs a line (debug level) into the broken pipe, from
    // the health thread.
    for _ in 0..20 {
        let got = exchange(addr, b"GARBAGE\r\n\r\n", true, secs(5.0));
        assert_eq!(got.codes(), [400]);
    }
    for _ in 0..3 {
        // SAFETY: kill has no memory preconditions.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0);
        wait_for(secs(5.0), "SIGUSR1 to reach the child", || {
            recorded(&files.path("signals")).contains(&libc::SIGUSR1)
        });
    }
    assert!(running(pid), "drainit died writing to a dead log reader");
    assert_eq!(
        metric(addr, "drainit_signals_forwarded_total{signal=\"SIGPIPE\"}"),
        None,
        "drainit forwarded its own SIGPIPE"
    );
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(exit_code(outer.0, secs(10.0)), 0);
    let got = recorded(&files.path("signals"));
    assert!(
        !got.contains(&libc::SIGPIPE),
        "the child got SIGPIPE: {got:?}"
    );
    assert!(got.contains(&libc::SIGTERM), "{got:?}");
}

// ---------------------------------------------------------------------------
// The health handler panics.

/// GET /debug/panic (debug builds, loopback only) panics inside the
/// handler: that request gets a 500 and a log line; serving, readiness,
/// signals and the exit are unaffected, however often it happens.
#[cfg(debug_assertions)] // the injection path exists in debug builds only
#[test]
fn health_handler_panics_cost_one_request() {
    let mut sup = start_sigrec(&["--drain-delay", "0"], &[]);
    wait_for_state(sup.addr, "ready", secs(10.0));
    for _ in 0..50 {
        let r = request("GET", sup.addr, "/debug/panic", &[]);
        assert_eq!(r.code, 500, "{r:?}");
        assert_eq!(r.body, "{\"error\":\"internal error\"}\n");
    }
    // A keep-alive connection survives its handler's panic.
    let got = exchange(
        sup.addr,
        b"GET /debug/panic HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n\r\n",
        true,
        secs(5.0),
    );
    assert_eq!(got.codes(), [500, 200], "{}", got.text());
    assert_untouched(&mut sup, "50 handler panics");
    assert_eq!(threads(sup.init.pid), 3, "main, health server, log writer");
    send_and_see(&sup.init, libc::SIGUSR1, &sup.out, libc::SIGUSR1);
    let panicked = "the health handler panicked on GET /debug/panic; serving goes on";
    let log = sup
        .init
        .log_when("51 logged panics", |l| l.matches(panicked).count() >= 51);
    assert_eq!(log.matches(panicked).count(), 51, "{log}");
    assert!(
        log.contains("internal error at src/health.rs:")
            && log.contains("panic injected through /debug/panic"),
        "{log}"
    );
    sup.init.signal(libc::SIGTERM);
    assert_eq!(sup.init.code(secs(10.0)), 0);
}

// ---------------------------------------------------------------------------
// The health port cannot be bound.

/// A taken (or foreign) address is a startup error: exit 2, one clear
/// line, and the child is never started.
#[test]
fn unbindable_health_port_exits_2_before_the_child_starts() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for (option, addr, error) in [
        ("--health-addr", taken.as_str(), "Address already in use"),
        (
            "--health-addr",
            "192.0.2.1:8099",
            "Cannot assign requested address",
        ),
        ("--agent-addr", taken.as_str(), "Address already in use"),
    ] {
        let files = TempDir::new("bind");
        let ready = files.arg("ready");
        let sigrec = sigrec_arg();
        let mut args = vec![option, addr];
        if option == "--agent-addr" {
            args.extend(["--health-addr", "none"]);
        }
        args.extend(["--", &sigrec, "--ready", &ready]);
        let mut init = Init::new(&args).start();
        assert_eq!(
            init.code(secs(10.0)),
            2,
            "{option} {addr}: {}",
            init.stderr()
        );
        let what = if option == "--agent-addr" {
            "agent"
        } else {
            "health"
        };
        let log = init.stderr();
        assert!(
            log.contains(&format!(
                "drainit: cannot listen for {what} checks on {addr}"
            )) && log.contains(error),
            "{option} {addr}: {log}"
        );
        assert_eq!(log.lines().count(), 1, "one line: {log}");
        assert!(!files.path("ready").exists(), "the child was started");
    }
}

// ---------------------------------------------------------------------------
// /proc is missing or not this namespace's.

/// Runs drainit as PID 1 of a new PID namespace, started by `how`
/// (a command line that ends by exec'ing drainit with its arguments), with
/// a child that leaves an adopted daemon; checks that signals still go
/// through, that a stop still drains and stops, and that the daemon is
/// cleaned up by the fallback that needs no /proc.
fn supervise_without_own_proc(how: &[&str], what: &str) {
    let files = TempDir::new("noproc");
    let (out, ready, daemon) = (
        files.arg("signals"),
        files.arg("ready"),
        files.arg("daemon"),
    );
    let port = free_port();
    let health = format!("127.0.0.1:{port}");
    let addr: SocketAddr = health.parse().unwrap();
    let mut outer = Command::new(how[0])
        .args(&how[1..])
        .arg(DRAINIT)
        .args(["-v", "--health-addr", &health, "--drain-delay", "0.2", "--"])
        .args([sigrec_arg().as_str(), "--out", &out, "--ready", &ready])
        .args(["--daemon", &daemon])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(files.path("log")).unwrap())
        .spawn()
        .unwrap();
    let pid = drainit_under(&mut outer);
    let outer = Reap(&mut outer, pid);
    let log = || std::fs::read_to_string(files.path("log")).unwrap_or_default();
    wait_for(secs(10.0), "sigrec to be ready", || {
        files.path("ready").exists() || outer.0.try_wait().unwrap().is_some()
    });
    assert!(files.path("ready").exists(), "{what}: {}", log());
    wait_for_health(addr);
    // The child and its daemon, by host pid.
    let supervised: Vec<i32> = descendants_of(pid).into_iter().map(|(p, _)| p).collect();
    assert_eq!(supervised.len(), 2, "{what}: {supervised:?}");
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0);
    wait_for(secs(5.0), "SIGUSR1 to reach the child", || {
        recorded(&files.path("signals")).contains(&libc::SIGUSR1)
    });
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(exit_code(outer.0, secs(15.0)), 0, "{what}: {}", log());
    let log = log();
    assert!(
        log.contains("/proc is not available to list leftover processes; sending SIGTERM to every process in the namespace"),
        "{what}: {log}"
    );
    assert!(
        !log.contains("adopted process"),
        "{what}: processes outside the namespace were taken for adopted ones:\n{log}"
    );
    assert!(log.contains("state draining -> stopping"), "{what}: {log}");
    // The daemon got SIGTERM from the fallback, and the child its one SIGTERM.
    assert_eq!(
        recorded(&files.path("daemon")),
        [libc::SIGTERM],
        "{what}: {log}"
    );
    assert_eq!(
        recorded(&files.path("signals")),
        [libc::SIGUSR1, libc::SIGTERM],
        "{what}"
    );
    assert_gone(&supervised, "the child and the daemon");
}

/// /proc unmounted inside drainit's mount namespace.
#[test]
fn proc_not_mounted() {
    if !require("PID namespaces", can_unshare(), "drainit must run as PID 1") {
        return;
    }
    supervise_without_own_proc(
        &[
            "unshare",
            "--pid",
            "--fork",
            "--mount",
            "--kill-child",
            "sh",
            "-c",
            "umount -l /proc && exec \"$0\" \"$@\"",
        ],
        "/proc unmounted",
    );
}

/// A new PID namespace that still sees the host's /proc (unshare without
/// --mount-proc): every pid in it is someone else's.
#[test]
fn proc_of_another_namespace() {
    if !require("PID namespaces", can_unshare(), "drainit must run as PID 1") {
        return;
    }
    supervise_without_own_proc(
        &["unshare", "--pid", "--fork", "--kill-child"],
        "the host's /proc",
    );
}

// ---------------------------------------------------------------------------
// Not PID 1, not a subreaper; stdin a dead terminal.

/// drainit started as an ordinary process without -s: it says orphans
/// will not be reaped, and otherwise supervises as usual.
#[test]
fn not_pid1_and_not_a_subreaper() {
    let files = TempDir::new("plain");
    let mut init = sigrec_init(&files, &["--health-addr", "none"], &[], &[])
        .no_namespace()
        .start();
    wait_for_file(&files.path("ready"), secs(10.0));
    let child = children_of(init.pid)[0];
    send_and_see(&init, libc::SIGUSR1, &files.path("signals"), libc::SIGUSR1);
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(secs(10.0)), 0);
    assert!(
        init.stderr().contains(
            "not running as PID 1 and not a subreaper (-s): orphaned processes will not be reaped"
        ),
        "{}",
        init.stderr()
    );
    assert_gone(&[child], "the child");
}

/// A pseudo-terminal pair (master, slave), both close-on-exec from the
/// start: a master inherited by any process (other tests fork too) would
/// keep the terminal from ever hanging up.
fn pty() -> (OwnedFd, OwnedFd) {
    // SAFETY: plain syscall wrappers; every descriptor returned is owned
    // right away, and ptsname's buffer is copied before the next call.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        let master = OwnedFd::from_raw_fd(master);
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0);
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0
        );
        let slave = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(
            slave >= 0,
            "open the pty slave: {}",
            std::io::Error::last_os_error()
        );
        (master, OwnedFd::from_raw_fd(slave))
    }
}

/// stdin is a terminal whose other side is gone: (1) already hung up when
/// drainit starts, (2) drainit's controlling terminal (as with `docker run
/// -t`), hung up while it runs: the kernel sends SIGHUP to drainit, and
/// SIGHUP and SIGCONT to the child's group (the terminal's foreground).
/// Either way drainit keeps supervising (SIGHUP is "reload", not "stop"),
/// forwards, and exits with the child's code.
#[test]
fn stdin_is_a_terminal_that_goes_away() {
    for live in [false, true] {
        let (master, slave) = pty();
        let mut master = Some(master);
        if !live {
            master = None;
        }
        let files = TempDir::new("tty");
        let port = free_port();
        let health = format!("127.0.0.1:{port}");
        let addr: SocketAddr = health.parse().unwrap();
        let builder = sigrec_init(
            &files,
            &["-v", "--health-addr", &health, "--drain-delay", "0"],
            &["--term-exit", "5"],
            &[],
        )
        .stdin(Stdio::from(slave));
        // setsid -c: a session of its own with stdin as its controlling
        // terminal, then exec drainit (still PID 1).
        let mut init = if live {
            builder.start_through(&["setsid", "-c"])
        } else {
            builder.start()
        };
        wait_for(secs(10.0), "sigrec to be ready", || {
            files.path("ready").exists() || !init.alive()
        });
        assert!(init.alive(), "{}", init.stderr());
        wait_for_health(addr);
        if live {
            let child = child_host_pid_of(&init, addr);
            let fields = stat_fields(child).unwrap();
            // fields[5] is the terminal's foreground group: the child's own.
            assert_eq!(
                fields[5], fields[2],
                "the child is the terminal's foreground"
            );
            drop(master.take());
            wait_for(secs(5.0), "the hangup to reach the child", || {
                recorded(&files.path("signals")).contains(&libc::SIGHUP)
            });
            assert_eq!(state_of(addr), "ready", "a hangup is not a stop");
            // drainit, the session leader, got the kernel's SIGHUP and
            // passed it on once.
            wait_for(secs(5.0), "drainit to forward the hangup", || {
                metric(addr, "drainit_signals_forwarded_total{signal=\"SIGHUP\"}") == Some(1.0)
            });
        }
        // The forwarded SIGHUP may still be on its way to the child (and
        // merge with the kernel's), so this waits for SIGUSR1 itself rather
        // than for the next record.
        init.signal(libc::SIGUSR1);
        wait_for_signal(&files.path("signals"), libc::SIGUSR1, secs(10.0));
        init.signal(libc::SIGTERM);
        assert_eq!(init.code(secs(10.0)), 5, "{}", init.stderr());
        let log = init.stderr();
        assert!(
            log.contains("state starting -> ready: child started"),
            "{log}"
        );
        assert!(log.contains("child exited with status 5"), "{log}");
    }
}

/// The main child's host pid, from /status.
fn child_host_pid_of(init: &Init, addr: SocketAddr) -> i32 {
    let ns = status_doc(addr)["child_pid"].as_f64().unwrap() as i32;
    host_pid(init, ns).unwrap()
}
