//! The health endpoint the proxy, the kubelet and `drainit probe` ask.
//!
//! It runs on its own thread, apart from the signal loop: it only reads the
//! shared state and asks the machine for transitions, so a slow client or a
//! panic here never delays a signal. Routing is a plain function of the
//! request so it can be tested and fuzzed without sockets.

use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use log::{error, warn};
use nix::sys::socket::{listen, Backlog};

use crate::control::{self, ControlSettings};
use crate::drain::State;
use crate::http::conn::Limits;
use crate::http::server::{self, Listener};
use crate::http::{Peer, Reply, Request};
use crate::listeners;
use crate::logger::Throttle;
use crate::probers::ProberId;
use crate::report;
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
        "/readyz" | "/health" => readyz(req, shared, settings),
        "/healthz" => healthz(shared),
        "/status" => Reply::json(200, report::status(shared)),
        "/metrics" => report::metrics(shared),
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

/// Readiness; each answer also tells the drain machine which prober asked.
fn readyz(req: &Request, shared: &Shared, settings: &HealthSettings) -> Reply {
    let prober = match req.peer {
        Some(Peer::Tcp(ip)) => Some(ProberId::new(ip, req.header("user-agent"))),
        _ => None,
    };
    let (ready, draining, wake, state) = shared.machine(|m| {
        let wake = m.readiness_probed(prober, Instant::now());
        let draining = matches!(m.state(), State::Draining(_) | State::Stopping(_));
        (m.is_ready(), draining, wake, m.state().name())
    });
    if wake {
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
    let checks = report::checks_json(&reports);
    Reply::json(
        code,
        format!("{{\"status\":\"{status}\",\"checks\":{checks}}}\n"),
    )
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
