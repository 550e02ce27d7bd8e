//! drainit: an init for containers that reaps zombies, forwards signals,
//! and drains load-balancer traffic before the app is asked to stop.
//!
//! The file list is the architecture:
//! - the init: `cli` (options, on the tables of `opts`), `spawn` (starting
//!   the child), `signals` (names, masks, threads that take none),
//!   `supervisor` (the signal loop), `reap` (zombies and descendants),
//!   `logger` (a log PID 1 never waits on);
//! - the drain: `drain` (the state machine), `probers` (the balancers'
//!   probes, for `--drain-checks`), `quiet` and `traffic` (the app's
//!   sockets, for `--drain-until-quiet`), `listeners` (who listens on which
//!   port);
//! - the endpoint: `health` (the routes), `control` (who may drain),
//!   `report` (/status and /metrics), `http` (HTTP/1.1, named by side:
//!   `http::conn` and `http::server` under the routes, `http::client` for
//!   checks and probes), `json`, `shared` (what the threads share);
//! - the app's readiness: `checks`; the client subcommands: `commands`.
//!
//! Errors follow one rule, catatonit's: before the child is spawned, a
//! failure is fatal (a usage error exits 2 with one line, anything else 1);
//! once the child runs, drainit logs the failure and goes on, because
//! whatever else breaks, PID 1 must keep forwarding signals and reaping.

pub mod checks;
pub mod cli;
pub mod commands;
pub mod control;
pub mod drain;
pub mod health;
pub mod http;
pub mod json;
pub mod listeners;
pub mod logger;
pub mod opts;
pub mod probers;
pub mod quiet;
pub mod reap;
pub mod report;
pub mod shared;
pub mod signals;
pub mod spawn;
pub mod supervisor;
/// The quiet drain's sensor: traffic on the app's ports, from sock_diag.
pub mod traffic;

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use libc::c_int;
use log::{debug, error, info, warn};
use nix::sys::prctl;

use crate::cli::{Config, Invocation, SocketChoice, EXIT_USAGE};
use crate::control::ControlSocket;
use crate::drain::Machine;
use crate::health::HealthSettings;
use crate::http::server::Listener;
use crate::shared::Shared;
use crate::signals::Mask;
use crate::spawn::Inherited;
use crate::spawn::CONTROL_TOKEN_ENV;
use crate::supervisor::Supervisor;

/// drainit's whole life: the name it was invoked as (argv[0]), its
/// arguments, and the signal state captured before anything could change it.
pub fn entry(
    inherited: std::io::Result<Inherited>,
    invoked_as: OsString,
    args: Vec<OsString>,
) -> c_int {
    let env = |k: &str| std::env::var(k).ok();
    if let Some(sub) = args.first().filter(|a| commands::is_subcommand(a)) {
        return commands::run(&sub.to_string_lossy(), &args[1..], &env);
    }
    let config = match cli::parse(&invoked_as, &args, &env) {
        Ok(Invocation::Run(config)) => config,
        Ok(Invocation::Help) => {
            print!("{}", cli::help());
            return 0;
        }
        Ok(Invocation::Version) => {
            println!("drainit {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Ok(Invocation::License) => {
            print!("{}", include_str!("../LICENSE"));
            return 0;
        }
        Err(e) => {
            eprintln!("drainit: {e}");
            return EXIT_USAGE;
        }
    };
    logger::init(&config.log_filter);
    // One log line instead of the default multi-line panic report.
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("panic");
        let place = info
            .location()
            .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        error!("internal error{place}: {message}");
    }));
    let inherited = match inherited {
        Ok(i) => i,
        Err(e) => return fail(&format!("cannot read the inherited signal state: {e}")),
    };
    let code = run(*config, inherited);
    logger::flush(LOG_PATIENCE);
    code
}

/// How long drainit's start and exit wait for a log that makes no progress.
const LOG_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

fn fail(message: &str) -> c_int {
    error!("{message}");
    1
}

fn run(config: Config, inherited: Inherited) -> c_int {
    if let Err(e) = inherited.take_back_sigchld() {
        return fail(&format!("cannot take back SIGCHLD: {e}"));
    }
    // Blocked before any thread exists, so every thread inherits the mask
    // and only the supervisor's sigtimedwait ever takes these signals.
    if let Err(e) = Mask::ALL.block() {
        return fail(&format!("cannot block signals: {e}"));
    }
    if config.token_on_command_line {
        warn!("--control-token can be read by any user in /proc/PID/cmdline; pass the token as {CONTROL_TOKEN_ENV} or with --control-token-file");
    }
    let reaps_orphans = match become_reaper(&config) {
        Ok(reaps) => reaps,
        Err(e) => return fail(&e),
    };
    warn_if_over_budget(&config);
    let machine = Machine::new(config.drain.clone(), config.stop.clone());
    if config.setsid {
        spawn::give_up_terminal();
    }
    let shared = Arc::new(Shared::new(machine));
    let endpoints = match bind_endpoints(&config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("drainit: {e}");
            return EXIT_USAGE;
        }
    };
    // Start-up warnings come out before anything the child writes.
    logger::flush(LOG_PATIENCE);
    // Relative paths of checks mean where drainit started, wherever it is
    // by the time they run.
    let start_dir = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let child = match spawn::spawn(&config.program, &inherited, config.setsid) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("drainit: {}", e.message);
            return e.code;
        }
    };
    if config.leave_workdir {
        if let Err(e) = std::env::set_current_dir("/") {
            debug!("cannot move to /: {e}");
        }
    }
    shared
        .child_pid
        .store(child, std::sync::atomic::Ordering::Relaxed);
    let socket_file = endpoints.control.as_ref().map(|c| c.file.clone());
    if let Err(e) = serve_endpoints(endpoints, &config, &shared) {
        error!("{e}; supervision goes on without it");
    }
    if !config.checks.gates_readiness() {
        checks::ready_without_checks(&shared);
    }
    if config.drain.quiet.is_some() && !config.drain.on.is_empty() {
        if let Err(e) = quiet::start(Arc::clone(&shared), config.drain_ports.clone()) {
            warn!("cannot start the traffic watcher: {e}; drain waits end at their timeout");
            shared.machine(|m| m.traffic_unwatchable(e.to_string()));
        }
    }
    if let Err(e) = checks::start(&config.checks, Arc::clone(&shared), inherited, start_dir) {
        warn!("cannot start the checks thread: {e}; readiness stays as it is");
    }
    let settings = supervisor::Settings {
        process_group: config.process_group,
        // What the child's session left behind is out of drainit's sight
        // unless it reaps orphans; dumb-init's answer is a SIGTERM to the
        // whole group.
        term_group_on_exit: config.setsid && !reaps_orphans,
        warn_on_reap: config.warn_on_reap,
        remap_exit: config.remap_exit,
    };
    let code = Supervisor::new(settings, shared, child).run();
    if let Some(file) = socket_file {
        file.remove();
    }
    code
}

/// As PID 1, drainit inherits every orphan. Otherwise it must ask for
/// them, unless whoever started it has already made it a subreaper.
/// Returns whether orphans come to drainit.
fn become_reaper(config: &Config) -> Result<bool, String> {
    if let Some(sig) = config.pdeath_signal {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and nothing
        // else; nix's wrapper cannot name real-time signals.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) } != 0 {
            return Err(format!(
                "cannot set the parent-death signal: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    if std::process::id() == 1 || prctl::get_child_subreaper().unwrap_or(false) {
        return Ok(true);
    }
    if !config.subreaper {
        warn!(
            "not running as PID 1 and not a subreaper (-s): orphaned processes will not be reaped"
        );
        return Ok(false);
    }
    prctl::set_child_subreaper(true)
        .map(|()| true)
        .map_err(|e| format!("cannot register as child subreaper: {e}"))
}

/// A stop that outlasts the orchestrator's budget ends in its SIGKILL,
/// mid-request.
fn warn_if_over_budget(config: &Config) {
    if config.drain.on.is_empty() {
        return;
    }
    let wait = config.drain.longest_wait();
    let total = wait + config.stop.grace.unwrap_or_default();
    if total > config.stop_timeout {
        let parts = match config.stop.grace {
            Some(grace) => format!("drain wait ({wait:?}) + grace ({grace:?}) = {total:?}"),
            None => format!("drain wait ({wait:?})"),
        };
        warn!(
            "{parts} exceeds the stop timeout of {:?}: the orchestrator will SIGKILL first (raise docker stop -t / stop_grace_period / terminationGracePeriodSeconds)",
            config.stop_timeout
        );
    }
}

/// The listening sockets, bound before the child starts so that a taken
/// port is a startup error; served once the child runs, so it starts sooner.
struct Endpoints {
    health: Option<TcpListener>,
    agent: Option<TcpListener>,
    control: Option<ControlSocket>,
}

fn bind_endpoints(config: &Config) -> Result<Endpoints, String> {
    Ok(Endpoints {
        health: config.health_addr.map(health::bind).transpose()?,
        agent: config.agent_addr.map(health::bind_agent).transpose()?,
        control: bind_control_socket(&config.control_socket)?,
    })
}

/// A socket asked for by path must be had; the default one is a
/// convenience that another drainit, or a read-only /run and temp
/// directory, may take away.
fn bind_control_socket(choice: &SocketChoice) -> Result<Option<ControlSocket>, String> {
    let at = |path: &Path| {
        format!(
            "the control socket {}; give another path with --control-socket PATH, or none",
            path.display()
        )
    };
    match choice {
        SocketChoice::Off => Ok(None),
        SocketChoice::At(path) => match ControlSocket::bind(path) {
            Ok(Some(socket)) => Ok(Some(socket)),
            Ok(None) => Err(format!("another process serves {}", at(path))),
            Err(e) => Err(format!("cannot create {}: {e}", at(path))),
        },
        SocketChoice::Default => {
            for path in control::default_sockets() {
                match ControlSocket::bind(&path) {
                    Ok(Some(socket)) => return Ok(Some(socket)),
                    Ok(None) => {
                        warn!("another drainit serves {}; this one has none", at(&path));
                        return Ok(None);
                    }
                    Err(e) => info!("no control socket at {}: {e}", path.display()),
                }
            }
            Ok(None)
        }
    }
}

fn serve_endpoints(
    endpoints: Endpoints,
    config: &Config,
    shared: &Arc<Shared>,
) -> Result<(), String> {
    let mut listeners: Vec<Listener> = endpoints.health.into_iter().map(Listener::Tcp).collect();
    if let Some(socket) = endpoints.control {
        listeners.push(Listener::Unix(socket.listener));
    }
    if !listeners.is_empty() {
        let settings = HealthSettings {
            control: config.control.clone(),
            drain_status: config.drain.status,
        };
        health::start(listeners, Arc::clone(shared), settings)
            .map_err(|e| format!("cannot start the health thread: {e}"))?;
    }
    if let Some(listener) = endpoints.agent {
        health::start_agent(listener, Arc::clone(shared))
            .map_err(|e| format!("cannot start the agent-check thread: {e}"))?;
    }
    Ok(())
}
