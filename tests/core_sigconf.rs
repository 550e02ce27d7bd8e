//! Hygiene, like tini's sigconf test: the child starts with exactly the
//! signal mask and ignored set drainit inherited (whatever drainit changed
//! for itself) and with no descriptor of drainit's (signalfd, pipes, the
//! health socket) beyond what drainit itself was given.
mod common;

use std::fs;
use std::process::{Command, Stdio};

use common::*;

/// Blocks and ignores a few signals, passes fd 7 on, writes what it hands
/// over (mask, ignored set, fds that survive exec) to argv[1], then execs
/// the rest of its arguments: drainit.
const WRAPPER: &str = r#"
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGHUP, signal.SIGTERM,
                                          signal.SIGRTMIN + 3})
for s in (signal.SIGUSR2, signal.SIGCHLD, signal.SIGTTOU, signal.SIGRTMIN + 5):
    signal.signal(s, signal.SIG_IGN)
null = os.open("/dev/null", os.O_RDONLY)
os.dup2(null, 7, inheritable=True)
os.close(null)
def passed(fd):
    try:
        return os.get_inheritable(fd)
    except OSError:
        return False
fds = sorted(int(f) for f in os.listdir("/proc/self/fd") if passed(int(f)))
status = [l for l in open("/proc/self/status") if l.startswith(("SigBlk:", "SigIgn:"))]
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("".join(status) + "fds: " + " ".join(map(str, fds)) + "\n")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
os.execv(sys.argv[2], sys.argv[2:])
"#;

fn python() -> bool {
    Command::new("python3")
        .args(["-c", "import signal, os"])
        .status()
        .is_ok_and(|s| s.success())
}

fn mask(text: &str, name: &str) -> u64 {
    u64::from_str_radix(
        field(text, name).unwrap_or_else(|| panic!("{name} in {text}")),
        16,
    )
    .unwrap()
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// drainit with its health server on (one more descriptor that must not
/// leak); returns (what the child saw, the Init).
fn child_status(wrapper: Option<&[&str]>, dir: &TempDir) -> (String, Init) {
    let status = dir.arg("status");
    let ready = dir.arg("ready");
    let s = sigrec_arg();
    let port = format!("127.0.0.1:{}", free_port());
    let args = [
        "--health-addr",
        &port,
        "--drain-delay",
        "0",
        "--",
        &s,
        "--status",
        &status,
        "--ready",
        &ready,
    ];
    let b = Init::new(&args);
    let init = match wrapper {
        Some(w) => b.start_through(w),
        None => b.start(),
    };
    wait_for_file(&dir.path("ready"), secs(10.0));
    wait_for_health(port.parse().unwrap());
    (std::fs::read_to_string(dir.path("status")).unwrap(), init)
}

/// What sigrec sees when started exactly the same way but without
/// drainit: an init is invisible, so this is what its child must see too.
/// (It is not simply "nothing": the test runner's own spawn may leave
/// glibc's internal signals ignored, or pass stray descriptors.)
fn without_drainit(wrapper: &[&str], dir: &TempDir) -> String {
    let status = dir.arg("reference");
    let s = sigrec_arg();
    let mut cmd = if can_unshare() {
        let mut c = Command::new("unshare");
        c.args(["--pid", "--fork", "--mount-proc", "--kill-child"]);
        c.args(wrapper);
        c
    } else if let Some((first, rest)) = wrapper.split_first() {
        let mut c = Command::new(first);
        c.args(rest);
        c
    } else {
        Command::new(&s)
    };
    if can_unshare() || !wrapper.is_empty() {
        cmd.arg(&s);
    }
    let ok = cmd
        .args(["--status", &status, "--exit", "0"])
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.path("ref-out")).unwrap())
        .stderr(fs::File::create(dir.path("ref-err")).unwrap())
        .status()
        .unwrap();
    assert!(
        ok.success(),
        "{:?}",
        fs::read_to_string(dir.path("ref-err"))
    );
    fs::read_to_string(dir.path("reference")).unwrap()
}

/// Signals 32 and 33 are glibc's own (SIGCANCEL, SIGSETXID): glibc's
/// sigaction refuses them, so drainit can neither see nor restore their
/// disposition, and glibc installs its handlers for them when it needs
/// them in any program. The test runner's posix_spawn leaves them ignored,
/// and glibc takes SIGSETXID over once drainit starts a thread.
const GLIBC_INTERNAL: u64 = (1 << 31) | (1 << 32);

fn assert_same(got: &str, want: &str) {
    for name in ["SigBlk", "SigIgn"] {
        assert_eq!(
            mask(got, name) & !GLIBC_INTERNAL,
            mask(want, name) & !GLIBC_INTERNAL,
            "{name}: child saw\n{got}\nwithout drainit\n{want}"
        );
    }
    assert_eq!(
        field(got, "fds"),
        field(want, "fds"),
        "fds: child saw\n{got}\nwithout drainit\n{want}"
    );
}

fn stop(mut init: Init) {
    init.signal(libc::SIGKILL);
    init.wait(secs(10.0));
}

#[test]
fn child_gets_the_inherited_mask_ignored_set_and_fds_exactly() {
    if !require(
        "python3",
        python(),
        "the wrapper that blocks and ignores signals",
    ) {
        return;
    }
    let dir = TempDir::new("sigconf");
    let expect = dir.arg("expect");
    let (got, init) = child_status(Some(&["python3", "-c", WRAPPER, &expect]), &dir);
    let want = std::fs::read_to_string(dir.path("expect")).unwrap();
    let rt = libc::SIGRTMIN();
    // The wrapper did what it says (so the comparison below means something).
    let (blk, ign) = (mask(&want, "SigBlk"), mask(&want, "SigIgn"));
    for s in [libc::SIGUSR1, libc::SIGHUP, libc::SIGTERM, rt + 3] {
        assert_ne!(blk & bit(s), 0, "wrapper blocks {s}: {want}");
    }
    for s in [libc::SIGUSR2, libc::SIGCHLD, libc::SIGTTOU, rt + 5] {
        assert_ne!(ign & bit(s), 0, "wrapper ignores {s}: {want}");
    }
    let fds = field(&want, "fds").unwrap();
    assert!(fds.starts_with("0 1 2 ") && fds.contains(" 7"), "{want}");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/comm", init.pid))
            .unwrap()
            .trim(),
        "drainit",
        "the wrapper exec'd drainit"
    );
    assert_same(&got, &want);
    stop(init);
}

/// Started the usual way: the child sees what it would without drainit
/// (nothing blocked, though drainit blocks nearly everything itself), in
/// its own process group.
#[test]
fn child_starts_clean_in_its_own_process_group() {
    let dir = TempDir::new("sigconf-clean");
    let (got, init) = child_status(None, &dir);
    // The main thread sleeps in sigtimedwait, which unblocks what it waits
    // for while it waits; the other threads (the health server's here)
    // show the mask drainit runs under.
    let threads: Vec<String> = fs::read_dir(format!("/proc/{}/task", init.pid))
        .unwrap()
        .flatten()
        .filter(|t| t.file_name().to_str() != Some(&init.pid.to_string()))
        .map(|t| fs::read_to_string(t.path().join("status")).unwrap())
        .collect();
    assert!(!threads.is_empty(), "the health thread runs");
    for status in &threads {
        assert_ne!(
            mask(status, "SigBlk"),
            0,
            "drainit blocks signals: {status}"
        );
    }
    assert_eq!(mask(&got, "SigBlk"), 0, "{got}");
    assert_same(&got, &without_drainit(&[], &dir));
    assert_eq!(field(&got, "pgid"), field(&got, "pid"), "{got}");
    assert_eq!(field(&got, "tpgid"), Some("-1"), "no terminal: {got}");
    stop(init);
}

/// A shell's `trap "" SIG` (the usual way images ignore a signal) also
/// reaches the child through drainit.
#[test]
fn shell_ignored_signal_stays_ignored() {
    let dir = TempDir::new("sigconf-sh");
    let wrapper = ["sh", "-c", "trap '' USR2 HUP; exec \"$@\"", "sh"];
    let (got, init) = child_status(Some(&wrapper), &dir);
    let both = bit(libc::SIGUSR2) | bit(libc::SIGHUP);
    assert_eq!(mask(&got, "SigIgn") & both, both, "{got}");
    assert_same(&got, &without_drainit(&wrapper, &dir));
    stop(init);
}
