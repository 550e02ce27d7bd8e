//! On a terminal (`docker run -it`), the child gets its own process group
//! as the terminal's foreground group, so Ctrl-C and Ctrl-Z reach it as
//! they would from a shell.
mod common;

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;

use common::*;

/// A pseudo-terminal pair, both ends close-on-exec (the slave is handed
/// over as stdin, which dup2 makes inheritable).
fn pty() -> (File, OwnedFd) {
    let p = nix::pty::openpty(None, None).expect("openpty");
    for fd in [p.master.as_raw_fd(), p.slave.as_raw_fd()] {
        // SAFETY: fcntl on descriptors we own, no memory arguments.
        assert_eq!(
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) },
            0
        );
    }
    (File::from(p.master), p.slave)
}

/// drainit with `opts` on a new pty, as a container's PID 1 with `-t`:
/// `setsid --ctty` makes it lead a session with the pty as its controlling
/// terminal. Its child, sigrec, is ready; returns the pty's master side.
fn on_a_terminal(opts: &[&str]) -> (File, Init, TempDir) {
    let (master, slave) = pty();
    let dir = TempDir::new("tty");
    let (status, ready, out) = (dir.arg("status"), dir.arg("ready"), dir.arg("out"));
    let s = sigrec_arg();
    let mut args = vec!["--health-addr", "none"];
    args.extend_from_slice(opts);
    args.extend([
        "--", &s, "--status", &status, "--ready", &ready, "--out", &out,
    ]);
    let init = Init::new(&args)
        .stdin(Stdio::from(slave))
        .start_through(&["setsid", "--ctty"]);
    wait_for_file(&dir.path("ready"), secs(10.0));
    (master, init, dir)
}

#[test]
fn child_is_the_terminals_foreground_group_and_gets_ctrl_c() {
    let (mut master, mut init, dir) = on_a_terminal(&[]);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/comm", init.pid))
            .unwrap()
            .trim(),
        "drainit"
    );
    let st = std::fs::read_to_string(dir.path("status")).unwrap();
    let (pid, pgid, tpgid) = (
        field(&st, "pid").unwrap(),
        field(&st, "pgid").unwrap(),
        field(&st, "tpgid").unwrap(),
    );
    assert_eq!(pgid, pid, "the child leads its own group: {st}");
    assert_eq!(tpgid, pgid, "the child's group is in the foreground: {st}");
    // drainit's own group (its session's) is not.
    let drainit = stat_fields(init.pid).unwrap();
    assert_ne!(drainit[2], drainit[5], "drainit is not in the foreground");

    // The terminal's own signals go to the child directly.
    master.write_all(b"\x1a").unwrap();
    wait_for(secs(10.0), "Ctrl-Z to reach the child", || {
        recorded(&dir.path("out")) == [libc::SIGTSTP]
    });
    master.write_all(b"\x03").unwrap();
    assert_eq!(init.code(secs(10.0)), 0, "log:\n{}", init.stderr());
    assert_eq!(recorded(&dir.path("out")), [libc::SIGTSTP, libc::SIGINT]);
}

/// In dumb-init's setsid mode drainit hands its terminal to the child's
/// session. The SIGHUP and SIGCONT the kernel raises for that must not
/// reach the child, and must not cost the user's own next SIGHUP either.
#[test]
fn setsid_mode_hands_over_the_terminal_and_forwards_the_first_sighup() {
    let (_master, mut init, dir) = on_a_terminal(&["--setsid"]);
    let st = std::fs::read_to_string(dir.path("status")).unwrap();
    assert_eq!(
        field(&st, "sid"),
        field(&st, "pid"),
        "the child leads a session of its own: {st}"
    );
    assert_eq!(
        field(&st, "tpgid"),
        field(&st, "pid"),
        "with the terminal, in the foreground: {st}"
    );
    send_and_see(&init, libc::SIGHUP, &dir.path("out"), libc::SIGHUP);
    assert_eq!(
        recorded(&dir.path("out")),
        [libc::SIGHUP],
        "the hand-off's signals stayed with drainit"
    );
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(secs(10.0)), 0, "log:\n{}", init.stderr());
}
