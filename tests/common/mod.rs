//! Test harness: runs the real drainit binary as PID 1 of a new PID
//! namespace and gives tests ways to wait for facts instead of sleeping.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

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
    eprintln!("SKIPPED: {what} is missing ({why})");
    false
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
    namespace: bool,
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

    /// Run drainit without a PID namespace (as a normal process).
    pub fn no_namespace(mut self) -> Builder {
        self.namespace = false;
        self
    }

    pub fn start(self) -> Init {
        let dir = TempDir::new("init");
        let as_pid1 = self.namespace && can_unshare();
        if self.namespace && !as_pid1 {
            eprintln!(
                "NOTE: cannot create a PID namespace here; running drainit as a subreaper instead"
            );
        }
        let mut cmd = if as_pid1 {
            let mut c = Command::new("unshare");
            c.args(["--pid", "--fork", "--mount-proc", "--kill-child", DRAINIT]);
            c
        } else {
            let mut c = Command::new(DRAINIT);
            if self.namespace {
                c.arg("-s");
            }
            c
        };
        cmd.args(&self.args)
            .env_remove("DRAINIT_LOG")
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(self.stdin.unwrap_or(Stdio::null()))
            .stdout(fs::File::create(dir.path("stdout")).unwrap())
            .stderr(fs::File::create(dir.path("stderr")).unwrap());
        let mut outer = cmd.spawn().expect("cannot start drainit");
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
    pub fn new(args: &[&str]) -> Builder {
        Builder {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            stdin: None,
            namespace: true,
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
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: i32 = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
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

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request; returns (status, body). Connection errors panic.
pub fn http(method: &str, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    try_http(method, addr, path, headers)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

pub fn try_http(
    method: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {raw:?}"))?;
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
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
