//! The arm64 release binary, run under qemu-user as PID 1 of a new PID
//! namespace: exit codes, signal forwarding, reaping, the drain and
//! `drainit probe`. Only drainit is emulated; its children (sigrec) are
//! this machine's native builds.
//!
//! The binary is the one `scripts/release.sh aarch64` puts in its dist
//! directory (here target/static/arm64-dist), built once per run of this
//! file; cargo's cache in target/static makes that a no-op when nothing
//! changed (and CI's release step has built it already). It is checked to
//! be an AArch64 ELF, so no native build can stand in for it.
//!
//! How this stands in for an arm64 host: `unshare --pid --fork
//! qemu-aarch64-static DRAINIT ...` makes the qemu process PID 1, and it
//! runs drainit's code, passing its syscalls to this kernel: drainit's
//! getpid() returns 1, so it takes its PID-1 path (no subreaper, no
//! warning), and orphans of the namespace are reparented to that process,
//! where drainit's wait4 reaps them. What differs from real hardware:
//! - qemu's own threads live in the namespace too (its RCU thread takes
//!   pid 2), so drainit's child is pid 3, not 2;
//! - qemu renumbers realtime signals: host N is guest N-2. Host 34-36
//!   become guest 32-34, which musl reserves and drainit leaves unblocked
//!   with their default action; qemu then tries to kill itself, which the
//!   kernel refuses to PID 1, and the emulated init hangs. On arm64
//!   hardware the kernel simply drops those signals for PID 1. The RT
//!   signal checked here is host 40 (guest 38, musl's SIGRTMIN+3), which
//!   goes out and comes back as 40;
//! - for the same reason a child killed by an RT signal would give
//!   128 + the guest number: the 128+N check uses SIGTERM and SIGKILL,
//!   which qemu leaves alone;
//! - the startup time is qemu's, so no timing here is a performance figure.
//!
//! Needs root (unshare), qemu-aarch64-static (Debian's qemu-user-static;
//! called explicitly, binfmt_misc is not needed) and the rustup target
//! aarch64-unknown-linux-musl: each missing one skips the tests outside CI
//! and fails them with CI=true.
mod common;

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

const QEMU: &str = "qemu-aarch64-static";
/// A realtime signal that survives qemu's renumbering both ways (see above).
const RT: i32 = 40;
/// ELF e_machine of AArch64.
const EM_AARCH64: u16 = 183;

/// `[qemu-aarch64-static, the arm64 drainit]`, or None (with the reason
/// printed) when a component is missing outside CI.
fn arm64() -> Option<[&'static str; 2]> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    if !require(
        "root with unshare",
        can_unshare(),
        "drainit must be PID 1 of a new PID namespace",
    ) {
        return None;
    }
    let qemu = Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !require(QEMU, qemu, "apt-get install qemu-user-static") {
        return None;
    }
    let bin = BIN.get_or_init(|| {
        let dist = release(&["aarch64"], "arm64-dist")?;
        let bin = release_binary(&dist, "aarch64");
        let head = fs::read(&bin).map_err(|e| format!("{}: {e}", bin.display()))?;
        let machine = head.get(18..20).map(|m| u16::from_le_bytes([m[0], m[1]]));
        if !head.starts_with(b"\x7fELF") || machine != Some(EM_AARCH64) {
            return Err(format!(
                "{} is not an AArch64 ELF (e_machine {machine:?})",
                bin.display()
            ));
        }
        Ok(bin)
    });
    let bin = released(bin)?;
    Some([QEMU, bin.to_str().unwrap()])
}

/// qemu is slow to start and translate: every wait gets plenty of room.
const T: Duration = Duration::from_secs(30);

/// sigrec under the emulated drainit with no health server (so SIGTERM is
/// forwarded at once), started and ready.
fn start(program: &[&str], sigrec_opts: &[&str]) -> (Init, TempDir) {
    let dir = TempDir::new("arm64");
    let (out, ready) = (dir.arg("out"), dir.arg("ready"));
    let s = sigrec_arg();
    let mut args = vec!["--health-addr", "none", "--", &s, "--out", &out];
    args.extend(["--ready", &ready]);
    args.extend_from_slice(sigrec_opts);
    let mut init = Init::new(&args).program(program).start();
    wait_for(T, "sigrec to be ready", || {
        dir.path("ready").exists() || !init.alive()
    });
    assert!(init.alive(), "drainit exited early:\n{}", init.stderr());
    (init, dir)
}

#[test]
fn the_emulated_drainit_is_pid_1_of_its_namespace() {
    let Some(program) = arm64() else { return };
    let (mut init, dir) = start(&program, &[]);
    let status = fs::read_to_string(format!("/proc/{}/status", init.pid)).unwrap();
    assert_eq!(field(&status, "Name"), Some("qemu-aarch64-st"));
    let nspid = field(&status, "NSpid").unwrap();
    assert_eq!(nspid.split_whitespace().last(), Some("1"), "NSpid {nspid}");
    // The child is native and drainit's own: sigrec, under the qemu process.
    let children = children_of(init.pid);
    assert_eq!(children.len(), 1, "{children:?}");
    let exe = fs::read_link(format!("/proc/{}/exe", children[0])).unwrap();
    assert_eq!(exe, example("sigrec"));
    send_and_see(&init, libc::SIGTERM, &dir.path("out"), libc::SIGTERM);
    assert_eq!(init.code(T), 0, "log:\n{}", init.stderr());
    // As PID 1 drainit neither registers as subreaper nor warns that
    // orphans will not be reaped.
    assert_eq!(init.stderr(), "");
}

#[test]
fn exit_codes_pass_through_under_qemu() {
    let Some(program) = arm64() else { return };
    let no_health = ["--health-addr".to_string(), "none".to_string()];
    assert_exit_codes(&program, &no_health, T);
}

#[test]
fn term_usr1_and_a_realtime_signal_are_forwarded_under_qemu() {
    let Some(program) = arm64() else { return };
    let (mut init, dir) = start(&program, &["--term-exit", "5"]);
    let out = dir.path("out");
    for sig in [libc::SIGUSR1, RT, libc::SIGTERM] {
        send_and_see(&init, sig, &out, sig);
    }
    assert_eq!(recorded(&out), [libc::SIGUSR1, RT, libc::SIGTERM]);
    assert_eq!(init.code(T), 5, "log:\n{}", init.stderr());
}

#[test]
fn a_thousand_orphans_are_reaped_under_qemu() {
    let Some(program) = arm64() else { return };
    let files = TempDir::new("arm64-orphans");
    let ready = files.arg("ready");
    let health = format!("127.0.0.1:{}", free_port());
    let addr: SocketAddr = health.parse().unwrap();
    let s = sigrec_arg();
    let mut init = Init::new(&[
        "--health-addr",
        &health,
        "--drain-delay",
        "0",
        "--",
        &s,
        "--orphans",
        "1000",
        "--ready",
        &ready,
    ])
    .program(&program)
    .start();
    // Written once all 1,000 are forked and their parents reaped by sigrec.
    wait_for_file(&files.path("ready"), T);
    let deadline = Instant::now() + T;
    let mut reaped = None;
    while reaped != Some(1000.0) && Instant::now() < deadline {
        reaped = metric(addr, "drainit_zombies_reaped_total");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        reaped,
        Some(1000.0),
        "orphans drainit reaped within {T:?}; {} zombies left",
        zombies(&init).len()
    );
    let left = init.descendants();
    assert_eq!(left.len(), 1, "only sigrec is left: {left:?}");
    assert!(zombies(&init).is_empty(), "{left:?}");
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(T), 0, "log:\n{}", init.stderr());
}

#[test]
fn sigterm_drains_first_under_qemu() {
    let Some(program) = arm64() else { return };
    let delay = 4.0;
    let bind = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut sup = start_sigrec_with(
        bind,
        &["--drain-delay", "4"],
        &["--term-exit", "7"],
        &[],
        &program,
        T,
    );
    let addr = sup.addr;
    wait_for_state(addr, "ready", T);
    assert_eq!(get(addr, "/readyz").0, 200);

    let sent = Instant::now();
    sup.init.signal(libc::SIGTERM);
    wait_for(T, "/readyz to answer 503", || get(addr, "/readyz").0 == 503);
    let failed_after = sent.elapsed();
    assert!(
        recorded(&sup.out).is_empty(),
        "the child got SIGTERM before readiness failed ({failed_after:?})"
    );
    // "At once", with room for an emulator on a busy machine: within the
    // first half of the delay.
    assert!(
        failed_after < secs(delay / 2.0),
        "readiness failed only after {failed_after:?}"
    );
    let held = wait_for_signal(&sup.out, libc::SIGTERM, T) - sent;
    assert!(
        held >= secs(delay * 0.95) && held <= secs(delay + 10.0),
        "SIGTERM reached the child after {held:?}; expected about {delay} s"
    );
    assert_eq!(recorded(&sup.out), [libc::SIGTERM]);
    assert_eq!(sup.init.code(T), 7, "{}", sup.init.stderr());
}

#[test]
fn probe_exit_codes_under_qemu() {
    let Some(program) = arm64() else { return };
    let bind = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let sup = start_sigrec_with(bind, &[], &[], &[], &program, T);
    wait_for_state(sup.addr, "ready", T);
    let url = format!("http://{}/readyz", sup.addr);
    let probe = |args: &[&str]| {
        let mut argv = program.to_vec();
        argv.push("probe");
        argv.extend_from_slice(args);
        run_argv(&argv, &[], T)
    };
    let r = probe(&[&url]);
    assert_eq!(r.code, 0, "healthy: {r:?}");
    assert!(r.stdout.starts_with("healthy: "), "{r:?}");

    assert_eq!(request("GET", sup.addr, "/sethealth/ko", &[]).code, 200);
    let r = probe(&[&url]);
    assert_eq!(r.code, 1, "draining: {r:?}");
    assert!(r.stdout.starts_with("unhealthy: "), "{r:?}");

    let r = probe(&["--bogus"]);
    assert_eq!(r.code, 2, "usage: {r:?}");
    assert!(r.stderr.starts_with("drainit probe: "), "{r:?}");
}
