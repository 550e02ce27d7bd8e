//! `-p/--pdeath-signal SIG` (as in tini): when drainit's parent dies,
//! drainit gets SIG and forwards it to the child like any other signal.
//!
//! drainit's parent here is `unshare` (drainit is PID 1 of the namespace
//! it made); the test kills it. drainit, orphaned, is reparented to this
//! test process, which registers as child subreaper for that (the only
//! test in this binary, so no other test's orphans can land here).
mod common;

use common::*;

/// Kills drainit and its descendants when dropped, unless they are gone.
struct Orphan(i32);

impl Drop for Orphan {
    fn drop(&mut self) {
        let mut pids: Vec<i32> = descendants_of(self.0).iter().map(|(p, _)| *p).collect();
        pids.push(self.0);
        kill_all(&pids);
        let mut status = 0;
        // SAFETY: waitpid writes only to `status`.
        unsafe { libc::waitpid(self.0, &mut status, 0) };
    }
}

/// Waits for our child `pid` to exit; returns its exit code.
fn exit_code(pid: i32) -> i32 {
    let mut code = None;
    wait_for(secs(10.0), "drainit to exit", || {
        let mut status = 0;
        // SAFETY: waitpid writes only to `status`.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if r == pid {
            assert!(
                libc::WIFEXITED(status),
                "drainit died of a signal: {status:#x}"
            );
            code = Some(libc::WEXITSTATUS(status));
        }
        code.is_some()
    });
    code.unwrap()
}

#[test]
fn parent_death_signal_is_received_and_forwarded() {
    let why = "drainit's parent must be unshare, which the test kills";
    if !require("PID namespaces (unshare as root)", can_unshare(), why) {
        return;
    }
    // SAFETY: prctl with an integer flag.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) },
        0
    );
    let me = std::process::id().to_string();
    for (opts, env, sig) in [
        (vec!["-p", "USR1"], None, libc::SIGUSR1),
        (
            vec![],
            Some(("DRAINIT_PDEATH_SIGNAL", "SIGTERM")),
            libc::SIGTERM,
        ),
    ] {
        let dir = TempDir::new("pdeath");
        let (out, ready) = (dir.arg("out"), dir.arg("ready"));
        let s = sigrec_arg();
        let mut args = vec!["--health-addr", "none"];
        args.extend_from_slice(&opts);
        args.extend_from_slice(&["--", &s, "--out", &out, "--ready", &ready]);
        let mut b = Init::new(&args);
        if let Some((k, v)) = env {
            b = b.env(k, v);
        }
        let init = b.start();
        let orphan = Orphan(init.pid);
        wait_for_file(&dir.path("ready"), secs(10.0));
        let parent: i32 = stat_fields(init.pid).unwrap()[1].parse().unwrap();
        assert_eq!(
            std::fs::read_to_string(format!("/proc/{parent}/comm"))
                .unwrap()
                .trim(),
            "unshare"
        );
        kill_all(&[parent]);
        wait_for(
            secs(10.0),
            "the parent-death signal to reach the child",
            || !recorded(&dir.path("out")).is_empty(),
        );
        assert_eq!(recorded(&dir.path("out")), [sig], "{opts:?} {env:?}");
        // drainit lives on (it was signalled, not killed), adopted by us.
        if sig == libc::SIGUSR1 {
            assert_eq!(stat_fields(init.pid).unwrap()[1], me);
            assert!(running(init.pid));
            init.signal(libc::SIGTERM);
        }
        assert_eq!(
            exit_code(init.pid),
            0,
            "{opts:?} {env:?}: {}",
            init.stderr()
        );
        std::mem::forget(orphan);
    }
}
