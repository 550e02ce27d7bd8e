//! Test harness: runs the real drainit binary as PID 1 of a new PID
//! namespace and gives tests ways to wait for facts instead of sleeping.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub use serde_json::Value;

pub const DRAINIT: &str = env!("CARGO_BIN_EXE_drainit");

/// An example program built by `cargo test` next to the drainit binary.
pub fn example(name: &str) -> PathBuf {
    let path = Path::new(DRAINIT)
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test` (it builds the examples)",
        path.display()
    );
    path
}

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "drainit-test-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn arg(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Removes every variable drainit reads (its option table's), so the
/// environment the tests run in cannot change what they test.
pub fn clean_env(cmd: &mut Command) {
    let drainit = drainit::opts::env_names(drainit::cli::OPTIONS);
    let client = drainit::opts::env_names(drainit::commands::OPTIONS);
    for name in drainit.chain(client) {
        cmd.env_remove(name);
    }
}

/// The variable that places drainit's control socket. Tests give every
/// drainit its own, so parallel ones never meet at /run/drainit.sock.
pub const CONTROL_SOCKET_ENV: &str = "DRAINIT_CONTROL_SOCKET";

/// The ways drainit runs that must not change how it forwards signals,
/// reaps and exits: with the health server (and so the drain of SIGTERM,
/// kept short here) and without, with -g and without. The core tests run
/// in every one, so a regression in one mode cannot hide behind another.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    pub health: bool,
    pub group: bool,
}

pub const MODES: [Mode; 4] = [
    Mode {
        health: false,
        group: false,
    },
    Mode {
        health: true,
        group: false,
    },
    Mode {
        health: false,
        group: true,
    },
    Mode {
        health: true,
        group: true,
    },
];

impl Mode {
    /// drainit's options for this mode.
    pub fn args(self) -> Vec<String> {
        let mut args: Vec<String> = if self.health {
            let addr = format!("127.0.0.1:{}", free_port());
            ["--health-addr", &addr, "--drain-delay", "0.2"]
                .map(String::from)
                .to_vec()
        } else {
            vec!["--health-addr".into(), "none".into()]
        };
        if self.group {
            args.push("-g".into());
        }
        args
    }
}

/// Runs `test` once in every [`Mode`]; a failure's output names the mode.
pub fn in_every_mode(test: impl Fn(Mode)) {
    for mode in MODES {
        eprintln!("--- in mode {mode:?}");
        test(mode);
    }
}

/// Whether tests may create PID namespaces here (root with unshare).
pub fn can_unshare() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Whether an external component a test needs is there. Outside CI a
/// missing one skips the test with a reason; with CI=true it fails.
pub fn require(what: &str, present: bool, why: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is required in CI but missing: {why}");
    }
    skip(&format!("{what} is missing ({why})"));
    false
}

/// Tests of this binary that returned early: libtest reports them "ok",
/// so they are listed again after its summary, where nobody misses them.
static SKIPPED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Records that the calling test checks nothing here, and why. The caller
/// returns at once.
pub fn skip(reason: &str) {
    let test = thread::current().name().unwrap_or("?").to_string();
    eprintln!("SKIPPED: {reason}");
    let mut skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    if skipped.is_empty() {
        // SAFETY: registers a plain extern "C" function with no arguments.
        unsafe { libc::atexit(report_skipped) };
    }
    skipped.push(format!("{test}: {reason}"));
}

extern "C" fn report_skipped() {
    let skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "\nSKIPPED, NOT PASSED: {} test(s) above checked nothing here:",
        skipped.len()
    );
    for line in skipped.iter() {
        eprintln!("  {line}");
    }
}

/// Runs `scripts/release.sh ARCHES` with its output in target/static/`dist`
/// (and its builds in target/static, where cargo's cache makes a repeat a
/// no-op); that directory, or the script's last line (its reason) and log.
pub fn release(arches: &[&str], dist: &str) -> Result<PathBuf, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = repo.join("target/static").join(dist);
    let out = Command::new("bash")
        .arg(repo.join("scripts/release.sh"))
        .args(arches)
        .env("DIST_DIR", &dir)
        .env("CARGO_TARGET_DIR", repo.join("target/static"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run scripts/release.sh: {e}"))?;
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr);
        let last = log.lines().last().unwrap_or_default();
        return Err(format!(
            "scripts/release.sh {arches:?} failed: {last}\n{log}"
        ));
    }
    Ok(dir)
}

/// A [`release`] as a test takes it: the directory; None (the test
/// skipped outside CI, failed in CI) when a rustup target cannot be had;
/// a panic when anything else failed.
pub fn released(result: &Result<PathBuf, String>) -> Option<&Path> {
    match result {
        Ok(dir) => Some(dir),
        Err(why) if why.contains("cannot install rustup target") => {
            let first = why.lines().next().unwrap_or_default();
            require("a rustup target", false, first);
            None
        }
        Err(why) => panic!("{why}"),
    }
}

/// The release binary for `arch` (x86_64, aarch64) in a [`release`] directory.
pub fn release_binary(dist: &Path, arch: &str) -> PathBuf {
    dist.join(format!(
        "drainit-{}-{arch}-linux-musl",
        env!("CARGO_PKG_VERSION")
    ))
}

/// drainit running as PID 1 of its own PID namespace (or, where that is
/// impossible, as a subreaper, which the test is told about).
pub struct Init {
    /// The `unshare` process (or drainit itself in subreaper mode).
    outer: Child,
    /// drainit's pid as seen from the test.
    pub pid: i32,
    pub dir: TempDir,
    pub as_pid1: bool,
}

pub struct Builder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Stdio>,
    /// Where drainit's stdout and stderr go instead of the files of `Init::dir`.
    log: Option<std::os::fd::OwnedFd>,
    namespace: bool,
    /// The command that runs drainit: DRAINIT, or words before it (a
    /// wrapper that execs it), or an emulator and a build of drainit for
    /// another CPU, or a symlink that gives drainit another argv[0].
    program: Vec<String>,
    /// Leave the control socket where drainit puts it by default.
    default_socket: bool,
    /// Where drainit starts, instead of the test's own directory.
    workdir: Option<PathBuf>,
}

impl Builder {
    pub fn env(mut self, k: &str, v: &str) -> Builder {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn stdin(mut self, s: Stdio) -> Builder {
        self.stdin = Some(s);
        self
    }

    /// drainit's stdout and stderr both go to `fd` (for example a pipe the
    /// test holds) instead of files.
    pub fn log_to(mut self, fd: std::os::fd::OwnedFd) -> Builder {
        self.log = Some(fd);
        self
    }

    /// Let drainit place its control socket by its own defaults (in a
    /// private /run, say) instead of in the test's directory.
    pub fn default_control_socket(mut self) -> Builder {
        self.default_socket = true;
        self
    }

    /// Run drainit as `argv` instead of DRAINIT, e.g. `qemu-aarch64-static
    /// PATH`: that process is then the one in drainit's place (PID 1). A
    /// wrapper ending in DRAINIT works as with [`Builder::start_through`].
    pub fn program(mut self, argv: &[&str]) -> Builder {
        self.program = argv.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Start drainit in `dir`.
    pub fn current_dir(mut self, dir: &Path) -> Builder {
        self.workdir = Some(dir.to_path_buf());
        self
    }

    /// Run drainit without a PID namespace (as a normal process).
    pub fn no_namespace(mut self) -> Builder {
        self.namespace = false;
        self
    }

    pub fn start(self) -> Init {
        self.start_through(&[])
    }

    /// Like [`Builder::start`], but drainit is exec'd by `wrapper` (a
    /// command to which drainit and its arguments are appended, and which
    /// must end by exec'ing them), so drainit stays PID 1 and inherits
    /// whatever the wrapper set up: signal mask, ignored signals, fds, a
    /// controlling terminal.
    pub fn start_through(self, wrapper: &[&str]) -> Init {
        let dir = TempDir::new("init");
        let as_pid1 = self.namespace && can_unshare();
        if self.namespace && !as_pid1 {
            eprintln!(
                "NOTE: cannot create a PID namespace here; running drainit as a subreaper instead"
            );
        }
        // WRAPPER... PROGRAM [-s] ARGS, run by unshare when drainit is PID 1.
        let mut argv: Vec<&str> = wrapper.to_vec();
        argv.extend(self.program.iter().map(String::as_str));
        if self.namespace && !as_pid1 {
            argv.push("-s");
        }
        let mut cmd = if as_pid1 {
            let mut c = Command::new("unshare");
            c.args(["--pid", "--fork", "--mount-proc", "--kill-child"]);
            c.args(&argv);
            c
        } else {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        };
        clean_env(&mut cmd);
        if !self.default_socket && !self.env.iter().any(|(k, _)| k == CONTROL_SOCKET_ENV) {
            cmd.env(CONTROL_SOCKET_ENV, dir.path("control.sock"));
        }
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(self.stdin.unwrap_or(Stdio::null()));
        if let Some(dir) = &self.workdir {
            cmd.current_dir(dir);
        }
        match self.log {
            Some(fd) => {
                cmd.stdout(fd.try_clone().unwrap()).stderr(fd);
            }
            None => {
                cmd.stdout(fs::File::create(dir.path("stdout")).unwrap())
                    .stderr(fs::File::create(dir.path("stderr")).unwrap());
            }
        }
        let mut outer = cmd.spawn().unwrap_or_else(|e| {
            let what = if wrapper.is_empty() {
                "drainit"
            } else {
                "the wrapper"
            };
            panic!("cannot start {what}: {e:?}")
        });
        let pid = if as_pid1 {
            find_child(&mut outer)
        } else {
            outer.id() as i32
        };
        Init {
            outer,
            pid,
            dir,
            as_pid1,
        }
    }
}

/// The pid of unshare's child (drainit), once it exists; 0 when it has
/// already come and gone.
fn find_child(outer: &mut Child) -> i32 {
    let parent = outer.id();
    let path = format!("/proc/{parent}/task/{parent}/children");
    let mut found = None;
    wait_for(Duration::from_secs(10), "unshare to start drainit", || {
        found = fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()));
        found.is_some() || outer.try_wait().ok().flatten().is_some()
    });
    found.unwrap_or(0)
}

impl Init {
    /// `drainit ARGS...`: options, then `--`, then the program.
    #[allow(clippy::new_ret_no_self)] // a builder: Init::new(args).env(..).start()
    pub fn new(args: &[&str]) -> Builder {
        Builder {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            stdin: None,
            log: None,
            namespace: true,
            program: vec![DRAINIT.to_string()],
            default_socket: false,
            workdir: None,
        }
    }

    pub fn signal(&self, sig: i32) {
        assert!(self.pid > 0, "drainit is gone already");
        // SAFETY: kill has no memory preconditions.
        assert_eq!(
            unsafe { libc::kill(self.pid, sig) },
            0,
            "cannot signal drainit {}",
            self.pid
        );
    }

    /// Waits for drainit to exit; panics (after killing it) on timeout.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.outer.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let log = self.stderr();
                self.kill();
                panic!("drainit did not exit within {timeout:?}; its log:\n{log}");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// drainit's exit code (the status unshare passes on).
    pub fn code(&mut self, timeout: Duration) -> i32 {
        let status = self.wait(timeout);
        status.code().unwrap_or_else(|| {
            panic!(
                "drainit died by a signal: {status:?}; log:\n{}",
                self.stderr()
            )
        })
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path("stderr")).unwrap_or_default()
    }

    /// drainit's log once `pred` holds for it: the log is written by a
    /// thread of its own, a moment after what it tells. Panics naming
    /// `what` after 10 s.
    pub fn log_when(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut log = String::new();
        wait_for(Duration::from_secs(10), what, || {
            log = self.stderr();
            pred(&log)
        });
        log
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(self.dir.path("stdout")).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        self.outer.try_wait().unwrap().is_none()
    }

    /// All processes drainit supervises (its descendants), by host pid.
    pub fn descendants(&self) -> Vec<(i32, char)> {
        if self.pid <= 0 {
            return Vec::new();
        }
        descendants_of(self.pid)
    }

    fn kill(&mut self) {
        // pid 0 would mean "my own process group": never signal it.
        for pid in self
            .descendants()
            .iter()
            .map(|(p, _)| *p)
            .chain([self.pid])
            .filter(|p| *p > 0)
        {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.outer.kill();
        let _ = self.outer.wait();
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        if self.alive() {
            self.kill();
        }
    }
}

/// (pid, state) of every descendant of `root`, from /proc.
pub fn descendants_of(root: i32) -> Vec<(i32, char)> {
    let mut all = Vec::new();
    for pid in proc_pids() {
        let Some(fields) = stat_fields(pid) else {
            continue;
        };
        let state = fields.first().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: i32 = fields.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        all.push((pid, ppid, state));
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid, state) in &all {
            if ppid == parent {
                frontier.push(pid);
                found.push((pid, state));
            }
        }
    }
    found
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` otherwise.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

pub fn wait_for_file(path: &Path, timeout: Duration) {
    wait_for(timeout, &format!("{} to appear", path.display()), || {
        path.exists()
    });
}

/// A port that was free a moment ago, below the kernel's ephemeral range
/// (32768 and up): a port the kernel hands out for binding to port 0 is
/// also one it hands out as the local end of outgoing connections, and a
/// client of another test took it before drainit could listen on it.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // Spread over the range by pid, so parallel test binaries start apart.
    let start = (std::process::id() as usize * 7919) % 20000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 10000 + ((start + n * 37) % 20000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("0.0.0.0", port)).is_ok()
        {
            return port;
        }
    }
}

/// One HTTP/1.1 request; returns (status, body). Connection errors panic.
pub fn http(method: &str, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    try_http(method, addr, path, headers)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// [`try_request`], keeping only the status and the body.
pub fn try_http(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    try_request(method, addr, path, headers).map(|r| (r.code, r.body))
}

pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http("GET", addr, path, &[])
}

/// Waits until drainit's health endpoint answers at all.
pub fn wait_for_health(addr: SocketAddr) {
    wait_for(
        Duration::from_secs(10),
        "the health endpoint to answer",
        || try_http("GET", addr, "/livez", &[]).is_ok(),
    );
}

/// Signal numbers recorded by sigrec in `path`, in order.
pub fn recorded(path: &Path) -> Vec<i32> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

// ---------------------------------------------------------------------------
// Helpers for the health endpoint and drain tests (issue 3).

/// sigrec's path, as an argument.
pub fn sigrec_arg() -> String {
    example("sigrec").to_string_lossy().into_owned()
}

/// A whole HTTP answer: status, headers (names as sent) and body.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, after checking the Content-Type says so.
    pub fn json(&self) -> Value {
        assert_eq!(
            self.header("Content-Type"),
            Some("application/json"),
            "Content-Type of {self:?}"
        );
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("invalid JSON ({e}) in {self:?}"))
    }
}

/// One HTTP/1.1 request with `Connection: close`; connection errors panic.
pub fn request(method: &str, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    try_request(method, addr, path, headers)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

pub fn try_request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" || method == "PUT" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    parse_reply(&raw)
}

/// Parses a raw HTTP/1.1 answer read to EOF.
pub fn parse_reply(raw: &str) -> Result<Reply, String> {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {raw:?}"))?;
    let mut lines = head.split("\r\n");
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {raw:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        code,
        headers,
        body: body.to_string(),
    })
}

/// drainit's /status document.
pub fn status_doc(addr: SocketAddr) -> Value {
    let r = request("GET", addr, "/status", &[]);
    assert_eq!(r.code, 200, "/status: {r:?}");
    r.json()
}

/// The drain state /status reports.
pub fn state_of(addr: SocketAddr) -> String {
    status_doc(addr)["state"].as_str().unwrap().to_string()
}

/// Waits until /status reports `state` (asking /status never counts as a
/// readiness probe, so this does not disturb --drain-checks).
pub fn wait_for_state(addr: SocketAddr, state: &str, timeout: Duration) {
    let mut last = String::new();
    wait_for(timeout, &format!("state {state} (last: {last})"), || {
        last = try_request("GET", addr, "/status", &[])
            .ok()
            .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
            .and_then(|j| j["state"].as_str().map(str::to_string))
            .unwrap_or_default();
        last == state
    });
}

/// Polls sigrec's record until it holds `sig`; returns when it was seen.
pub fn wait_for_signal(path: &Path, sig: i32, timeout: Duration) -> Instant {
    wait_for(
        timeout,
        &format!("signal {sig} in {}", path.display()),
        || recorded(path).contains(&sig),
    );
    Instant::now()
}

/// How many sockets process `pid` has open.
pub fn socket_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| {
                    fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// drainit (as PID 1) with its health endpoint on a free loopback port,
/// supervising sigrec, which records its signals in `out`. Returned once
/// sigrec has installed its handlers and the endpoint answers.
pub struct Sup {
    pub init: Init,
    pub addr: SocketAddr,
    pub out: PathBuf,
    pub files: TempDir,
}

/// `drainit --health-addr 127.0.0.1:FREE OPTS -- sigrec --out F --ready R SIGREC_OPTS`.
pub fn start_sigrec(opts: &[&str], sigrec_opts: &[&str]) -> Sup {
    start_sigrec_env(opts, sigrec_opts, &[])
}

pub fn start_sigrec_env(opts: &[&str], sigrec_opts: &[&str], env: &[(&str, &str)]) -> Sup {
    let bind: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    start_sigrec_bound(bind, opts, sigrec_opts, env)
}

/// As [`start_sigrec`], with the health endpoint bound to `bind`; an
/// unspecified address (0.0.0.0) is asked on loopback.
pub fn start_sigrec_bound(
    bind: SocketAddr,
    opts: &[&str],
    sigrec_opts: &[&str],
    env: &[(&str, &str)],
) -> Sup {
    start_sigrec_with(
        bind,
        opts,
        sigrec_opts,
        env,
        &[DRAINIT],
        Duration::from_secs(10),
    )
}

/// As [`start_sigrec_bound`], with drainit run as `program` (see
/// [`Builder::program`]: DRAINIT, or a wrapper that execs DRAINIT, or an
/// emulator and another build) and `ready_within` for sigrec to install
/// its handlers.
pub fn start_sigrec_with(
    bind: SocketAddr,
    opts: &[&str],
    sigrec_opts: &[&str],
    env: &[(&str, &str)],
    program: &[&str],
    ready_within: Duration,
) -> Sup {
    let files = TempDir::new("sigrec");
    let mut addr = bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let addr_arg = bind.to_string();
    let mut args = vec!["--health-addr", addr_arg.as_str()];
    args.extend_from_slice(opts);
    let mut init = sigrec_init(&files, &args, sigrec_opts, env)
        .program(program)
        .start();
    let ready_path = files.path("ready");
    wait_for(ready_within, "sigrec to be ready", || {
        ready_path.exists() || !init.alive()
    });
    assert!(
        init.alive(),
        "drainit exited early; log:\n{}",
        init.stderr()
    );
    wait_for_health(addr);
    Sup {
        init,
        addr,
        out: files.path("signals"),
        files,
    }
}

/// `drainit OPTS -- sigrec --out FILES/signals --ready FILES/ready
/// SIGREC_OPTS` with `env` set, not started yet.
pub fn sigrec_init(
    files: &TempDir,
    opts: &[&str],
    sigrec_opts: &[&str],
    env: &[(&str, &str)],
) -> Builder {
    let (out, ready) = (files.arg("signals"), files.arg("ready"));
    let sigrec = sigrec_arg();
    let mut args = opts.to_vec();
    args.extend([
        "--",
        sigrec.as_str(),
        "--out",
        out.as_str(),
        "--ready",
        ready.as_str(),
    ]);
    args.extend_from_slice(sigrec_opts);
    let mut builder = Init::new(&args);
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    builder
}

/// The value of one sample of drainit's /metrics, e.g.
/// `drainit_state{state="ready"}`; None when it is not there.
pub fn metric(addr: SocketAddr, sample: &str) -> Option<f64> {
    let r = request("GET", addr, "/metrics", &[]);
    assert_eq!(r.code, 200, "/metrics: {r:?}");
    r.body.lines().find_map(|l| {
        l.strip_prefix(sample)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

/// The host pid of the process drainit's namespace calls `ns_pid`.
pub fn host_pid(init: &Init, ns_pid: i32) -> Option<i32> {
    if !init.as_pid1 {
        return Some(ns_pid);
    }
    init.descendants().into_iter().map(|(p, _)| p).find(|p| {
        fs::read_to_string(format!("/proc/{p}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("NSpid:"))
                    .and_then(|l| l.split_whitespace().last())
                    .and_then(|n| n.parse::<i32>().ok())
            })
            .is_some_and(|n| n == ns_pid)
    })
}

// ---- Helpers for the core tests (core_*.rs) ----

/// The fields of /proc/PID/stat after `comm`: [0] is the state, [1] the
/// ppid, [2] the pgid, [11]/[12] utime/stime. `None` once PID is gone.
pub fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    Some(
        stat[close + 1..]
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    )
}

/// Whether PID exists and is not a zombie (a zombie has exited already).
pub fn running(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f[0] != "Z" && f[0] != "X")
}

/// Direct children of `pid` (any state), from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    proc_pids()
        .filter(|&p| stat_fields(p).is_some_and(|f| f[1] == pid.to_string()))
        .collect()
}

/// The pids /proc lists now.
fn proc_pids() -> impl Iterator<Item = i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
}

/// `Name:` line of a /proc status-like text (e.g. sigrec --status), trimmed.
pub fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// The descendants of drainit that are zombies.
pub fn zombies(init: &Init) -> Vec<i32> {
    init.descendants()
        .into_iter()
        .filter(|(_, s)| *s == 'Z')
        .map(|(p, _)| p)
        .collect()
}

/// Sends `sig` to drainit and waits until sigrec recorded `expect` as its
/// next line in `out` (which must hold `before` lines already).
pub fn send_and_see(init: &Init, sig: i32, out: &Path, expect: i32) {
    let before = recorded(out).len();
    init.signal(sig);
    wait_for(
        Duration::from_secs(10),
        &format!("signal {expect} to be recorded after sending {sig}"),
        || recorded(out).len() > before,
    );
    let got = recorded(out);
    assert_eq!(
        got[before..],
        [expect],
        "sent {sig}, expected the child to record {expect}; all records: {got:?}; log:\n{}",
        init.stderr()
    );
}

/// Ends sigrec in each of the ways an app ends, under drainit run as
/// `program` (see [`Builder::program`]) with `opts`: drainit must exit
/// with the app's status, or 128+N when signal N killed it.
pub fn assert_exit_codes(program: &[&str], opts: &[String], timeout: Duration) {
    for (args, want) in [
        (["--exit", "0"], 0),
        (["--exit", "3"], 3),
        (["--kill-self", "15"], 143),
        (["--kill-self", "9"], 137),
    ] {
        let s = sigrec_arg();
        let mut all: Vec<&str> = opts.iter().map(String::as_str).collect();
        all.extend(["--", s.as_str()]);
        all.extend(args);
        let mut init = Init::new(&all).program(program).start();
        assert_eq!(
            init.code(timeout),
            want,
            "args {args:?}; log:\n{}",
            init.stderr()
        );
    }
}

/// SIGKILLs `pids` (skipping any that are gone); for processes a test
/// started outside the harness.
pub fn kill_all(pids: &[i32]) {
    for &p in pids.iter().filter(|p| **p > 0) {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
}

// ---------------------------------------------------------------------------
// Helpers for the readiness check and `drainit probe` tests (issue 4).

/// examples/app running on its own (not under drainit), as the target of
/// readiness checks and probes. Killed and waited for when dropped.
pub struct App {
    child: Child,
    pub addr: SocketAddr,
    _log: TempDir,
}

impl App {
    /// `app --listen 127.0.0.1:0 ARGS...`, returned once it listens (the
    /// address is read from its `app NAME: listening on ADDR` line).
    pub fn start(args: &[&str]) -> App {
        let log = TempDir::new("app");
        let stderr = log.path("stderr");
        let child = Command::new(example("app"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("cannot start the app example");
        // Built before waiting, so a failed wait still kills the process.
        let mut app = App {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            _log: log,
        };
        let mut found = None;
        wait_for(Duration::from_secs(10), "the app to listen", || {
            let text = fs::read_to_string(&stderr).unwrap_or_default();
            found = text
                .lines()
                .find_map(|l| l.split_once(": listening on ").map(|(_, a)| a.trim()))
                .and_then(|a| a.parse().ok());
            if found.is_none() {
                if let Some(status) = app.child.try_wait().unwrap() {
                    panic!("the app exited ({status}) before listening:\n{text}");
                }
            }
            found.is_some()
        });
        app.addr = found.unwrap();
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Switches what the app's /ready answers.
    pub fn set_ready(&self, on: bool) {
        let path = if on { "/ready/on" } else { "/ready/off" };
        let (code, body) = get(self.addr, path);
        assert_eq!(code, 200, "{path}: {body}");
    }

    /// What the app's own /ready answers right now.
    pub fn ready_code(&self) -> u16 {
        get(self.addr, "/ready").0
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // Only our own child, by pid; waited for so no zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run of the drainit binary (a client subcommand) did.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Runs `drainit ARGS...` directly with only `env` of the DRAINIT_*
/// variables set; killed (and the test failed) after `timeout`.
pub fn run_drainit(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Ran {
    let mut argv = vec![DRAINIT];
    argv.extend_from_slice(args);
    run_argv(&argv, env, timeout)
}

/// Runs `argv` as `run_drainit` does.
pub fn run_argv(argv: &[&str], env: &[(&str, &str)], timeout: Duration) -> Ran {
    let args = &argv[1..];
    let dir = TempDir::new("run");
    let mut cmd = Command::new(argv[0]);
    cmd.args(args);
    clean_env(&mut cmd);
    // A client must not find some other drainit's socket at the default
    // path and ask it instead of the one under test; an empty value in
    // `env` asks for the default search.
    match env.iter().find(|(k, _)| *k == CONTROL_SOCKET_ENV) {
        None => {
            cmd.env(CONTROL_SOCKET_ENV, "none");
        }
        Some((_, "")) => {
            cmd.env_remove(CONTROL_SOCKET_ENV);
        }
        Some(_) => {}
    }
    let started = Instant::now();
    let mut child = cmd
        .envs(env.iter().copied().filter(|(_, v)| !v.is_empty()))
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.path("stdout")).unwrap())
        .stderr(fs::File::create(dir.path("stderr")).unwrap())
        .spawn()
        .expect("cannot run drainit");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "drainit {args:?} did not finish within {timeout:?}; stdout: {:?}",
                fs::read_to_string(dir.path("stdout")).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(5));
    };
    let took = started.elapsed();
    Ran {
        code: status
            .code()
            .unwrap_or_else(|| panic!("drainit {args:?} died by a signal: {status:?}")),
        stdout: fs::read_to_string(dir.path("stdout")).unwrap_or_default(),
        stderr: fs::read_to_string(dir.path("stderr")).unwrap_or_default(),
        took,
    }
}

/// The check reports in drainit's /status.
pub fn check_reports(addr: SocketAddr) -> Vec<Value> {
    match &status_doc(addr)["checks"] {
        Value::Array(items) => items.clone(),
        other => panic!("/status has no checks array: {other:?}"),
    }
}

/// Waits until /status shows a report of a check whose name starts with
/// `name` and that `pred` accepts; returns that report.
pub fn wait_for_report(
    addr: SocketAddr,
    name: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let last = check_reports(addr);
        let found = last
            .iter()
            .find(|r| r["name"].as_str().is_some_and(|n| n.starts_with(name)) && pred(r));
        if let Some(report) = found {
            return report.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for a '{name}' check report; last: {last:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A report's `ok`.
pub fn report_ok(r: &Value) -> bool {
    r["ok"]
        .as_bool()
        .unwrap_or_else(|| panic!("report without a boolean ok: {r:?}"))
}

/// A report's error text ("" when null).
pub fn report_error(r: &Value) -> String {
    r["error"].as_str().unwrap_or_default().to_string()
}

/// /readyz: its status code and the state its body names.
pub fn readyz(addr: SocketAddr) -> (u16, String) {
    let r = request("GET", addr, "/readyz", &[]);
    let state = r.json()["state"].as_str().unwrap_or_default().to_string();
    (r.code, state)
}

/// Waits until /readyz answers `code`; returns the state it named.
pub fn wait_for_readyz(addr: SocketAddr, code: u16, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let last = readyz(addr);
        if last.0 == code {
            return last.1;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for /readyz {code}; last: {last:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Lines in a file (0 when it does not exist yet).
pub fn line_count(path: &Path) -> usize {
    fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

/// Docker's default /etc/hosts, where `localhost` is also ::1.
pub const DOCKER_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// The words that run a command in a private mount namespace whose
/// /etc/hosts is `hosts` (append the command). None, with the reason
/// printed, when that is impossible here or `localhost` does not resolve
/// to ::1 first there (no IPv6 loopback): the test has nothing to show then.
pub fn with_hosts(hosts: &Path) -> Option<Vec<String>> {
    let prefix: Vec<String> = [
        "unshare",
        "--mount",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
        &hosts.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = Command::new(&prefix[0])
        .args(&prefix[1..])
        .args(["getent", "ahosts", "localhost"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let first = out.ok().filter(|o| o.status.success()).and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .map(str::to_string)
    });
    match first {
        Some(line) if line.starts_with("::1 ") => Some(prefix),
        other => {
            skip(&format!(
                "cannot make `localhost` resolve to ::1 first here (getent said {other:?})"
            ));
            None
        }
    }
}

// ---------------------------------------------------------------------------
// A client that is not on loopback: a network namespace of our own, joined
// to the root namespace by a veth pair with a private /30. Another 127.x
// source address would still be loopback.

/// Whether this machine lets the test build network namespaces.
pub fn can_netns() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace `NAME-PID-N` linked to the root namespace by a veth
/// pair (`IFPID xNh` / `IFPID xNn`); dropping it removes both (also when
/// the test panics).
pub struct NetNs {
    pub name: String,
    host_if: String,
    /// drainit's address as the namespace sees it (root side of the veth).
    pub host_ip: String,
    /// The client's (non-loopback) address inside the namespace.
    pub ns_ip: String,
}

impl NetNs {
    /// A namespace named `name`-PID-N with interfaces `ifs`PID`x`N`h|n`
    /// (at most 15 characters) and a /30 of 10.`block`.0.0/16: test files
    /// that run in parallel use their own names and blocks.
    pub fn create(name: &str, ifs: &str, block: u8) -> NetNs {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed) as u32;
        let pid = std::process::id();
        let taken = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-4", "-o", "addr", "show"])
                .output()
                .expect("ip addr show")
                .stdout,
        )
        .into_owned();
        // A /30 of the block that depends on pid and counter, skipping any
        // block already in use here.
        let (host_ip, ns_ip) = (0..16384u32)
            .map(|k| ((pid.wrapping_mul(8) + n * 2 + k * 97) % 16384) * 4)
            .map(|base| {
                let at = |o: u32| format!("10.{block}.{}.{}", (base + o) >> 8, (base + o) & 255);
                (at(1), at(2))
            })
            .find(|(h, c)| !taken.contains(&format!("{h}/")) && !taken.contains(&format!("{c}/")))
            .unwrap_or_else(|| panic!("a free /30 in 10.{block}.0.0/16"));
        let ns = NetNs {
            name: format!("{name}-{pid}-{n}"),
            host_if: format!("{ifs}{pid}x{n}h"),
            host_ip,
            ns_ip,
        };
        let ns_if = format!("{ifs}{pid}x{n}n");
        assert!(ns.host_if.len() <= 15 && ns_if.len() <= 15);
        // The guard exists before anything is created, so a failure half
        // way still cleans up.
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{}/30", ns.ns_ip),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &ns.name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread that has joined the namespace (a network
    /// namespace belongs to a thread, so the rest of the test is
    /// untouched): sockets it creates belong to the namespace for good,
    /// whichever thread uses them later.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = fs::File::open(format!("/run/netns/{}", self.name)).expect("open the netns");
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid namespace fd; it changes only
                // this thread's network namespace, and the thread ends
                // with the scope.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// drainit's port as reached from inside the namespace.
    pub fn target(&self, port: u16) -> SocketAddr {
        format!("{}:{port}", self.host_ip).parse().unwrap()
    }

    /// One request from inside the namespace to drainit's port.
    pub fn request(&self, method: &str, port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
        let addr = self.target(port);
        self.run(|| request(method, addr, path, headers))
    }

    /// `drainit ARGS` run inside the namespace (as [`run_drainit`] runs it,
    /// with 20 s to finish): (exit code, stdout, stderr).
    pub fn drainit(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut argv = vec!["ip", "netns", "exec", &self.name, DRAINIT];
        argv.extend_from_slice(args);
        let ran = run_argv(&argv, env, secs(20.0));
        (ran.code, ran.stdout, ran.stderr)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys its end of the veth and with it
        // the pair; the explicit delete covers a half-built setup.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

// ---------------------------------------------------------------------------
// An HTTP server that is not ours: Python's http.server, as the app whose
// health route drainit checks (issue 9).

/// What [`PyHttp`] runs: GET answers the query's `b` (or, for a request
/// without a query, the query it was started with) as the body (JSON
/// content type) with status `code` (200 if absent), framed by `te`:
/// `length` (Content-Length), `chunked` (3-byte chunks with an extension,
/// then a trailer), `eof` (no length, closed after the body), or a
/// truncated body: `short` (Content-Length 10 more than sent) and
/// `chunked-short` (no last chunk), each followed by a close.
const PY_HTTP: &str = r#"
import http.server, sys, urllib.parse

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        query = urllib.parse.urlsplit(self.path).query or sys.argv[1]
        query = urllib.parse.parse_qs(query)
        body = query.get("b", [""])[0].encode()
        te = query.get("te", ["length"])[0]
        self.send_response(int(query.get("code", ["200"])[0]))
        self.send_header("Content-Type", "application/json")
        if te.startswith("chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 3):
                part = body[i:i + 3]
                self.wfile.write(b"%x;n=%d\r\n%s\r\n" % (len(part), i, part))
            if te == "chunked":
                self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
            else:
                self.close_connection = True
        elif te == "eof":
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
        else:
            extra = 10 if te == "short" else 0
            self.send_header("Content-Length", str(len(body) + extra))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = te == "short"

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A Python http.server on a loopback port; killed (by pid) when dropped.
pub struct PyHttp {
    child: Child,
    pub port: u16,
}

impl PyHttp {
    /// None (the test is skipped, and says why) without python3 outside CI.
    pub fn start() -> Option<PyHttp> {
        PyHttp::answering("", "length")
    }

    /// As [`PyHttp::start`], answering `body` framed as `te` to any
    /// request without a query (drainit's own paths, such as /status).
    pub fn answering(body: &str, te: &str) -> Option<PyHttp> {
        let present = Command::new("python3")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !require(
            "python3",
            present,
            "the app that answers chunked is Python's http.server",
        ) {
            return None;
        }
        let mut child = Command::new("python3")
            .args(["-c", PY_HTTP, &query(body, te)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start python3");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("python3's stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("python3 prints its port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("python3 printed {line:?} instead of its port")
        });
        Some(PyHttp { child, port })
    }

    /// The URL that answers `body` framed as `te` says (see [`PY_HTTP`]).
    pub fn url(&self, body: &str, te: &str) -> String {
        format!("http://127.0.0.1:{}/health?{}", self.port, query(body, te))
    }

    /// Its address, as `--addr` takes it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// The query that makes [`PY_HTTP`] answer `body` framed as `te`.
fn query(body: &str, te: &str) -> String {
    let encoded: String = body
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("te={te}&b={encoded}")
}

impl Drop for PyHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Health answers and whether `--expect-json` / `--ready-expect-json` must
/// call them healthy: only the top-level `status` counts.
pub const JSON_VERDICTS: [(&str, bool); 6] = [
    (
        "{\"status\":\"unhealthy\",\"checks\":[{\"status\":\"healthy\"}]}",
        false,
    ),
    ("{\"status\":\"UP\"}", true),
    ("{\"status\":\"pass\"}", true),
    ("{\"status\":\"healthy\"", false),
    (
        "{\"status\":\"DOWN\",\"note\":\"{\\\"status\\\":\\\"ok\\\"}\"}",
        false,
    ),
    ("{\"status\":\"ok\",\"db\":{\"status\":\"down\"}}", true),
];

// ---------------------------------------------------------------------------
// Clients at chosen loopback addresses: several load balancer instances,
// or a mesh sidecar's 127.0.0.6, without network namespaces.

/// A TCP connection to `to` whose source address is `from`: every
/// 127.0.0.0/8 address reaches a listener on 127.0.0.1.
pub fn connect_from(from: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let SocketAddr::V4(to) = to else {
        panic!("{to} is not IPv4")
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let local = std::net::SocketAddrV4::new(from, 0);
    bind(fd.as_raw_fd(), &SockaddrIn::from(local))?;
    connect(fd.as_raw_fd(), &SockaddrIn::from(to))?;
    Ok(TcpStream::from(fd))
}

/// The status code of `GET path` sent from `from` with `headers`, or why
/// there was none.
pub fn try_code_from(
    from: std::net::Ipv4Addr,
    to: SocketAddr,
    path: &str,
    headers: &[&str],
) -> Result<u16, String> {
    let mut s = connect_from(from, to).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(secs(5.0)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    parse_reply(&answer).map(|r| r.code)
}

/// [`try_code_from`], for requests that must be answered.
pub fn code_from(from: std::net::Ipv4Addr, to: SocketAddr, path: &str, headers: &[&str]) -> u16 {
    try_code_from(from, to, path, headers).unwrap_or_else(|e| panic!("{path} from {from}: {e}"))
}
