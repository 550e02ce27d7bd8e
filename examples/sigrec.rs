//! sigrec: a helper child for drainit's integration tests.
//!
//! It records every signal it receives (one number per line) so tests can
//! assert on what drainit forwarded, and it can set up the awkward process
//! trees an init has to cope with: orphans, daemons, process-group members.
//!
//! Setup order matters and is fixed: snapshot state (`--status`), kill self
//! (`--kill-self`), fork everything, install handlers, write `--ready`.
//! All forks happen before any thread exists and before any handler is
//! installed, so children start with a clean, single-threaded copy.
//!
//! The crate uses a C `main` (`#![no_main]`): Rust's usual entry point
//! ignores SIGPIPE, installs SIGSEGV/SIGBUS handlers and may reopen fds 0-2
//! before `main` runs, which would falsify exactly what `--status` reports.

#![no_main]

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::str::FromStr;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{dup2, fork, getpgrp, getpid, getsid, pause, setsid, tcgetpgrp, ForkResult, Pid};
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: sigrec [--out FILE] [--ready FILE] [--status FILE] [--term-exit CODE]
              [--ignore-term] [--term-delay MS] [--exit CODE] [--exit-after MS] [--kill-self SIG]
              [--orphans N] [--orphans-sleep MS] [--daemon FILE] [--daemon-ignore-term]
              [--sleep-children N]";

/// How long the main process waits for the daemon to report readiness; a
/// daemon that never gets there is a broken test setup, not a hang to wait out.
const DAEMON_READY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Opts {
    out: Option<PathBuf>,
    ready: Option<PathBuf>,
    status: Option<PathBuf>,
    term_exit: i32,
    ignore_term: bool,
    term_delay_ms: u64,
    exit: Option<i32>,
    exit_after_ms: Option<u64>,
    kill_self: Option<i32>,
    orphans: u32,
    orphans_sleep_ms: u64,
    daemon: Option<PathBuf>,
    daemon_ignore_term: bool,
    sleep_children: u32,
}

#[no_mangle]
pub extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // Taken from argv, not std::env::args_os(): std captures the arguments
    // before main only with glibc; under musl (static builds for FROM
    // scratch images) args_os() would be empty.
    run(args_from(argc, argv))
}

fn args_from(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<OsString> {
    use std::os::unix::ffi::OsStrExt;
    (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: the C runtime passes argc valid NUL-terminated strings.
            let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) };
            std::ffi::OsStr::from_bytes(arg.to_bytes()).to_owned()
        })
        .collect()
}

fn run(args: Vec<OsString>) -> ! {
    let opts = match parse_args(args.into_iter().skip(1)) {
        Ok(opts) => opts,
        Err(msg) => {
            eprintln!("sigrec: {msg}\n{USAGE}");
            exit(2);
        }
    };
    // The snapshot must see exactly what drainit handed over, before we open
    // files or install handlers (which would change SigCgt and the fd list).
    if let Some(path) = &opts.status {
        let snap = snapshot().unwrap_or_else(|e| fail(&format!("reading process state: {e}")));
        write_atomic(path, &snap)
            .unwrap_or_else(|e| fail(&format!("writing {}: {e}", path.display())));
    }
    if let Some(sig) = opts.kill_self {
        kill_self(sig);
    }
    spawn_children(&opts);

    let mut signals = Signals::new(recordable_signals())
        .unwrap_or_else(|e| fail(&format!("installing handlers: {e}")));
    let mut recorder = opts.out.as_deref().map(Recorder::open);

    if let Some(path) = &opts.ready {
        write_atomic(path, "ready\n")
            .unwrap_or_else(|e| fail(&format!("writing {}: {e}", path.display())));
    }
    if let Some(code) = opts.exit {
        exit(code);
    }
    if opts.sleep_children > 0 {
        thread::spawn(reap_children);
    }
    if let Some(ms) = opts.exit_after_ms {
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(ms));
            exit(0);
        });
    }
    let term_exit = (!opts.ignore_term).then_some(opts.term_exit);
    for sig in signals.forever() {
        if let Some(rec) = recorder.as_mut() {
            rec.record(sig);
        }
        if let (true, Some(code)) = (is_term(sig), term_exit) {
            // A slow shutdown: a JVM, a database flush, a queue worker.
            thread::sleep(Duration::from_millis(opts.term_delay_ms));
            exit(code);
        }
    }
    // forever() only ends if the signal pipe breaks; there is nothing left to record.
    fail("signal iterator ended unexpectedly");
}

fn fail(msg: &str) -> ! {
    eprintln!("sigrec: {msg}");
    exit(1);
}

fn parse_args(mut args: impl Iterator<Item = OsString>) -> Result<Opts, String> {
    let mut opts = Opts::default();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument is not UTF-8: {a:?}"))?;
        let flag = arg.as_str();
        match flag {
            "--out" => opts.out = Some(path_value(flag, &mut args)?),
            "--ready" => opts.ready = Some(path_value(flag, &mut args)?),
            "--status" => opts.status = Some(path_value(flag, &mut args)?),
            "--daemon" => opts.daemon = Some(path_value(flag, &mut args)?),
            "--term-exit" => opts.term_exit = value(flag, &mut args)?,
            "--term-delay" => opts.term_delay_ms = value(flag, &mut args)?,
            "--exit" => opts.exit = Some(value(flag, &mut args)?),
            "--exit-after" => opts.exit_after_ms = Some(value(flag, &mut args)?),
            "--kill-self" => opts.kill_self = Some(signal_value(flag, &mut args)?),
            "--orphans" => opts.orphans = value(flag, &mut args)?,
            "--orphans-sleep" => opts.orphans_sleep_ms = value(flag, &mut args)?,
            "--sleep-children" => opts.sleep_children = value(flag, &mut args)?,
            "--ignore-term" => opts.ignore_term = true,
            "--daemon-ignore-term" => opts.daemon_ignore_term = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0);
            }
            _ => return Err(format!("unknown argument: {arg}")),
        }
    }
    Ok(opts)
}

fn path_value(flag: &str, args: &mut impl Iterator<Item = OsString>) -> Result<PathBuf, String> {
    args.next()
        .map(PathBuf::from)
        .ok_or_else(|| format!("{flag} needs a value"))
}

fn value<T: FromStr>(flag: &str, args: &mut impl Iterator<Item = OsString>) -> Result<T, String> {
    let raw = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
    let text = raw
        .to_str()
        .ok_or_else(|| format!("{flag}: value is not UTF-8"))?;
    text.parse()
        .map_err(|_| format!("{flag}: invalid value {text:?}"))
}

fn signal_value(flag: &str, args: &mut impl Iterator<Item = OsString>) -> Result<i32, String> {
    let sig: i32 = value(flag, args)?;
    if !(1..=libc::SIGRTMAX()).contains(&sig) {
        return Err(format!("{flag}: {sig} is not a signal number"));
    }
    Ok(sig)
}

/// Signals that terminate sigrec (unless `--ignore-term`).
fn is_term(sig: i32) -> bool {
    matches!(sig, libc::SIGTERM | libc::SIGINT | libc::SIGQUIT)
}

/// Everything signal-hook lets us catch, minus the synchronous fault
/// signals (catching those would hide real crashes) and SIGCHLD (our own
/// children's exits are not something drainit sends us).
fn recordable_signals() -> Vec<i32> {
    const SKIP: &[i32] = &[
        libc::SIGKILL,
        libc::SIGSTOP,
        libc::SIGSEGV,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGBUS,
        libc::SIGTRAP,
        libc::SIGSYS,
        libc::SIGABRT,
        libc::SIGCHLD,
    ];
    (1..=31)
        .filter(|s| !SKIP.contains(s))
        .chain(libc::SIGRTMIN()..=libc::SIGRTMAX())
        .collect()
}

/// Appends one line per signal. One write() per line on an O_APPEND file
/// keeps lines whole even when several processes share the file.
struct Recorder {
    file: File,
}

impl Recorder {
    fn open(path: &Path) -> Recorder {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .unwrap_or_else(|e| fail(&format!("opening {}: {e}", path.display())));
        Recorder { file }
    }

    fn record(&mut self, sig: i32) {
        let line = format!("{sig}\n");
        match self.file.write(line.as_bytes()) {
            Ok(n) if n == line.len() => {}
            Ok(n) => eprintln!("sigrec: short write recording signal {sig} ({n} bytes)"),
            Err(e) => eprintln!("sigrec: recording signal {sig}: {e}"),
        }
    }
}

/// Writes via a temporary file and rename so a polling test never sees a
/// half-written file.
fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, contents)?;
    fs::rename(&tmp, path)
}

/// Signal masks, process identity and open fds as inherited from drainit.
fn snapshot() -> std::io::Result<String> {
    let status = fs::read_to_string("/proc/self/status")?;
    let mut out = String::new();
    for line in status.lines() {
        if ["SigBlk:", "SigIgn:", "SigCgt:"]
            .iter()
            .any(|p| line.starts_with(p))
        {
            out.push_str(line);
            out.push('\n');
        }
    }
    let sid = getsid(None).map(Pid::as_raw).unwrap_or(-1);
    // Not being on a terminal is a normal case under test, reported as -1.
    let tpgid = tcgetpgrp(std::io::stdin()).map(Pid::as_raw).unwrap_or(-1);
    out.push_str(&format!(
        "pid: {}\npgid: {}\nsid: {sid}\ntpgid: {tpgid}\n",
        getpid(),
        getpgrp()
    ));
    let fds: Vec<String> = open_fds()?.iter().map(i32::to_string).collect();
    out.push_str(&format!("fds: {}\n", fds.join(" ")));
    Ok(out)
}

fn open_fds() -> std::io::Result<Vec<i32>> {
    let mut fds = Vec::new();
    for entry in fs::read_dir("/proc/self/fd")? {
        if let Ok(fd) = entry?.file_name().to_string_lossy().parse::<i32>() {
            fds.push(fd);
        }
    }
    // The directory listing's own fd is closed by now; dropping whatever no
    // longer exists removes it without having to know its number.
    fds.retain(|&fd| fcntl(fd, FcntlArg::F_GETFD).is_ok());
    fds.sort_unstable();
    Ok(fds)
}

fn kill_self(sig: i32) {
    // SAFETY: setting SIG_DFL installs no Rust code as a handler; failure
    // (SIGKILL/SIGSTOP cannot be changed) is harmless because their action is
    // already the default.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
    // The inherited mask may block it (drainit bug or not); we want it delivered now.
    unblock_all();
    // SAFETY: plain syscall wrapper with no memory arguments.
    unsafe { libc::kill(libc::getpid(), sig) };
    // A self-sent unblocked signal is delivered before kill() returns, so
    // getting here means its default action does not terminate.
    eprintln!("sigrec: still alive after signal {sig} (its default action does not terminate)");
    exit(2);
}

fn unblock_all() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

fn spawn_children(opts: &Opts) {
    for _ in 0..opts.sleep_children {
        fork_child(sleeper_main);
    }
    if opts.orphans > 0 {
        spawn_orphans(opts.orphans, opts.orphans_sleep_ms);
    }
    if let Some(path) = &opts.daemon {
        spawn_daemon(path, opts.daemon_ignore_term);
    }
}

/// Runs `body` in a forked child that exits with its return value; returns
/// the child's pid in the parent.
fn fork_child(body: impl FnOnce() -> i32) -> Pid {
    // SAFETY: sigrec forks only during setup, before it starts any thread,
    // so the child is a complete single-threaded copy and may run ordinary
    // Rust code (no lock can be held by a thread that vanished in the fork).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => child,
        Ok(ForkResult::Child) => {
            let code = body();
            // SAFETY: _exit skips atexit handlers and stdio flushing, which
            // belong to the parent and must not run twice.
            unsafe { libc::_exit(code) }
        }
        Err(e) => fail(&format!("fork: {e}")),
    }
}

/// Reaps an intermediate child and fails loudly if it did not exit cleanly,
/// since then the process tree the test expects was not built.
fn reap_intermediate(pid: Pid) {
    match waitpid(pid, None) {
        Ok(WaitStatus::Exited(_, 0)) => {}
        other => fail(&format!("intermediate child {pid} ended badly: {other:?}")),
    }
}

/// A process-group member that behaves like an unprepared child: default
/// dispositions and nothing blocked, whatever sigrec inherited.
fn sleeper_main() -> i32 {
    for sig in 1..=libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: SIG_DFL installs no handler code; errors for reserved
            // numbers (glibc's internal RT signals) are irrelevant.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    unblock_all();
    loop {
        pause();
    }
}

/// Forks all intermediates first and reaps them afterwards so the orphans
/// arrive at the init in a burst rather than one at a time.
fn spawn_orphans(count: u32, sleep_ms: u64) {
    let intermediates: Vec<Pid> = (0..count)
        .map(|_| {
            fork_child(|| {
                fork_child(|| {
                    thread::sleep(Duration::from_millis(sleep_ms));
                    0
                });
                0
            })
        })
        .collect();
    for pid in intermediates {
        reap_intermediate(pid);
    }
}

fn spawn_daemon(path: &Path, ignore_term: bool) {
    let ready = ready_path(path);
    // A leftover marker from an earlier run would make us report ready too early.
    let _ = fs::remove_file(&ready);
    let intermediate = fork_child(|| {
        if let Err(e) = setsid() {
            eprintln!("sigrec: setsid: {e}");
            return 1;
        }
        fork_child(|| daemon_main(path, ignore_term));
        0
    });
    reap_intermediate(intermediate);
    wait_for_file(&ready, DAEMON_READY_TIMEOUT);
}

fn ready_path(path: &Path) -> PathBuf {
    let mut ready = path.as_os_str().to_owned();
    ready.push(".ready");
    PathBuf::from(ready)
}

fn daemon_main(path: &Path, ignore_term: bool) -> i32 {
    let mut signals = match Signals::new(recordable_signals()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sigrec daemon: installing handlers: {e}");
            return 1;
        }
    };
    let mut recorder = Recorder::open(path);
    if let Err(e) = write_atomic(&ready_path(path), "ready\n") {
        eprintln!("sigrec daemon: writing ready file: {e}");
        return 1;
    }
    // Like a real daemon, let go of the caller's stdio; otherwise a test
    // reading drainit's output would wait for EOF until the daemon dies.
    detach_stdio();
    for sig in signals.forever() {
        recorder.record(sig);
        if sig == libc::SIGTERM && !ignore_term {
            return 0;
        }
    }
    0
}

fn detach_stdio() {
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        for fd in 0..=2 {
            let _ = dup2(null.as_raw_fd(), fd);
        }
    }
}

fn wait_for_file(path: &Path, timeout: Duration) {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > timeout {
            fail(&format!("timed out waiting for {}", path.display()));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Collects `--sleep-children` once they die, so tests checking that the
/// group is gone do not trip over zombies; ends when no children are left.
fn reap_children() {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}
