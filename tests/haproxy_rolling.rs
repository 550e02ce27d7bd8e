//! Zero failed requests through a real HAProxy while backends under drainit
//! are restarted one after another, and while one is drained and stopped
//! (scale-down).
//!
//! Real components only: HAProxy (Debian package `haproxy`) on 127.0.0.1
//! with the config a user copies, examples/haproxy.cfg (ports and the stats
//! socket substituted, its placeholder servers replaced by local ones);
//! three backends, each examples/app (5 ms of work per request) under
//! drainit as PID 1 of its own PID namespace, health-checked by HAProxy on
//! drainit's /readyz; examples/loadgen sending 200 requests/s over 32
//! keep-alive connections (many clients, so that one stalled request does
//! not hold up the others) and counting every outcome.
//!
//! drainit runs with `--ready-http` on the app, as the example says, and
//! either its default drain (--drain-delay 3, sized in the example against
//! `inter 1s fall 2`) or `--drain-checks 2` (= fall). The example's HAProxy
//! retries are HAProxy's default (`retries 3`: failed connections only,
//! same server) and no `option redispatch`, so a backend that stops
//! accepting while HAProxy still routes to it shows up.
//!
//! Two assertions, both must hold:
//! - loadgen: every request got a complete 2xx response within 2 s of
//!   being sent (no error, no other status, no reset, no timeout);
//! - HAProxy's own counters for the backend: no connection error, no
//!   response error, no connection retry, no redispatch. A stop without
//!   drain shows here first: each request HAProxy still routes to the
//!   stopped backend meets a refused connection, HAProxy retries it on the
//!   same server 1 s apart and answers 503 after the third refusal (loadgen
//!   gives up at 2 s and counts it). Machine hiccups make requests slow but
//!   never make HAProxy retry, so this stays exact on a busy machine.
//!
//! Checked by breaking drainit on purpose: with SIGTERM forwarded at once
//! (no drain), the rolling tests fail with about 20 failed requests and
//! some 190 HAProxy retries; with `drainit drain` leaving /readyz at 200,
//! the scale-down test fails with about 30-60 failed requests.
//!
//! Gated on HAProxy: skipped (with the reason) when it is missing, unless
//! CI=true, where a missing HAProxy fails the test.
mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{example, free_port, require, try_http, wait_for, Init, TempDir, DRAINIT};

const EXAMPLE_CFG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/haproxy.cfg");
const BACKEND: &str = "app";
/// A request without a complete response this long after it was sent
/// counts as failed.
const REQUEST_TIMEOUT: &str = "2";
/// HAProxy's counters of requests that met a backend that was not
/// accepting (see the module doc): connection errors, response errors,
/// connection retries, redispatches.
const TROUBLE: [&str; 4] = ["econ", "eresp", "wretr", "wredis"];
/// Between the old process's exit and the new one's start: a replacement
/// container takes seconds to be created and started, and meanwhile
/// nothing listens on the backend's port. (Restarted in a few ms, the
/// backend would be back before HAProxy even noticed it was gone.)
const REPLACEMENT_STARTS_AFTER: Duration = Duration::from_secs(2);

fn haproxy_present() -> bool {
    Command::new("haproxy")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn need_haproxy() -> bool {
    require(
        "haproxy",
        haproxy_present(),
        "the rolling-restart tests run a real HAProxy; apt-get install haproxy",
    )
}

fn millis(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

// ------------------------------------------------------------- HAProxy

/// HAProxy in the foreground (-db), killed by pid when dropped.
struct HaProxy {
    child: Child,
    dir: TempDir,
    sock: PathBuf,
    front: u16,
}

/// examples/haproxy.cfg with the frontend on 127.0.0.1:`front`, the stats
/// socket at `sock`, and the example's servers replaced by `servers`
/// (name, app port, check port). Every substitution must find its line, so
/// the test breaks loudly if the example changes shape.
/// For one of several instances, `instance` is `(source, inter)`: its
/// connections and checks come from `source` (so drainit tells the
/// instances apart, as it would on different hosts) every `inter`.
fn config_from_example(
    front: u16,
    sock: &Path,
    servers: &[(String, u16, u16)],
    instance: Option<(&str, &str)>,
) -> String {
    let example = fs::read_to_string(EXAMPLE_CFG).expect("examples/haproxy.cfg");
    let mut out = String::new();
    let mut found = (false, false, false);
    for line in example.lines() {
        let t = line.trim();
        if t.starts_with("server ") {
            continue;
        }
        let mut line = line.to_string();
        if t == "bind :80" {
            line = line.replace("bind :80", &format!("bind 127.0.0.1:{front}"));
            found.0 = true;
        }
        if line.contains("/run/haproxy/admin.sock") {
            line = line.replace("/run/haproxy/admin.sock", &sock.to_string_lossy());
            found.1 = true;
        }
        let default_server = t.starts_with("default-server ");
        if let (true, Some((source, inter))) = (default_server, instance) {
            line = line.replace("inter 1s", &format!("inter {inter}"));
            line.push_str(&format!("\n    source {source}"));
        }
        out.push_str(&line);
        out.push('\n');
        if default_server {
            found.2 = true;
            for (name, app, check) in servers {
                out.push_str(&format!("    server {name} 127.0.0.1:{app} port {check}\n"));
            }
        }
    }
    assert_eq!(
        found,
        (true, true, true),
        "examples/haproxy.cfg lacks `bind :80`, the stats socket or `default-server`"
    );
    out
}

impl HaProxy {
    /// HAProxy as examples/haproxy.cfg has it, or as one instance checking
    /// from `(source, inter)`: see [`config_from_example`].
    fn start_instance(servers: &[(String, u16, u16)], instance: Option<(&str, &str)>) -> HaProxy {
        let dir = TempDir::new("haproxy");
        let sock = dir.path("admin.sock");
        let front = free_port();
        let cfg = dir.path("haproxy.cfg");
        fs::write(&cfg, config_from_example(front, &sock, servers, instance)).unwrap();
        let check = Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "HAProxy rejects the config made from examples/haproxy.cfg:\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.path("log")).unwrap())
            .stderr(fs::File::create(dir.path("stderr")).unwrap())
            .spawn()
            .expect("cannot start haproxy");
        let hap = HaProxy {
            child,
            dir,
            sock,
            front,
        };
        wait_for(Duration::from_secs(10), "HAProxy's stats socket", || {
            hap.try_stats().is_ok()
        });
        hap
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.front)
    }

    /// `show stat` of the backend: one map of column -> value per row,
    /// keyed by server name ("BACKEND" for the backend's totals).
    fn try_stats(&self) -> Result<HashMap<String, HashMap<String, String>>, String> {
        let mut s = UnixStream::connect(&self.sock).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"show stat\n").map_err(|e| e.to_string())?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
        let mut lines = raw.lines();
        let header: Vec<String> = lines
            .next()
            .ok_or("empty show stat")?
            .trim_start_matches("# ")
            .split(',')
            .map(String::from)
            .collect();
        let mut rows = HashMap::new();
        for line in lines {
            let row: HashMap<String, String> = header
                .iter()
                .cloned()
                .zip(line.split(',').map(String::from))
                .collect();
            if row.get("pxname").is_some_and(|p| p == BACKEND) {
                rows.insert(row["svname"].clone(), row);
            }
        }
        Ok(rows)
    }

    /// One `show stat` value of server `name` (or "BACKEND").
    fn stat(&self, name: &str, column: &str) -> String {
        let rows = self
            .try_stats()
            .unwrap_or_else(|e| panic!("show stat: {e}"));
        rows.get(name)
            .unwrap_or_else(|| panic!("HAProxy has no server {name}"))
            .get(column)
            .unwrap_or_else(|| panic!("show stat has no column {column}"))
            .clone()
    }

    fn count(&self, name: &str, column: &str) -> u64 {
        self.stat(name, column).parse().unwrap_or(0)
    }

    /// Whether HAProxy sends new requests to `name` ("UP", or "UP 1/2"
    /// while a failing check is not yet conclusive).
    fn routes_to(&self, name: &str) -> bool {
        self.stat(name, "status").starts_with("UP")
    }

    fn wait_routing(&self, name: &str, routed: bool, timeout: Duration) {
        let what = format!(
            "HAProxy to {} routing to {name}",
            if routed { "start" } else { "stop" }
        );
        wait_for(timeout, &what, || self.routes_to(name) == routed);
    }

    /// HAProxy's log lines about requests that were not a plain 200.
    fn failed_log(&self) -> String {
        let log = fs::read_to_string(self.dir.path("log")).unwrap_or_default();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("\"GET ") && !l.contains(" 200 "))
            .collect();
        let skip = bad.len().saturating_sub(20);
        format!(
            "{} non-200 lines in HAProxy's log (last 20):\n{}",
            bad.len(),
            bad[skip..].join("\n")
        )
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this pid only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------- backends

struct Backend {
    name: String,
    app_port: u16,
    health_port: u16,
    /// drainit options beyond the health address and the readiness check.
    drain_opts: Vec<String>,
    init: Init,
}

impl Backend {
    fn start(name: &str, app_port: u16, health_port: u16, drain_opts: &[&str]) -> Backend {
        let health = format!("127.0.0.1:{health_port}");
        let ready = format!("http://127.0.0.1:{app_port}/ready");
        let listen = format!("127.0.0.1:{app_port}");
        let app = example("app").to_string_lossy().into_owned();
        let mut args = vec!["--health-addr", &health, "--ready-http", &ready];
        args.extend_from_slice(drain_opts);
        args.extend([
            "--",
            &app,
            "--listen",
            &listen,
            "--name",
            name,
            "--work-ms",
            "5",
        ]);
        Backend {
            name: name.into(),
            app_port,
            health_port,
            drain_opts: drain_opts.iter().map(|s| s.to_string()).collect(),
            init: Init::new(&args).start(),
        }
    }

    fn health(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.health_port))
    }

    /// Waits until drainit says the app is ready.
    fn wait_ready(&self) {
        wait_for(
            Duration::from_secs(15),
            &format!("{}'s /readyz to answer 200", self.name),
            || try_http("GET", self.health(), "/readyz", &[]).is_ok_and(|(c, _)| c == 200),
        );
    }

    fn restart(&mut self) {
        let opts: Vec<&str> = self.drain_opts.iter().map(String::as_str).collect();
        self.init = Backend::start(&self.name, self.app_port, self.health_port, &opts).init;
    }
}

fn start_backends(n: usize, drain_opts: &[&str]) -> Vec<Backend> {
    let backends: Vec<Backend> = (1..=n)
        .map(|i| Backend::start(&format!("s{i}"), free_port(), free_port(), drain_opts))
        .collect();
    for b in &backends {
        b.wait_ready();
    }
    backends
}

fn servers(backends: &[Backend]) -> Vec<(String, u16, u16)> {
    backends
        .iter()
        .map(|b| (b.name.clone(), b.app_port, b.health_port))
        .collect()
}

// ------------------------------------------------------------- load

/// examples/loadgen running until `finish`.
struct Load {
    child: Option<Child>,
    dir: TempDir,
}

struct Summary {
    line: String,
    requests: u64,
    ok: u64,
    failed: u64,
}

/// A number field of loadgen's one-line JSON summary.
fn num(json: &str, key: &str) -> u64 {
    let at = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + key.len()
        + 3;
    json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

impl Load {
    fn start(url: &str) -> Load {
        Load::start_at(url, "200")
    }

    /// Load at `rate` requests per second.
    fn start_at(url: &str, rate: &str) -> Load {
        let dir = TempDir::new("load");
        let child = Command::new(example("loadgen"))
            .args(["--url", url, "--rate", rate, "--conns", "32"])
            .args(["--timeout", REQUEST_TIMEOUT, "--duration", "120"])
            .arg("--until-file")
            .arg(dir.path("stop"))
            .arg("--timeline")
            .arg(dir.path("timeline.csv"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.path("stderr")).unwrap())
            .spawn()
            .expect("cannot start loadgen");
        Load {
            child: Some(child),
            dir,
        }
    }

    fn finish(mut self) -> Summary {
        fs::write(self.dir.path("stop"), "").unwrap();
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("loadgen did not stop within 15 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
        let mut line = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut line)
            .unwrap();
        let line = line.trim().to_string();
        assert!(
            line.starts_with('{'),
            "loadgen printed no summary: {line:?}; stderr: {}",
            fs::read_to_string(self.dir.path("stderr")).unwrap_or_default()
        );
        Summary {
            requests: num(&line, "requests"),
            ok: num(&line, "ok"),
            failed: num(&line, "failed"),
            line,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What happened to one backend that was stopped.
struct Stop {
    name: String,
    /// What the times count from: "SIGTERM" or "drainit drain".
    from: &'static str,
    /// SIGTERM until HAProxy no longer routed to it (None: it never stopped
    /// routing while the process lived).
    unrouted_after: Option<Duration>,
    exited_after: Duration,
    code: i32,
    up_again_after: Option<Duration>,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: after {}, HAProxy stopped routing {}, the process exited (code {}) {}",
            self.name,
            self.from,
            self.unrouted_after
                .map_or("only once the process was gone".into(), |d| format!(
                    "at {}",
                    millis(d)
                )),
            self.code,
            format_args!("at {}", millis(self.exited_after))
        )?;
        if let Some(up) = self.up_again_after {
            write!(f, ", the new one was routed at {}", millis(up))?;
        }
        Ok(())
    }
}

/// SIGTERM to a backend's drainit; watches HAProxy until the process exits.
fn stop_backend(hap: &HaProxy, b: &mut Backend, since: Instant, from: &'static str) -> Stop {
    b.init.signal(libc::SIGTERM);
    let mut unrouted_after = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.init.alive() && Instant::now() < deadline {
        if unrouted_after.is_none() && !hap.routes_to(&b.name) {
            unrouted_after = Some(since.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let code = b.init.code(Duration::from_secs(5));
    Stop {
        name: b.name.clone(),
        from,
        unrouted_after,
        exited_after: since.elapsed(),
        code,
        up_again_after: None,
    }
}

fn check_outcome(what: &str, summary: &Summary, stops: &[Stop], hap: &HaProxy, seconds: f64) {
    let report = stops
        .iter()
        .map(|s| format!("  {s}"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        summary.failed,
        0,
        "{what}: {} of {} requests FAILED (error, non-2xx or no response within {REQUEST_TIMEOUT} s)\n\
         loadgen: {}\nstops:\n{report}\n{}",
        summary.failed,
        summary.requests,
        summary.line,
        hap.failed_log()
    );
    let trouble: Vec<String> = TROUBLE
        .iter()
        .map(|c| (c, hap.count("BACKEND", c)))
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    assert!(
        trouble.is_empty(),
        "{what}: HAProxy sent requests to a backend that was not accepting: {} \
         (each costs its client a retry after HAProxy's 1 s turn-around, or an error)\n\
         loadgen: {}\nstops:\n{report}\n{}",
        trouble.join(", "),
        summary.line,
        hap.failed_log()
    );
    // The load really ran all along (200/s; half is plenty on a busy machine).
    assert!(
        summary.ok as f64 >= 100.0 * seconds,
        "{what}: only {} requests in {seconds:.0} s: {}",
        summary.ok,
        summary.line
    );
    for s in stops {
        assert_eq!(s.code, 0, "{what}: {s}");
        assert!(
            s.unrouted_after.is_some(),
            "{what}: HAProxy still routed to the backend until its process exited: {s}"
        );
    }
}

#[test]
fn rolling_restarts_lose_no_request() {
    // drainit's defaults: --drain-delay 3 (example: inter 1s x fall 2 + 1s).
    let stops = rolling_restarts(&[]);
    for s in &stops {
        assert!(
            s.exited_after >= Duration::from_millis(2900),
            "{s}: exited before the 3 s drain delay was over"
        );
    }
}

#[test]
fn rolling_restarts_with_drain_checks_lose_no_request() {
    // fall 2 => 2 unready answers, then --drain-linger (1 s); the 30 s
    // delay is only the upper bound.
    let stops = rolling_restarts(&[
        "--drain-checks",
        "2",
        "--drain-delay",
        "30",
        "--stop-timeout",
        "40",
    ]);
    for s in &stops {
        assert!(
            s.exited_after < Duration::from_secs(10),
            "{s}: the unready answers did not end the 30 s drain wait"
        );
    }
}

/// `--drain-until-quiet 0.5`: the wait ends half a second after HAProxy's
/// last request reached the app, sooner than the default 3 s delay, and
/// loses nothing. HAProxy connects from 127.0.0.2: drainit counts no
/// loopback peer (127.0.0.1) as traffic, as it would not a check run
/// inside the container.
#[test]
fn rolling_restarts_with_drain_until_quiet_lose_no_request() {
    let opts = [
        "--drain-until-quiet",
        "0.5",
        "--drain-delay",
        "0",
        "--drain-timeout",
        "30",
        "--stop-timeout",
        "40",
    ];
    let stops = rolling_restarts_from(&opts, Some(("127.0.0.2", "1s")));
    for s in &stops {
        assert!(
            s.exited_after < Duration::from_millis(3000),
            "{s}: no sooner than the 3 s fixed delay"
        );
        assert!(
            s.unrouted_after.is_some_and(|u| u < s.exited_after),
            "{s}: exited while HAProxy still routed to it"
        );
    }
}

/// Three backends behind HAProxy, each routed to, and a second of load on
/// them: (backends, HAProxy, when the load began, the load).
fn three_under_load(drain_opts: &[&str]) -> (Vec<Backend>, HaProxy, Instant, Load) {
    three_under_load_from(drain_opts, None)
}

/// As [`three_under_load`], HAProxy configured as `instance` (see
/// [`config_from_example`]).
fn three_under_load_from(
    drain_opts: &[&str],
    instance: Option<(&str, &str)>,
) -> (Vec<Backend>, HaProxy, Instant, Load) {
    let backends = start_backends(3, drain_opts);
    let hap = HaProxy::start_instance(&servers(&backends), instance);
    for b in &backends {
        hap.wait_routing(&b.name, true, Duration::from_secs(15));
    }
    let began = Instant::now();
    let load = Load::start(&hap.url());
    thread::sleep(Duration::from_secs(1));
    (backends, hap, began, load)
}

/// Three backends restarted one after another under load; returns what
/// each stop looked like once zero failures are asserted.
fn rolling_restarts(drain_opts: &[&str]) -> Vec<Stop> {
    rolling_restarts_from(drain_opts, None)
}

/// As [`rolling_restarts`], HAProxy configured as `instance`.
fn rolling_restarts_from(drain_opts: &[&str], instance: Option<(&str, &str)>) -> Vec<Stop> {
    if !need_haproxy() {
        return Vec::new();
    }
    let (mut backends, hap, began, load) = three_under_load_from(drain_opts, instance);
    let mut stops = Vec::new();
    for b in backends.iter_mut() {
        let t = Instant::now();
        let mut stop = stop_backend(&hap, b, t, "SIGTERM");
        thread::sleep(REPLACEMENT_STARTS_AFTER);
        b.restart();
        b.wait_ready();
        let served_before = hap.count(&b.name, "hrsp_2xx");
        hap.wait_routing(&b.name, true, Duration::from_secs(15));
        stop.up_again_after = Some(t.elapsed());
        stops.push((stop, served_before));
    }
    // Every restarted backend takes traffic again.
    thread::sleep(Duration::from_secs(1));
    for (stop, before) in &stops {
        let (status, after) = (
            hap.stat(&stop.name, "status"),
            hap.count(&stop.name, "hrsp_2xx"),
        );
        assert!(
            after > *before,
            "the restarted {} got no requests (status {status}, 2xx {before} -> {after})",
            stop.name
        );
    }
    let summary = load.finish();
    let stops: Vec<Stop> = stops.into_iter().map(|(s, _)| s).collect();
    eprintln!(
        "rolling restarts: {}\n{}",
        summary.line,
        stops.iter().map(|s| format!("  {s}\n")).collect::<String>()
    );
    let seconds = began.elapsed().as_secs_f64();
    check_outcome("3 rolling restarts", &summary, &stops, &hap, seconds);
    stops
}

/// An HAProxy pair in front of the same backends, one instance checking
/// every 0.5 s and one every 2 s (`fall 2`), each taking half the load:
/// with `--drain-checks 2` every backend waits for both to stop routing.
/// Counted together, the fast instance's two checks ended the wait while
/// the slow one still routed to the stopping app.
#[test]
fn rolling_restarts_behind_an_haproxy_pair_with_drain_checks_lose_no_request() {
    if !need_haproxy() {
        return;
    }
    let opts = [
        "--drain-checks",
        "2",
        "--drain-timeout",
        "30",
        "--stop-timeout",
        "40",
    ];
    let mut backends = start_backends(3, &opts);
    let pair = [
        HaProxy::start_instance(&servers(&backends), Some(("127.0.0.2", "500ms"))),
        HaProxy::start_instance(&servers(&backends), Some(("127.0.0.3", "2s"))),
    ];
    for hap in &pair {
        for b in &backends {
            hap.wait_routing(&b.name, true, Duration::from_secs(15));
        }
    }
    let began = Instant::now();
    let loads = pair.each_ref().map(|hap| Load::start_at(&hap.url(), "100"));
    thread::sleep(Duration::from_secs(2));
    let mut stops = Vec::new();
    for b in backends.iter_mut() {
        let t = Instant::now();
        b.init.signal(libc::SIGTERM);
        let mut unrouted = [None, None];
        while b.init.alive() && t.elapsed() < Duration::from_secs(30) {
            for (hap, at) in pair.iter().zip(unrouted.iter_mut()) {
                if at.is_none() && !hap.routes_to(&b.name) {
                    *at = Some(t.elapsed());
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        let code = b.init.code(Duration::from_secs(5));
        let exited = t.elapsed();
        for (i, at) in unrouted.iter().enumerate() {
            assert!(
                at.is_some_and(|at| at < exited),
                "{}: instance {i} still routed to it when it exited after {exited:?} ({unrouted:?})",
                b.name
            );
        }
        stops.push(Stop {
            name: b.name.clone(),
            from: "SIGTERM",
            unrouted_after: unrouted[1],
            exited_after: exited,
            code,
            up_again_after: None,
        });
        thread::sleep(REPLACEMENT_STARTS_AFTER);
        b.restart();
        b.wait_ready();
        for hap in &pair {
            hap.wait_routing(&b.name, true, Duration::from_secs(15));
        }
    }
    let seconds = began.elapsed().as_secs_f64();
    for (i, (load, hap)) in loads.into_iter().zip(&pair).enumerate() {
        let summary = load.finish();
        eprintln!("instance {i}: {}", summary.line);
        // Each instance carries half the load: half the usual floor.
        let what = format!("rolling restarts behind the HAProxy pair, instance {i}");
        check_outcome(&what, &summary, &stops, hap, seconds / 2.0);
    }
}

#[test]
fn drain_then_stop_loses_no_request() {
    if !need_haproxy() {
        return;
    }
    let (mut backends, hap, began, load) = three_under_load(&[]);
    // Scale down s3: drain it, wait until HAProxy stops routing, stop it.
    let b = &mut backends[2];
    let t = Instant::now();
    let out = Command::new(DRAINIT)
        .args(["drain", "--addr", &b.health().to_string()])
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "drainit drain failed: {said}");
    // Up to 2 x inter (fall 2) plus a check's duration; a missing drain
    // shows as the failed requests below, so do not stop at a timeout.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut unrouted = None;
    while Instant::now() < deadline {
        if !hap.routes_to(&b.name) {
            unrouted = Some(t.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let mut stop = stop_backend(&hap, b, t, "drainit drain");
    stop.unrouted_after = unrouted.or(stop.unrouted_after);
    // Keep the load on while HAProxy notices the stopped backend (fall 2).
    thread::sleep(Duration::from_secs(3));
    let summary = load.finish();
    eprintln!("drain then stop: {}\n  {stop}", summary.line);
    let seconds = began.elapsed().as_secs_f64();
    check_outcome("drain, then stop", &summary, &[stop], &hap, seconds);
    assert!(
        unrouted.is_some(),
        "HAProxy kept routing to the drained backend for 5 s"
    );
}
