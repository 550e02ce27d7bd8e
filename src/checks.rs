//! Readiness and liveness checks of the app: the difference between "the
//! process runs" and "the app can take traffic".
//!
//! Checks run on their own thread, one after another, each bounded by
//! --check-timeout, so a hung app endpoint can neither pile up threads nor
//! touch the signal loop. Their verdict flips the drain state machine only
//! after --ready-threshold / --unready-threshold consecutive results, like
//! Kubernetes' success and failure thresholds.

use std::io;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, warn};

use crate::http::client::{self, Url};
use crate::json;
use crate::shared::{CheckReport, Shared};
use crate::signals;
use crate::spawn::{self, Inherited, Placement};

#[derive(Clone, Debug)]
pub struct CheckSettings {
    pub ready_http: Option<String>,
    pub expect_json: bool,
    pub headers: Vec<(String, String)>,
    pub ready_tcp: Option<String>,
    pub ready_file: Option<PathBuf>,
    pub ready_cmd: Option<Vec<String>>,
    pub live_file: Option<PathBuf>,
    pub live_max_age: Duration,
    pub interval: Duration,
    pub timeout: Duration,
    pub ready_threshold: u32,
    pub unready_threshold: u32,
}

impl Default for CheckSettings {
    fn default() -> CheckSettings {
        CheckSettings {
            ready_http: None,
            expect_json: false,
            headers: Vec::new(),
            ready_tcp: None,
            ready_file: None,
            ready_cmd: None,
            live_file: None,
            live_max_age: Duration::from_secs(60),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            ready_threshold: 1,
            unready_threshold: 3,
        }
    }
}

impl CheckSettings {
    /// Rejects checks that could never pass, so a typo is a startup error
    /// rather than a container that stays "starting" forever.
    pub fn validate(&self) -> Result<(), String> {
        self.build().map(|_| ())
    }

    fn build(&self) -> Result<Vec<Check>, String> {
        let mut checks = Vec::new();
        if let Some(url) = &self.ready_http {
            let url = Url::parse(url).map_err(|e| format!("--ready-http: {e}"))?;
            checks.push(Check::Http(url));
        }
        if let Some(addr) = &self.ready_tcp {
            parse_host_port(addr).map_err(|e| format!("--ready-tcp: {e}"))?;
            checks.push(Check::Tcp(addr.clone()));
        }
        if let Some(path) = &self.ready_file {
            checks.push(Check::File(path.clone()));
        }
        if let Some(cmd) = &self.ready_cmd {
            checks.push(Check::Cmd(cmd.clone()));
        }
        if let Some(path) = &self.live_file {
            checks.push(Check::Live(path.clone()));
        }
        if self.expect_json && self.ready_http.is_none() {
            return Err("--ready-expect-json needs --ready-http".into());
        }
        if !self.headers.is_empty() && self.ready_http.is_none() {
            return Err("--ready-header needs --ready-http".into());
        }
        Ok(checks)
    }

    /// Whether readiness waits for a check (otherwise the running child is ready).
    pub fn gates_readiness(&self) -> bool {
        self.ready_http.is_some()
            || self.ready_tcp.is_some()
            || self.ready_file.is_some()
            || self.ready_cmd.is_some()
    }
}

/// `--ready-cmd`'s words, split on spaces; `sh -c SCRIPT` keeps SCRIPT whole.
pub fn parse_command(value: &str) -> Result<Vec<String>, String> {
    let words: Vec<String> = value.split_whitespace().map(str::to_string).collect();
    if words.is_empty() {
        return Err("expected a command".into());
    }
    if words.len() >= 2 && words[1] == "-c" && (words[0] == "sh" || words[0].ends_with("/sh")) {
        let script = value.trim_start()[words[0].len()..].trim_start()[2..].trim();
        return Ok(vec![
            words[0].clone(),
            "-c".into(),
            unquote(script).to_string(),
        ]);
    }
    Ok(words)
}

/// Strips one pair of matching outer quotes, as a shell would.
fn unquote(s: &str) -> &str {
    for q in ['\'', '"'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

fn parse_host_port(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("'{addr}' is not HOST:PORT"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !host.is_empty() => Ok(()),
        _ => Err(format!("'{addr}' is not HOST:PORT")),
    }
}

#[derive(Clone, Debug)]
enum Check {
    Http(Url),
    Tcp(String),
    File(PathBuf),
    Cmd(Vec<String>),
    Live(PathBuf),
}

impl Check {
    fn name(&self) -> String {
        match self {
            Check::Http(url) => format!("http {url}"),
            Check::Tcp(addr) => format!("tcp {addr}"),
            Check::File(path) => format!("file {}", path.display()),
            Check::Cmd(argv) => format!("cmd {}", argv.join(" ")),
            Check::Live(path) => format!("live {}", path.display()),
        }
    }

    /// Relative paths mean the directory drainit started in, which it may
    /// leave once the child runs (dumb-init's mode).
    fn anchored(self, workdir: &Path) -> Check {
        match self {
            Check::File(path) => Check::File(workdir.join(path)),
            Check::Live(path) => Check::Live(workdir.join(path)),
            other => other,
        }
    }

    fn is_liveness(&self) -> bool {
        matches!(self, Check::Live(_))
    }
}

/// Counts consecutive results and says when the verdict flips.
struct Threshold {
    ready: bool,
    streak: u32,
    to_ready: u32,
    to_unready: u32,
}

impl Threshold {
    fn observe(&mut self, pass: bool) -> Option<bool> {
        if pass == self.ready {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if pass { self.to_ready } else { self.to_unready };
        if self.streak < needed {
            return None;
        }
        self.ready = pass;
        self.streak = 0;
        Some(pass)
    }
}

/// Starts the checks thread. Without any checks there is no thread (and no
/// wake-up at all while idle).
pub fn start(
    settings: &CheckSettings,
    shared: Arc<Shared>,
    inherited: Inherited,
    workdir: PathBuf,
) -> io::Result<()> {
    let checks = settings.build().map_err(io::Error::other)?;
    if checks.is_empty() {
        return Ok(());
    }
    let checks: Vec<Check> = checks.into_iter().map(|c| c.anchored(&workdir)).collect();
    let settings = settings.clone();
    signals::spawn(thread::Builder::new().name("checks".into()), move || {
        let mut threshold = Threshold {
            ready: false,
            streak: 0,
            to_ready: settings.ready_threshold,
            to_unready: settings.unready_threshold,
        };
        loop {
            let started = Instant::now();
            let reports: Vec<CheckReport> = checks
                .iter()
                .map(|c| run(c, &settings, &inherited, &workdir))
                .collect();
            record(
                &reports,
                &mut threshold,
                &shared,
                settings.gates_readiness(),
            );
            thread::sleep(settings.interval.saturating_sub(started.elapsed()));
        }
    })?;
    Ok(())
}

fn record(reports: &[CheckReport], threshold: &mut Threshold, shared: &Shared, gates: bool) {
    let failing: Vec<String> = reports
        .iter()
        .filter(|r| !r.ok && !r.liveness)
        .map(|r| format!("{}: {}", r.name, r.error.as_deref().unwrap_or("failed")))
        .collect();
    *shared.check_reports() = reports.to_vec();
    if !gates {
        return;
    }
    if let Some(ready) = threshold.observe(failing.is_empty()) {
        let reason = if ready {
            format!(
                "readiness checks passed {} time(s) in a row",
                threshold.to_ready
            )
        } else {
            format!(
                "readiness checks failed {} time(s) in a row ({})",
                threshold.to_unready,
                failing.join("; ")
            )
        };
        shared.machine(|m| m.checks_changed(ready, &reason));
    } else if !failing.is_empty() {
        debug!("readiness check failing: {}", failing.join("; "));
    }
}

fn run(
    check: &Check,
    settings: &CheckSettings,
    inherited: &Inherited,
    workdir: &Path,
) -> CheckReport {
    let started = Instant::now();
    let result = match check {
        Check::Http(url) => check_http(url, settings),
        Check::Tcp(addr) => check_tcp(addr, settings.timeout),
        Check::File(path) => {
            if path.exists() {
                Ok(())
            } else {
                Err("does not exist".into())
            }
        }
        Check::Cmd(argv) => check_cmd(argv, settings.timeout, inherited, workdir),
        Check::Live(path) => check_live(path, settings.live_max_age),
    };
    CheckReport {
        name: check.name(),
        liveness: check.is_liveness(),
        ok: result.is_ok(),
        duration: started.elapsed(),
        error: result.err(),
    }
}

fn check_http(url: &Url, settings: &CheckSettings) -> Result<(), String> {
    let response = client::get(url, &settings.headers, settings.timeout)?;
    if !(200..300).contains(&response.code) {
        return Err(format!("status {}", response.code));
    }
    if settings.expect_json {
        json::healthy(&response.body)?;
    }
    Ok(())
}

fn check_tcp(addr: &str, timeout: Duration) -> Result<(), String> {
    let resolved: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    if resolved.is_empty() {
        return Err("cannot resolve".into());
    }
    // Every address in turn, as `localhost` may be ::1 first (see http::client).
    client::connect_any(&resolved, Instant::now() + timeout)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn check_live(path: &PathBuf, max_age: Duration) -> Result<(), String> {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| e.to_string())?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    if age > max_age {
        return Err(format!(
            "not touched for {:.1}s (max {:.1}s)",
            age.as_secs_f64(),
            max_age.as_secs_f64()
        ));
    }
    Ok(())
}

/// Runs a check command in its own process group, with the signal state
/// drainit inherited; on timeout the whole group is killed.
fn check_cmd(
    argv: &[String],
    timeout: Duration,
    inherited: &Inherited,
    workdir: &Path,
) -> Result<(), String> {
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn::configure(
        &mut command,
        inherited,
        Placement::Group { foreground: false },
    );
    let child = command.spawn().map_err(|e| format!("cannot run: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    let waiter = signals::spawn(thread::Builder::new(), move || {
        let _ = tx.send(child.wait_with_output());
    });
    if let Err(e) = waiter {
        let _ = crate::signals::send(-pid, libc::SIGKILL);
        return Err(format!("cannot wait for it: {e}"));
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(output)) => {
            for line in String::from_utf8_lossy(&output.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&output.stderr).lines())
            {
                debug!("{}: {line}", argv[0]);
            }
            if output.status.success() {
                Ok(())
            } else {
                Err(format!("exited with {}", output.status))
            }
        }
        Ok(Err(e)) => Err(format!("wait failed: {e}")),
        Err(_) => {
            if let Err(e) = crate::signals::send(-pid, libc::SIGKILL) {
                warn!("could not kill timed-out check command {pid}: {e}");
            }
            let _ = rx.recv();
            Err(format!("timed out after {:?}", timeout))
        }
    }
}

/// Without readiness checks, the app is ready as soon as it runs.
pub fn ready_without_checks(shared: &Shared) {
    shared.machine(|m| m.checks_changed(true, "child started; no readiness checks configured"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_need_consecutive_results() {
        let mut t = Threshold {
            ready: false,
            streak: 0,
            to_ready: 2,
            to_unready: 3,
        };
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None, "a pass resets the failure streak");
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
    }

    #[test]
    fn bad_checks_are_rejected() {
        let bad = |f: &dyn Fn(&mut CheckSettings)| {
            let mut s = CheckSettings::default();
            f(&mut s);
            s.validate().is_err()
        };
        assert!(bad(&|s| s.ready_http = Some("localhost:80".into())));
        assert!(bad(&|s| s.ready_tcp = Some("localhost".into())));
        assert!(bad(&|s| s.ready_tcp = Some(":80".into())));
        assert!(bad(&|s| s.expect_json = true));
        assert!(!bad(&|s| s.ready_tcp = Some("db:5432".into())));
    }

    #[test]
    fn ready_cmd_keeps_sh_c_script_whole() {
        assert_eq!(
            parse_command("sh -c 'test -f /x && true'").unwrap()[2],
            "test -f /x && true"
        );
        assert_eq!(
            parse_command("pg_isready -q").unwrap(),
            vec!["pg_isready", "-q"]
        );
    }

    #[test]
    fn report_json_escapes() {
        let r = CheckReport {
            name: "cmd x".into(),
            liveness: false,
            ok: false,
            duration: Duration::from_millis(2),
            error: Some("said \"no\"\n".into()),
        };
        assert!(r.to_json().contains("\"error\":\"said \\\"no\\\"\\u000a\""));
    }
}
