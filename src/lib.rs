//! drainit: an init for containers that reaps zombies, forwards signals,
//! and drains load-balancer traffic before the app is asked to stop.
//!
//! The file list is the architecture: `cli` (options, on the tables of
//! `opts`), `spawn` (starting the child), `supervisor` (the signal loop),
//! `reap` (zombies and descendants), `drain` (the state machine), `health`
//! (the endpoint's routes), `http` (HTTP/1.1: `http::conn` and
//! `http::server`, the bounded server under the routes, and
//! `http::client`, the GET of checks and probes), `shared` (what the
//! threads share), `checks` (readiness of the app), `json` (escaping and
//! reading JSON), `commands` (the `probe`, `drain`, `undrain` and `status`
//! subcommands).

pub mod checks;
pub mod cli;
pub mod commands;
pub mod drain;
pub mod health;
pub mod http;
pub mod json;
pub mod listeners;
pub mod logger;
pub mod opts;
pub mod reap;
pub mod shared;
pub mod signals;
pub mod spawn;
pub mod supervisor;

use std::ffi::OsString;
use std::net::TcpListener;
use std::sync::Arc;

use libc::c_int;
use log::{error, warn};
use nix::sys::prctl;

use crate::cli::{Config, Invocation, EXIT_USAGE};
use crate::drain::Machine;
use crate::health::HealthSettings;
use crate::shared::Shared;
use crate::spawn::Inherited;
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
    let forwardable = signals::forwardable();
    if let Err(e) = signals::block(&forwardable) {
        return fail(&format!("cannot block signals: {e}"));
    }
    if let Err(e) = become_reaper(&config) {
        return fail(&e);
    }
    warn_if_over_budget(&config);
    let mut machine = Machine::new(config.drain.clone(), config.stop.clone());
    if config.setsid && spawn::give_up_terminal() {
        machine.ignore_once(&[libc::SIGHUP, libc::SIGCONT]);
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
    let child = match spawn::spawn(&config.program, &inherited, config.setsid) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("drainit: {}", e.message);
            return e.code;
        }
    };
    shared
        .child_pid
        .store(child, std::sync::atomic::Ordering::Relaxed);
    if let Err(e) = serve_endpoints(endpoints, &config, &shared) {
        error!("{e}; supervision goes on without it");
    }
    if !config.checks.gates_readiness() {
        checks::ready_without_checks(&shared);
    }
    if let Err(e) = checks::start(&config.checks, Arc::clone(&shared), inherited) {
        warn!("cannot start the checks thread: {e}; readiness stays as it is");
    }
    let settings = supervisor::Settings {
        process_group: config.process_group,
        warn_on_reap: config.warn_on_reap,
        remap_exit: config.remap_exit,
    };
    Supervisor::new(settings, shared, forwardable, child).run()
}

/// As PID 1, drainit inherits every orphan. Otherwise it must ask for
/// them, unless whoever started it has already made it a subreaper.
fn become_reaper(config: &Config) -> Result<(), String> {
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
        return Ok(());
    }
    if !config.subreaper {
        warn!(
            "not running as PID 1 and not a subreaper (-s): orphaned processes will not be reaped"
        );
        return Ok(());
    }
    prctl::set_child_subreaper(true).map_err(|e| format!("cannot register as child subreaper: {e}"))
}

/// A stop that outlasts the orchestrator's budget ends in its SIGKILL,
/// mid-request.
fn warn_if_over_budget(config: &Config) {
    if config.drain.on.is_empty() {
        return;
    }
    let grace = config.stop.grace.unwrap_or_default();
    let total = config.drain.longest_wait() + grace;
    if total > config.stop_timeout {
        warn!(
            "drain wait ({:?}) + grace ({:?}) = {:?} exceeds the stop timeout of {:?}: the orchestrator will SIGKILL first (raise docker stop -t / stop_grace_period / terminationGracePeriodSeconds)",
            config.drain.longest_wait(),
            grace,
            total,
            config.stop_timeout
        );
    }
}

/// The listening sockets, bound before the child starts so that a taken
/// port is a startup error; served once the child runs, so it starts sooner.
struct Endpoints {
    health: Option<TcpListener>,
    agent: Option<TcpListener>,
}

fn bind_endpoints(config: &Config) -> Result<Endpoints, String> {
    Ok(Endpoints {
        health: config.health_addr.map(health::bind).transpose()?,
        agent: config.agent_addr.map(health::bind_agent).transpose()?,
    })
}

fn serve_endpoints(
    endpoints: Endpoints,
    config: &Config,
    shared: &Arc<Shared>,
) -> Result<(), String> {
    if let Some(listener) = endpoints.health {
        let settings = HealthSettings {
            control_token: config.control_token.clone(),
            drain_status: config.drain.status,
        };
        health::start(listener, Arc::clone(shared), settings)
            .map_err(|e| format!("cannot start the health thread: {e}"))?;
    }
    if let Some(listener) = endpoints.agent {
        health::start_agent(listener, Arc::clone(shared))
            .map_err(|e| format!("cannot start the agent-check thread: {e}"))?;
    }
    Ok(())
}
