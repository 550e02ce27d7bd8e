//! drainit as a drop-in for tini and dumb-init: defaults that never cut a
//! shutdown short, fault signals sent with kill(2) forwarded, a subreaper
//! set up by the parent respected, dumb-init's name, flags and environment,
//! and a taken port explained.
mod common;

use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Instant;

use common::*;

fn pid1() -> bool {
    require("PID namespaces", can_unshare(), "drainit must run as PID 1")
}

/// Core dumps of the deliberately crashed processes would litter the disk.
const NO_CORE: &[&str] = &["prlimit", "--core=0", "--"];

/// sigrec under drainit (health endpoint off, so nothing drains) that takes
/// `delay_ms` to exit after SIGTERM; returns drainit's exit code and how
/// long after SIGTERM it came.
fn stop_slow_child(opts: &[&str], delay_ms: &str) -> (i32, std::time::Duration) {
    let files = TempDir::new("slow");
    let mut args = vec!["--health-addr", "none"];
    args.extend_from_slice(opts);
    let mut init = sigrec_init(&files, &args, &["--term-delay", delay_ms], &[]).start();
    wait_for_file(&files.path("ready"), secs(10.0));
    let sent = Instant::now();
    init.signal(libc::SIGTERM);
    let code = init.code(secs(40.0));
    (code, sent.elapsed())
}

#[test]
fn a_slow_shutdown_is_not_cut_short_by_default() {
    if !pid1() {
        return;
    }
    let (code, took) = stop_slow_child(&[], "12000");
    assert_eq!(code, 0, "the child was killed after {took:?}");
    assert!(took >= secs(12.0), "exited after {took:?}");
}

#[test]
fn an_explicit_grace_still_kills() {
    if !pid1() {
        return;
    }
    let (code, took) = stop_slow_child(&["--grace", "1"], "12000");
    assert_eq!(code, 137, "SIGKILL after the grace period");
    assert!(
        took >= secs(0.9) && took < secs(5.0),
        "killed after {took:?}"
    );
}

/// `docker kill -s ABRT` and friends: the child gets them, drainit lives on
/// and exits with the status they gave the child.
#[test]
fn fault_signals_sent_with_kill_reach_the_child() {
    if !pid1() {
        return;
    }
    for (sig, code) in [
        (libc::SIGABRT, 134),
        (libc::SIGSEGV, 139),
        (libc::SIGBUS, 135),
    ] {
        let mut init =
            Init::new(&["--health-addr", "none", "--", "sleep", "100"]).start_through(NO_CORE);
        wait_for(secs(10.0), "the child to run", || {
            init.descendants().iter().any(|&(p, _)| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c == "sleep\n")
            })
        });
        init.signal(sig);
        let status = init.wait(secs(10.0));
        assert_eq!(
            status.code(),
            Some(code),
            "signal {sig}: {status:?}; log:\n{}",
            init.stderr()
        );
    }
}

/// A real fault inside drainit is not mistaken for one sent to forward:
/// the kernel forces it through the blocked mask and drainit dies of it.
#[test]
fn a_real_fault_in_drainit_still_ends_it() {
    if !pid1() {
        return;
    }
    let files = TempDir::new("fault");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let health = addr.to_string();
    let mut init =
        sigrec_init(&files, &["--health-addr", &health], &[], &[]).start_through(NO_CORE);
    wait_for_health(addr);
    let _ = try_request("GET", addr, "/debug/fault", &[]);
    let status = init.wait(secs(10.0));
    // unshare dies of the signal that killed drainit.
    assert_eq!(status.signal(), Some(libc::SIGILL), "{status:?}");
}

#[test]
fn no_subreaper_warning_when_the_parent_made_drainit_one() {
    if !require(
        "python3",
        has_python(),
        "it sets the subreaper flag before exec",
    ) {
        return;
    }
    // PR_SET_CHILD_SUBREAPER is 36; the flag survives execve.
    let set_subreaper = [
        "python3",
        "-c",
        "import ctypes, os, sys\n\
         if ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) != 0: sys.exit('prctl failed')\n\
         os.execv(sys.argv[1], sys.argv[1:])",
    ];
    let args = ["--health-addr", "none", "--", "true"];
    let mut init = Init::new(&args)
        .no_namespace()
        .start_through(&set_subreaper);
    assert_eq!(init.code(secs(10.0)), 0, "{}", init.stderr());
    assert!(!init.stderr().contains("subreaper"), "{}", init.stderr());
    // Without it, drainit says that orphans will not be reaped.
    let mut init = Init::new(&args).no_namespace().start();
    assert_eq!(init.code(secs(10.0)), 0);
    assert!(
        init.stderr().contains("not a subreaper"),
        "{}",
        init.stderr()
    );
}

fn has_python() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `sh -c 'sigrec A & exec sigrec B'` under drainit started as `binary`:
/// a shell's background job A beside the foreground child B, both
/// recording and ignoring SIGTERM. Sends SIGTERM to drainit, waits until B
/// has it, then sends A a marker of its own (a real-time signal, which is
/// delivered after any pending standard one). Returns whether A had the
/// SIGTERM too, and whether B leads a session of its own.
fn background_job_sees_the_stop(
    binary: &Path,
    opts: &[&str],
    env: &[(&str, &str)],
) -> (bool, bool) {
    let files = TempDir::new("job");
    let sigrec = sigrec_arg();
    let (a_out, a_ready) = (files.arg("a"), files.arg("a-ready"));
    let (b_out, b_ready, b_status) = (files.arg("b"), files.arg("b-ready"), files.arg("b-status"));
    let script = "\"$0\" --ignore-term --out \"$1\" --ready \"$2\" & \
                  exec \"$0\" --ignore-term --out \"$3\" --ready \"$4\" --status \"$5\"";
    let mut args = vec!["--health-addr", "none"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[
        "--", "sh", "-c", script, &sigrec, &a_out, &a_ready, &b_out, &b_ready, &b_status,
    ]);
    let binary = binary.to_string_lossy();
    let mut builder = Init::new(&args).program(&[&binary]);
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    let init = builder.start();
    for ready in ["a-ready", "b-ready"] {
        wait_for_file(&files.path(ready), secs(10.0));
    }
    let job = init
        .descendants()
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&a_out))
        })
        .expect("the background job runs");
    init.signal(libc::SIGTERM);
    wait_for_signal(&files.path("b"), libc::SIGTERM, secs(10.0));
    let marker = libc::SIGRTMIN() + 1;
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(job, marker) }, 0);
    wait_for_signal(&files.path("a"), marker, secs(10.0));
    let status = std::fs::read_to_string(files.path("b-status")).unwrap();
    let own_session = field(&status, "sid") == field(&status, "pid");
    (
        recorded(&files.path("a")).contains(&libc::SIGTERM),
        own_session,
    )
}

#[test]
fn under_the_name_dumb_init_it_runs_as_dumb_init_does() {
    if !pid1() {
        return;
    }
    let dir = TempDir::new("names");
    let dumb_init = dir.path("dumb-init");
    std::os::unix::fs::symlink(DRAINIT, &dumb_init).unwrap();
    let drainit = Path::new(DRAINIT);
    // (started as, options, environment, (job got SIGTERM, child leads a session))
    type Case<'a> = (
        &'a Path,
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        (bool, bool),
    );
    let cases: [Case; 5] = [
        (dumb_init.as_path(), &[], &[], (true, true)),
        (dumb_init.as_path(), &["-c"], &[], (false, false)),
        (
            &dumb_init,
            &[],
            &[("DUMB_INIT_SETSID", "0")],
            (false, false),
        ),
        (drainit, &["--setsid"], &[], (true, true)),
        (drainit, &[], &[], (false, false)),
    ];
    for (binary, opts, env, want) in cases {
        assert_eq!(
            background_job_sees_the_stop(binary, opts, env),
            want,
            "{} {opts:?} {env:?}: (job got SIGTERM, child leads a session)",
            binary.display()
        );
    }
}

#[test]
fn a_taken_port_names_its_holder_and_the_way_out() {
    let holder = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = TempDir::new("taken");
    let marker = dir.arg("child-ran");
    let health = format!("127.0.0.1:{port}");
    let ran = run_drainit(
        &["-s", "--health-addr", &health, "--", "touch", &marker],
        &[],
        secs(10.0),
    );
    assert_eq!(ran.code, 2, "{ran:?}");
    assert_eq!(ran.stderr.lines().count(), 1, "{ran:?}");
    let me = format!("pid {} (", std::process::id());
    for want in [me.as_str(), "--health-addr :PORT", "--health-addr none"] {
        assert!(ran.stderr.contains(want), "lacks {want:?}: {}", ran.stderr);
    }
    assert!(!dir.path("child-ran").exists());
}

#[test]
fn license_and_version_as_tini_and_dumb_init_print_them() {
    let ran = run_drainit(&["-l"], &[], secs(10.0));
    assert_eq!(ran.code, 0);
    assert_eq!(ran.stdout, include_str!("../LICENSE"));
    let ran = run_drainit(&["-V"], &[], secs(10.0));
    assert_eq!(
        ran.stdout,
        format!("drainit {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// A job-control stop to drainit started as `program` with `opts`: returns
/// whether the child recorded SIGTSTP and whether it was stopped instead.
/// drainit must stop itself either way, and SIGCONT must wake both. (As
/// PID 1 the kernel never stops drainit, as it never stops dumb-init
/// there: this runs drainit as a plain process.)
fn suspend_and_resume(program: &Path, opts: &[&str]) -> (bool, bool) {
    let files = TempDir::new("tstp");
    let mut args = vec!["-s", "--health-addr", "none"];
    args.extend_from_slice(opts);
    let mut init = sigrec_init(&files, &args, &[], &[])
        .program(&[&program.to_string_lossy()])
        .no_namespace()
        .start();
    wait_for_file(&files.path("ready"), secs(10.0));
    let child = children_of(init.pid)[0];
    let out = files.path("signals");
    let state = |pid: i32| stat_fields(pid).map(|f| f[0].clone()).unwrap_or_default();
    init.signal(libc::SIGTSTP);
    wait_for(secs(10.0), "the child to see the stop", || {
        recorded(&out).contains(&libc::SIGTSTP) || state(child) == "T"
    });
    let seen = (recorded(&out).contains(&libc::SIGTSTP), state(child) == "T");
    wait_for(secs(10.0), "drainit to stop itself", || {
        state(init.pid) == "T"
    });
    init.signal(libc::SIGCONT);
    wait_for_signal(&out, libc::SIGCONT, secs(10.0));
    assert_ne!(state(init.pid), "T");
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(secs(10.0)), 0, "{}", init.stderr());
    seen
}

/// dumb-init's job control: in setsid mode the child's group is stopped
/// with SIGSTOP unless -r says otherwise; with -c the child gets SIGTSTP.
/// drainit stops itself in both.
#[test]
fn job_control_stops_drainit_too_in_dumb_init_mode() {
    let dir = TempDir::new("tstp-names");
    let dumb_init = dir.path("dumb-init");
    std::os::unix::fs::symlink(DRAINIT, &dumb_init).unwrap();
    let drainit = Path::new(DRAINIT);
    // (started as, options, (child recorded SIGTSTP, child stopped))
    let cases: [(&Path, &[&str], (bool, bool)); 4] = [
        (&dumb_init, &[], (false, true)),
        (&dumb_init, &["-c"], (true, false)),
        (drainit, &["--setsid"], (false, true)),
        (drainit, &["--setsid", "-r", "TSTP:TSTP"], (true, false)),
    ];
    for (program, opts, want) in cases {
        assert_eq!(
            suspend_and_resume(program, opts),
            want,
            "{} {opts:?}: (child recorded SIGTSTP, child stopped)",
            program.display()
        );
    }
}

/// In setsid mode, when orphans do not come to drainit (neither PID 1 nor
/// a subreaper), what the child's session leaves behind gets SIGTERM once
/// the child exits, as dumb-init sends it.
#[test]
fn a_setsid_child_leaves_no_job_behind_when_orphans_go_elsewhere() {
    let files = TempDir::new("group");
    let sigrec = sigrec_arg();
    let (out, ready, status) = (files.arg("a"), files.arg("a-ready"), files.arg("a-status"));
    let script = "\"$0\" --out \"$1\" --ready \"$2\" --status \"$3\" & \
                  while [ ! -e \"$2\" ]; do sleep 0.05; done; exit 3";
    let mut init = Init::new(&[
        "--health-addr",
        "none",
        "--setsid",
        "--",
        "sh",
        "-c",
        script,
        &sigrec,
        &out,
        &ready,
        &status,
    ])
    .no_namespace()
    .start();
    let code = init.code(secs(10.0));
    let job: i32 = std::fs::read_to_string(files.path("a-status"))
        .ok()
        .and_then(|s| field(&s, "pid")?.parse().ok())
        .expect("the background job wrote its status");
    let deadline = Instant::now() + secs(10.0);
    while !recorded(&files.path("a")).contains(&libc::SIGTERM) && Instant::now() < deadline {
        std::thread::sleep(secs(0.02));
    }
    let got = recorded(&files.path("a"));
    kill_all(&[job]);
    assert_eq!(code, 3, "{}", init.stderr());
    assert_eq!(got, [libc::SIGTERM], "the background job's signals");
}

/// As dumb-init does, drainit started under its name leaves its directory
/// once the child runs (the child keeps it); a relative path of a check
/// still means the directory drainit started in.
#[test]
fn under_the_name_dumb_init_drainit_leaves_its_directory() {
    if !pid1() {
        return;
    }
    let dir = TempDir::new("cwd-names");
    let dumb_init = dir.path("dumb-init");
    std::os::unix::fs::symlink(DRAINIT, &dumb_init).unwrap();
    for (program, leaves) in [(dumb_init.as_path(), true), (Path::new(DRAINIT), false)] {
        let files = TempDir::new("cwd");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let health = addr.to_string();
        let opts = [
            "--health-addr",
            &health,
            "--drain-delay",
            "0",
            "--ready-file",
            "flag",
            "--check-interval",
            "0.1",
        ];
        let mut init = sigrec_init(&files, &opts, &[], &[])
            .program(&[&program.to_string_lossy()])
            .current_dir(&files.0)
            .start();
        wait_for_file(&files.path("ready"), secs(10.0));
        // A forwarded signal means the supervisor loop runs: drainit is
        // wherever it is going to stay.
        send_and_see(&init, libc::SIGUSR1, &files.path("signals"), libc::SIGUSR1);
        let cwd = |pid: i32| std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
        let want = if leaves { Path::new("/") } else { &files.0 };
        assert_eq!(cwd(init.pid), want, "{}", program.display());
        assert_eq!(cwd(children_of(init.pid)[0]), files.0, "the child's");
        assert_eq!(state_of(addr), "starting", "no flag yet");
        std::fs::write(files.path("flag"), "").unwrap();
        wait_for_state(addr, "ready", secs(10.0));
        init.signal(libc::SIGTERM);
        assert_eq!(init.code(secs(10.0)), 0, "{}", init.stderr());
    }
}
