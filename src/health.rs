//! The health endpoint the proxy, the kubelet and `drainit probe` ask.
//!
//! It runs on its own thread, apart from the signal loop: it only reads the
//! shared state and asks the machine for transitions, so a slow client or a
//! panic here never delays a signal. Routing is a plain function of the
//! request so it can be tested and fuzzed without sockets.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::{Instant, UNIX_EPOCH};

use log::{error, warn};
use nix::sys::socket::{listen, Backlog};

use crate::checks::CheckReport;
use crate::control::{self, ControlSettings};
use crate::drain::State;
use crate::http::conn::Limits;
use crate::http::server::{self, Listener};
use crate::http::{Peer, Reply, Request};
use crate::listeners;
use crate::logger::{self, Throttle};
use crate::shared::Shared;
use crate::signals;

/// What the health server needs from the configuration.
#[derive(Clone)]
pub struct HealthSettings {
    pub control: ControlSettings,
    pub drain_status: u16,
}

/// Pending connections the kernel may queue for accept(). std listens
/// with 128: a burst of new connections (a flood reconnecting as fast as
/// its sockets are evicted) overflowed that, the kernel dropped the SYNs of
/// real probes, and they came in only on the client's retransmit a second
/// later. The kernel caps this at net.core.somaxconn.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds the health port. Failing here is a startup error: a container
/// whose health port is taken would never look ready.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    let listener = bind_or_explain(addr, "health checks", "--health-addr")?;
    // Listening again on a listening socket only changes its backlog.
    if let Err(e) = listen(
        &listener,
        Backlog::new(LISTEN_BACKLOG).unwrap_or(Backlog::MAXCONN),
    ) {
        warn!("cannot raise the health port's backlog: {e}");
    }
    Ok(listener)
}

/// Binds `addr`, or says in one line why not and what to do: a taken port
/// names the process that holds it when /proc shows it.
fn bind_or_explain(addr: SocketAddr, what: &str, option: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| {
        let mut why = format!("cannot listen for {what} on {addr}: {e}");
        if e.kind() == io::ErrorKind::AddrInUse {
            if let Some(h) = listeners::holder_of(addr.port()) {
                why.push_str(&format!("; pid {} ({}) listens there", h.pid, h.comm));
            }
            why.push_str(&format!(
                "; give drainit another port with {option} :PORT, or turn it off with {option} none"
            ));
        }
        why
    })
}

/// Serves requests on their own thread until the process exits. A panic
/// in a handler costs that one request (answered 500); a panic anywhere
/// else in the server drops its connections and serving starts over.
pub fn start(
    listeners: Vec<Listener>,
    shared: Arc<Shared>,
    settings: HealthSettings,
) -> io::Result<()> {
    signals::spawn(thread::Builder::new().name("health".into()), move || {
        let handler = |req: &Request| {
            panic::catch_unwind(AssertUnwindSafe(|| route(req, &shared, &settings))).unwrap_or_else(
                |_| {
                    error!(
                        "the health handler panicked on {} {}; serving goes on",
                        req.method, req.url
                    );
                    Reply::error(500, "internal error")
                },
            )
        };
        loop {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                server::serve(&listeners, Limits::default(), &handler)
            }));
            match outcome {
                Err(_) => error!("the health server panicked; starting it over"),
                Ok(e) => {
                    error!("the health server stopped: {e}; supervision goes on without it");
                    return;
                }
            }
        }
    })?;
    Ok(())
}

/// A real fault, as the kernel reports one: it must end drainit even with
/// every signal blocked.
#[cfg(debug_assertions)]
fn illegal_instruction() -> ! {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: ud2 raises SIGILL and never returns; it touches no memory.
    unsafe {
        std::arch::asm!("ud2", options(noreturn))
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: udf raises SIGILL and never returns; it touches no memory.
    unsafe {
        std::arch::asm!("udf #0", options(noreturn))
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    std::process::abort()
}

/// The paths served, as counted in /metrics.
const PATHS: [&str; 8] = [
    "/livez",
    "/readyz",
    "/health",
    "/healthz",
    "/status",
    "/metrics",
    "/sethealth/ko",
    "/sethealth/ok",
];

/// Answers one request. Paths match exactly: no normalisation, so
/// `//sethealth/ko` or `/sethealth/ko/../ok` are simply unknown.
pub fn route(req: &Request, shared: &Shared, settings: &HealthSettings) -> Reply {
    let path = req.url.split_once('?').map_or(req.url, |(p, _)| p);
    // Fault injection for the tests; compiled out of release builds.
    #[cfg(debug_assertions)]
    if matches!(req.peer, Some(Peer::Tcp(ip)) if control::is_loopback(ip)) {
        match path {
            "/debug/panic" => panic!("panic injected through /debug/panic"),
            "/debug/fault" => illegal_instruction(),
            _ => {}
        }
    }
    let Some(&known) = PATHS.iter().find(|p| **p == path) else {
        return Reply::error(404, "not found");
    };
    let control = known.starts_with("/sethealth/");
    let allowed = if control {
        ["GET", "POST"]
    } else {
        ["GET", "HEAD"]
    };
    if !allowed.contains(&req.method) {
        let mut reply = Reply::error(405, "method not allowed");
        reply.allow = Some(if control { "GET, POST" } else { "GET, HEAD" });
        return reply;
    }
    let reply = match known {
        "/livez" => livez(shared),
        "/readyz" | "/health" => readyz(shared, settings),
        "/healthz" => healthz(shared),
        "/status" => Reply::json(200, status_json(shared)),
        "/metrics" => metrics(shared),
        _ => control_reply(req, known == "/sethealth/ko", shared, settings),
    };
    shared.metrics.count_answer(known, reply.code);
    reply
}

/// `{"status":..,"state":..}`, the body of every probe answer.
fn status_reply(code: u16, status: &str, state: &str) -> Reply {
    Reply::json(
        code,
        format!("{{\"status\":\"{status}\",\"state\":\"{state}\"}}\n"),
    )
}

fn livez(shared: &Shared) -> Reply {
    let (state, child_alive) = shared.machine(|m| (m.state().name(), m.child_alive()));
    // A stale --live-file means the app's event loop is stuck although the
    // process runs: that is exactly what liveness must report. Readiness
    // checks do not count here (a failing database is no reason to restart).
    let live_file_fresh = shared
        .check_reports()
        .iter()
        .filter(|r| r.liveness)
        .all(|r| r.ok);
    if child_alive && live_file_fresh {
        status_reply(200, "healthy", state)
    } else {
        status_reply(503, "unhealthy", state)
    }
}

fn readyz(shared: &Shared, settings: &HealthSettings) -> Reply {
    let (ready, draining, met, state) = shared.machine(|m| {
        let draining = matches!(m.state(), State::Draining(_) | State::Stopping(_));
        let met = draining && m.unready_answered(Instant::now());
        (m.is_ready(), draining, met, m.state().name())
    });
    if met {
        shared.waker.wake();
    }
    match (ready, draining) {
        (true, _) => status_reply(200, "healthy", "ready"),
        (false, true) => status_reply(settings.drain_status, "draining", state),
        (false, false) => status_reply(503, "unhealthy", state),
    }
}

fn healthz(shared: &Shared) -> Reply {
    let ready = shared.machine(|m| m.is_ready());
    let reports = shared.check_reports();
    let all_pass = reports.iter().all(|r| r.ok);
    let (code, status) = if ready && all_pass {
        (200, "healthy")
    } else {
        (503, "unhealthy")
    };
    let checks = checks_json(&reports);
    Reply::json(
        code,
        format!("{{\"status\":\"{status}\",\"checks\":{checks}}}\n"),
    )
}

/// Each check's last result, as a JSON array.
fn checks_json(reports: &[CheckReport]) -> String {
    let items: Vec<String> = reports.iter().map(CheckReport::to_json).collect();
    format!("[{}]", items.join(","))
}

fn control_reply(req: &Request, drain: bool, shared: &Shared, settings: &HealthSettings) -> Reply {
    if let Err(why) = control::check(req, &settings.control) {
        log_refusal(req, why);
        return Reply::error(403, why);
    }
    let (result, state) = shared.machine(|m| (m.manual(drain, Instant::now()), m.state().name()));
    match result {
        Ok(()) => Reply::json(
            200,
            format!("{{\"status\":\"ok\",\"state\":\"{state}\"}}\n"),
        ),
        Err(refused) => Reply::json(
            409,
            format!("{{\"error\":\"{}\",\"state\":\"{state}\"}}\n", refused.0),
        ),
    }
}

/// Logs a refused control request, throttled: every refusal is an
/// outsider's request, and an outsider must not decide how long drainit's
/// log grows.
fn log_refusal(req: &Request, why: &str) {
    static REFUSED: Throttle = Throttle::new();
    REFUSED.warn(|| {
        let peer = match req.peer {
            Some(Peer::Tcp(ip)) => ip.to_string(),
            Some(Peer::ControlSocket) => "the control socket".into(),
            None => "an unknown peer".into(),
        };
        format!("refused {} {} from {peer}: {why}", req.method, req.url)
    });
}

fn status_json(shared: &Shared) -> String {
    let (state, drains) = shared.machine(|m| (m.state().clone(), m.drains()));
    let child = shared.child_pid.load(std::sync::atomic::Ordering::Relaxed);
    let mut out = format!(
        "{{\"state\":\"{}\",\"child_pid\":{},\"uptime_seconds\":{:.3},\"drains\":{}",
        state.name(),
        if child > 0 {
            child.to_string()
        } else {
            "null".into()
        },
        shared.started.elapsed().as_secs_f64(),
        drains,
    );
    match state.drain() {
        Some(d) => {
            let started = d
                .started_at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |t| t.as_secs_f64());
            let _ = write!(
                out,
                ",\"drain\":{{\"reason\":\"{}\",\"started_unix\":{started:.3},\"probes_answered\":{},\"waited_seconds\":{}}}",
                d.reason,
                d.unready_answers,
                d.waited.map_or("null".into(), |w| format!("{:.3}", w.as_secs_f64())),
            );
        }
        None => out.push_str(",\"drain\":null"),
    }
    match &state {
        State::Stopping(stop) => {
            let _ = write!(out, ",\"stop_signal\":\"{}\"", signals::name(stop.signal));
        }
        State::Exited { code, .. } => {
            let _ = write!(out, ",\"exit_code\":{code}");
        }
        _ => {}
    }
    let _ = writeln!(
        out,
        ",\"checks\":{}}}",
        checks_json(&shared.check_reports())
    );
    out
}

/// The `# HELP` and `# TYPE` lines that open a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn metrics(shared: &Shared) -> Reply {
    let mut out = String::new();
    let (state, drains, child_up) =
        shared.machine(|m| (m.state().clone(), m.drains(), m.child_alive()));
    let current = state.name();
    family(
        &mut out,
        "drainit_state",
        "gauge",
        "Current drain state (1 for the current one).",
    );
    for name in State::NAMES {
        let _ = writeln!(
            out,
            "drainit_state{{state=\"{name}\"}} {}",
            u8::from(name == current)
        );
    }
    family(
        &mut out,
        "drainit_child_up",
        "gauge",
        "Whether the child is running.",
    );
    let _ = writeln!(out, "drainit_child_up {}", u8::from(child_up));
    family(
        &mut out,
        "drainit_drains_total",
        "counter",
        "Drains started.",
    );
    let _ = writeln!(out, "drainit_drains_total {drains}");
    let waited = state
        .drain()
        .and_then(|d| d.waited)
        .map_or(0.0, |w| w.as_secs_f64());
    family(
        &mut out,
        "drainit_drain_duration_seconds",
        "gauge",
        "How long the last drain held the stop signal.",
    );
    let _ = writeln!(out, "drainit_drain_duration_seconds {waited:.3}");
    family(
        &mut out,
        "drainit_signals_forwarded_total",
        "counter",
        "Signals forwarded to the child.",
    );
    for (sig, n) in shared.metrics.forwarded() {
        let _ = writeln!(
            out,
            "drainit_signals_forwarded_total{{signal=\"{}\"}} {n}",
            signals::name(sig)
        );
    }
    let reaped = shared
        .metrics
        .reaped
        .load(std::sync::atomic::Ordering::Relaxed);
    family(
        &mut out,
        "drainit_zombies_reaped_total",
        "counter",
        "Orphans and other children reaped.",
    );
    let _ = writeln!(out, "drainit_zombies_reaped_total {reaped}");
    family(
        &mut out,
        "drainit_log_lines_dropped_total",
        "counter",
        "Log lines dropped because the log could not be written fast enough.",
    );
    let _ = writeln!(
        out,
        "drainit_log_lines_dropped_total {}",
        logger::dropped_total()
    );
    family(
        &mut out,
        "drainit_health_responses_total",
        "counter",
        "Health answers by path and status.",
    );
    for (path, code, n) in shared.metrics.answers() {
        let _ = writeln!(
            out,
            "drainit_health_responses_total{{path=\"{path}\",code=\"{code}\"}} {n}"
        );
    }
    Reply {
        code: 200,
        content_type: "text/plain; version=0.0.4",
        body: out,
        allow: None,
    }
}

/// Binds the agent-check port; a taken port is a startup error too.
pub fn bind_agent(addr: SocketAddr) -> Result<TcpListener, String> {
    bind_or_explain(addr, "agent checks", "--agent-addr")
}

/// HAProxy's agent-check: one line per connection, `ready`, `drain`
/// (weight 0: no new sessions) or `down` once the child is stopping.
pub fn start_agent(listener: TcpListener, shared: Arc<Shared>) -> io::Result<()> {
    signals::spawn(thread::Builder::new().name("agent".into()), move || {
        for mut stream in listener.incoming().flatten() {
            let word = shared.machine(|m| match m.state() {
                State::Ready => "ready",
                State::Stopping(_) | State::Exited { .. } => "down",
                _ => "drain",
            });
            let _ = stream.set_write_timeout(Some(std::time::Duration::from_secs(1)));
            let _ = stream.write_all(format!("{word}\n").as_bytes());
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::{DrainPolicy, Machine, StopPolicy};

    fn shared() -> Shared {
        let mut m = Machine::new(DrainPolicy::default(), StopPolicy::default());
        m.checks_changed(true, "test");
        Shared::new(m)
    }

    fn settings() -> HealthSettings {
        HealthSettings {
            control: ControlSettings {
                token: Some("s3cret-token".into()),
                ..ControlSettings::default()
            },
            drain_status: 503,
        }
    }

    fn get<'a>(url: &'a str, peer: &str, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request {
            method: "GET",
            url,
            peer: Some(Peer::Tcp(peer.parse().unwrap())),
            headers,
        }
    }

    #[test]
    fn control_needs_loopback_or_token() {
        let s = shared();
        let remote = "10.1.2.3";
        assert_eq!(
            route(&get("/sethealth/ko", remote, &[]), &s, &settings()).code,
            403
        );
        assert_eq!(
            route(
                &get(
                    "/sethealth/ko",
                    remote,
                    &[("Authorization", "Bearer s3cret-tokeX")]
                ),
                &s,
                &settings()
            )
            .code,
            403
        );
        assert_eq!(
            route(&get("//sethealth/ko", "127.0.0.1", &[]), &s, &settings()).code,
            404
        );
        assert_eq!(
            route(
                &get("/sethealth/ko/../ok", "127.0.0.1", &[]),
                &s,
                &settings()
            )
            .code,
            404
        );
        assert!(s.machine(|m| m.is_ready()));
        assert_eq!(
            route(
                &get(
                    "/sethealth/ko",
                    remote,
                    &[("Authorization", "Bearer s3cret-token")]
                ),
                &s,
                &settings()
            )
            .code,
            200
        );
        assert!(!s.machine(|m| m.is_ready()));
        assert_eq!(
            route(
                &get("/sethealth/ok", "::ffff:127.0.0.1", &[]),
                &s,
                &settings()
            )
            .code,
            200
        );
        assert!(s.machine(|m| m.is_ready()));
    }

    #[test]
    fn methods_and_unknown_paths() {
        let s = shared();
        let mut req = get("/readyz", "127.0.0.1", &[]);
        req.method = "POST";
        let reply = route(&req, &s, &settings());
        assert_eq!((reply.code, reply.allow), (405, Some("GET, HEAD")));
        assert_eq!(
            route(&get("/nope", "127.0.0.1", &[]), &s, &settings()).code,
            404
        );
        assert_eq!(
            route(&get("/readyz?x=1", "127.0.0.1", &[]), &s, &settings()).code,
            200
        );
    }
}
