//! The command line and its environment variables.
//!
//! Every option is one entry of [`OPTIONS`]: its flags, variables, help
//! and what it does (see `opts`). A flag always wins over its variable.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libc::c_int;

use crate::checks::{self, CheckSettings};
use crate::control::{self, ControlSettings, TcpControl};
use crate::drain::{DrainPolicy, StopPolicy};
use crate::http::{client, server};
use crate::opts::{self, env, flag, list, valued, Env, EnvRead, Opt};
use crate::signals;
use crate::spawn::CONTROL_TOKEN_ENV;

/// Exit code for a bad command line or configuration.
pub const EXIT_USAGE: i32 = 2;

/// Where the health server listens unless told otherwise. All interfaces,
/// because the proxy or kubelet that probes it is outside the container.
pub const DEFAULT_HEALTH_ADDR: &str = "0.0.0.0:8099";

/// Everything `drainit [OPTIONS] [--] PROGRAM [ARGS...]` was asked to do.
#[derive(Debug)]
pub struct Config {
    pub program: Vec<OsString>,
    pub subreaper: bool,
    pub process_group: bool,
    /// The child gets its own session (dumb-init's default mode).
    pub setsid: bool,
    /// Once the child runs, drainit moves to / as dumb-init does, so that
    /// it keeps no directory (and no file system) busy.
    pub leave_workdir: bool,
    pub pdeath_signal: Option<c_int>,
    pub remap_exit: Vec<i32>,
    pub log_filter: String,
    verbosity: u32,
    pub warn_on_reap: bool,
    pub health_addr: Option<SocketAddr>,
    pub agent_addr: Option<SocketAddr>,
    pub control: ControlSettings,
    pub control_socket: SocketChoice,
    /// The token was given as --control-token, which any user can read in
    /// /proc/PID/cmdline.
    pub token_on_command_line: bool,
    pub drain: DrainPolicy,
    /// The app's ports to watch for quiet, instead of those found.
    pub drain_ports: Option<Vec<u16>>,
    pub stop: StopPolicy,
    pub stop_timeout: Duration,
    pub checks: CheckSettings,
    /// --help or --version, which end parsing with no program needed.
    asked: Option<Invocation>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            program: Vec::new(),
            subreaper: false,
            process_group: false,
            setsid: false,
            leave_workdir: false,
            pdeath_signal: None,
            remap_exit: Vec::new(),
            log_filter: "warn".into(),
            verbosity: 0,
            warn_on_reap: false,
            health_addr: server::parse_addr(DEFAULT_HEALTH_ADDR).ok().flatten(),
            agent_addr: None,
            control: ControlSettings::default(),
            control_socket: SocketChoice::Default,
            token_on_command_line: false,
            drain: DrainPolicy::default(),
            drain_ports: None,
            stop: StopPolicy::default(),
            stop_timeout: Duration::from_secs(10),
            checks: CheckSettings::default(),
            asked: None,
        }
    }
}

/// Where drainit's control socket goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketChoice {
    /// The first of `control::default_sockets` that can be had.
    Default,
    Off,
    /// Here, or drainit does not start.
    At(PathBuf),
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Run(Box<Config>),
    Help,
    Version,
    License,
}

/// Every option of `drainit [OPTIONS] [--] PROGRAM`, each with what it does.
pub static OPTIONS: &[Opt<Config>] = &[
    flag(
        "help",
        Some('h'),
        &[],
        "print this help and exit",
        |c, _| {
            c.asked = Some(Invocation::Help);
            Ok(())
        },
    ),
    flag(
        "version",
        Some('V'),
        &[],
        "print the version and exit",
        |c, _| {
            c.asked = Some(Invocation::Version);
            Ok(())
        },
    ),
    flag(
        "license",
        Some('l'),
        &[],
        "print the license and exit",
        |c, _| {
            c.asked = Some(Invocation::License);
            Ok(())
        },
    ),
    flag(
        "verbose",
        Some('v'),
        &[
            Env {
                name: "DRAINIT_LOG",
                read: EnvRead::Custom(set_log_filter),
            },
            Env {
                name: "RUST_LOG",
                read: EnvRead::Custom(set_log_filter),
            },
            Env {
                name: "TINI_VERBOSITY",
                read: EnvRead::Custom(set_tini_verbosity),
            },
            Env {
                name: "DUMB_INIT_DEBUG",
                read: EnvRead::Custom(set_dumb_init_debug),
            },
        ],
        "log more (repeat for debug, trace); the env takes a level or env_logger filter",
        |c, _| {
            c.verbosity += 1;
            c.log_filter = level_for(c.verbosity).into();
            Ok(())
        },
    ),
    flag(
        "subreaper",
        Some('s'),
        &[env("DRAINIT_SUBREAPER"), TINI_PRESENCE_SUBREAPER],
        "register as child subreaper when not running as PID 1",
        |c, _| {
            c.subreaper = true;
            Ok(())
        },
    ),
    flag(
        "process-group",
        Some('g'),
        &[env("DRAINIT_PROCESS_GROUP"), TINI_PRESENCE_GROUP],
        "send signals to the child's whole process group",
        |c, _| {
            c.process_group = true;
            Ok(())
        },
    ),
    flag(
        "setsid",
        None,
        &[
            Env {
                name: "DRAINIT_SETSID",
                read: EnvRead::Custom(set_setsid),
            },
            Env {
                name: "DUMB_INIT_SETSID",
                read: EnvRead::Custom(set_setsid),
            },
        ],
        "dumb-init's default mode: the child gets a session of its own, signals go to its \
         process group, SIGTSTP/SIGTTIN/SIGTTOU become SIGSTOP (unless -r says otherwise) \
         and stop drainit too, as shell job control expects (on when drainit runs under the \
         name dumb-init)",
        |c, _| set_setsid(c, "1"),
    ),
    flag(
        "single-child",
        Some('c'),
        &[],
        "signals go to the child alone (dumb-init's -c; undoes --setsid)",
        |c, _| set_setsid(c, "0"),
    ),
    valued(
        "pdeath-signal",
        Some('p'),
        "SIG",
        &[env("DRAINIT_PDEATH_SIGNAL")],
        "signal drainit gets when its parent dies (then forwarded as usual)",
        |c, v| {
            c.pdeath_signal = Some(signals::parse(v, false)?);
            Ok(())
        },
    ),
    list(
        "rewrite",
        Some('r'),
        "FROM:TO",
        &[env("DRAINIT_REWRITE")],
        "forward signal FROM as TO; TO 0 drops it",
        |c, v| c.stop.rewrites.add(v),
    ),
    list(
        "remap-exit",
        Some('e'),
        "CODE",
        &[env("DRAINIT_REMAP_EXIT")],
        "exit 0 when the child exits with CODE",
        |c, v| {
            c.remap_exit.push(parse_exit_code(v)?);
            Ok(())
        },
    ),
    flag(
        "warn-on-reap",
        Some('w'),
        &[env("DRAINIT_WARN_ON_REAP")],
        "warn when a zombie other than the child is reaped",
        |c, _| {
            c.warn_on_reap = true;
            Ok(())
        },
    ),
    valued(
        "grace",
        None,
        "SECONDS",
        &[env("DRAINIT_GRACE")],
        "after forwarding SIGTERM/SIGINT/SIGQUIT, SIGKILL the child's group after this long \
         [off: as with tini, the orchestrator's own SIGKILL is the limit]",
        |c, v| {
            c.stop.grace = Some(parse_seconds(v)?);
            Ok(())
        },
    ),
    flag(
        "no-wait-adopted",
        None,
        &[env("DRAINIT_NO_WAIT_ADOPTED")],
        "do not signal and wait for adopted daemons on stop; SIGKILL them when the child exits",
        |c, _| {
            c.stop.wait_adopted = false;
            Ok(())
        },
    ),
    valued(
        "health-addr",
        None,
        "ADDR",
        &[env("DRAINIT_HEALTH_ADDR")],
        "health endpoint HOST:PORT, :PORT or 'none' [0.0.0.0:8099]",
        |c, v| {
            c.health_addr = server::parse_addr(v)?;
            Ok(())
        },
    ),
    valued(
        "agent-addr",
        None,
        "ADDR",
        &[env("DRAINIT_AGENT_ADDR")],
        "serve HAProxy agent-check (ready/drain/down) on HOST:PORT [off]",
        |c, v| {
            c.agent_addr = server::parse_addr(v)?;
            Ok(())
        },
    ),
    valued(
        "control-token",
        None,
        "TOKEN",
        &[env(CONTROL_TOKEN_ENV)],
        "bearer token that opens /sethealth/* over TCP to any peer (prefer the variable or \
         --control-token-file: the command line is readable in /proc) [none]",
        |c, v| {
            c.control.token = Some(control::parse_token(v)?);
            Ok(())
        },
    ),
    valued(
        "control-token-file",
        None,
        "PATH",
        &[env("DRAINIT_CONTROL_TOKEN_FILE")],
        "read the bearer token from PATH, such as a mounted Kubernetes Secret",
        |c, v| {
            c.control.token = Some(control::read_token_file(v)?);
            Ok(())
        },
    ),
    valued(
        "tcp-control",
        None,
        "MODE",
        &[env("DRAINIT_TCP_CONTROL")],
        "who may use /sethealth/* over TCP: local (loopback without Origin, Sec-Fetch-Site or \
         forwarding headers, or the token), token (the token only; for meshes) or off [local]",
        |c, v| {
            c.control.tcp = TcpControl::parse(v)?;
            Ok(())
        },
    ),
    valued(
        "control-socket",
        None,
        "PATH",
        &[env("DRAINIT_CONTROL_SOCKET")],
        "Unix socket for drainit drain/undrain/status, mode 0600, no token needed; 'none' turns \
         it off [/run/drainit.sock, or drainit.sock in the temp dir when /run is not writable]",
        |c, v| {
            c.control_socket = match v.trim() {
                "none" | "off" => SocketChoice::Off,
                path => SocketChoice::At(non_empty(path)?.into()),
            };
            Ok(())
        },
    ),
    list(
        "drain-on",
        None,
        "SIG",
        &[env("DRAINIT_DRAIN_ON")],
        "signal that drains before it is forwarded [TERM]",
        |c, v| c.drain.add_signal(signals::parse(v, false)?),
    ),
    valued(
        "drain-delay",
        None,
        "SECONDS",
        &[env("DRAINIT_DRAIN_DELAY")],
        "fixed drain wait before forwarding the drain signal; with --drain-checks, the wait \
         when no prober was seen before the drain [3]",
        |c, v| {
            c.drain.delay = parse_seconds(v)?;
            Ok(())
        },
    ),
    valued(
        "drain-checks",
        None,
        "N",
        &[env("DRAINIT_DRAIN_CHECKS")],
        "end the wait once every prober seen before the drain (a load balancer instance: \
         source address and User-Agent) has had N readiness probes answered unready, plus \
         --drain-linger; probers silent for 3 of their intervals stop counting [off]",
        |c, v| {
            c.drain.checks = Some(parse_count(v)?);
            Ok(())
        },
    ),
    valued(
        "drain-linger",
        None,
        "SECONDS",
        &[env("DRAINIT_DRAIN_LINGER")],
        "after --drain-checks is met, wait this long for dispatched requests [1]",
        |c, v| {
            c.drain.linger = parse_seconds(v)?;
            Ok(())
        },
    ),
    valued(
        "drain-timeout",
        None,
        "SECONDS",
        &[env("DRAINIT_DRAIN_TIMEOUT")],
        "cap on any drain wait [none; with --drain-checks or --drain-until-quiet, --stop-timeout]",
        |c, v| {
            c.drain.timeout = Some(parse_seconds(v)?);
            Ok(())
        },
    ),
    valued(
        "drain-until-quiet",
        None,
        "SECONDS",
        &[env("DRAINIT_DRAIN_UNTIL_QUIET")],
        "end the wait once the app's listening sockets had no new connection and received no \
         byte for this long (loopback peers do not count); --drain-delay is then the least \
         wait and --drain-timeout the most [off]",
        |c, v| {
            c.drain.quiet = Some(parse_positive_seconds(v)?);
            Ok(())
        },
    ),
    list(
        "drain-ports",
        None,
        "PORT",
        &[env("DRAINIT_DRAIN_PORTS")],
        "the app's ports to watch for --drain-until-quiet [the ports the child and its \
         descendants listen on]",
        |c, v| {
            let port = v
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("'{v}' is not a port 1-65535"))?;
            c.drain_ports.get_or_insert_with(Vec::new).push(port);
            Ok(())
        },
    ),
    list(
        "drain-checks-ignore-ua",
        None,
        "PATTERN",
        &[env("DRAINIT_DRAIN_CHECKS_IGNORE_UA")],
        "probes whose User-Agent contains PATTERN (any case) are no balancer's and never count \
         for --drain-checks, as drainit probe's never do (e.g. kube-probe where kube-proxy routes)",
        |c, v| {
            c.drain.ignore_agents.push(non_empty(v)?.to_string());
            Ok(())
        },
    ),
    valued(
        "drain-status",
        None,
        "CODE",
        &[env("DRAINIT_DRAIN_STATUS")],
        "readiness status while draining: 503 or 404 (HAProxy disable-on-404) [503]",
        |c, v| {
            c.drain.status = DrainPolicy::parse_status(v)?;
            Ok(())
        },
    ),
    valued(
        "stop-timeout",
        None,
        "SECONDS",
        &[env("DRAINIT_STOP_TIMEOUT")],
        "the orchestrator's stop budget; warn when drain + grace exceed it [10]",
        |c, v| {
            c.stop_timeout = parse_seconds(v)?;
            Ok(())
        },
    ),
    valued(
        "ready-http",
        None,
        "URL",
        &[env("DRAINIT_READY_HTTP")],
        "ready when GET URL answers 2xx",
        |c, v| {
            c.checks.ready_http = Some(v.to_string());
            Ok(())
        },
    ),
    flag(
        "ready-expect-json",
        None,
        &[env("DRAINIT_READY_EXPECT_JSON")],
        "with --ready-http, also require a JSON body with top-level \"status\" healthy, ok, up, pass or warn (any case)",
        |c, _| {
            c.checks.expect_json = true;
            Ok(())
        },
    ),
    list(
        "ready-header",
        None,
        "'NAME: VALUE'",
        &[env("DRAINIT_READY_HEADER")],
        "extra header for --ready-http",
        |c, v| {
            c.checks.headers.push(client::parse_header(v)?);
            Ok(())
        },
    ),
    valued(
        "ready-tcp",
        None,
        "HOST:PORT",
        &[env("DRAINIT_READY_TCP")],
        "ready when HOST:PORT accepts a connection",
        |c, v| {
            c.checks.ready_tcp = Some(v.to_string());
            Ok(())
        },
    ),
    valued(
        "ready-file",
        None,
        "PATH",
        &[env("DRAINIT_READY_FILE")],
        "ready when PATH exists",
        |c, v| {
            c.checks.ready_file = Some(non_empty(v)?.into());
            Ok(())
        },
    ),
    valued(
        "ready-cmd",
        None,
        "COMMAND",
        &[env("DRAINIT_READY_CMD")],
        "ready when COMMAND exits 0 (split on spaces, no shell; use 'sh -c ...' for one)",
        |c, v| {
            c.checks.ready_cmd = Some(checks::parse_command(v)?);
            Ok(())
        },
    ),
    valued(
        "live-file",
        None,
        "PATH",
        &[env("DRAINIT_LIVE_FILE")],
        "live while PATH's mtime is newer than --live-max-age",
        |c, v| {
            c.checks.live_file = Some(non_empty(v)?.into());
            Ok(())
        },
    ),
    valued(
        "live-max-age",
        None,
        "SECONDS",
        &[env("DRAINIT_LIVE_MAX_AGE")],
        "maximum age of --live-file [60]",
        |c, v| {
            c.checks.live_max_age = parse_seconds(v)?;
            Ok(())
        },
    ),
    valued(
        "check-interval",
        None,
        "SECONDS",
        &[env("DRAINIT_CHECK_INTERVAL")],
        "time between readiness checks [1]",
        |c, v| {
            c.checks.interval = parse_positive_seconds(v)?;
            Ok(())
        },
    ),
    valued(
        "check-timeout",
        None,
        "SECONDS",
        &[env("DRAINIT_CHECK_TIMEOUT")],
        "time limit of one check [1]",
        |c, v| {
            c.checks.timeout = parse_positive_seconds(v)?;
            Ok(())
        },
    ),
    valued(
        "ready-threshold",
        None,
        "N",
        &[env("DRAINIT_READY_THRESHOLD")],
        "consecutive passes to become ready [1]",
        |c, v| {
            c.checks.ready_threshold = parse_count(v)?;
            Ok(())
        },
    ),
    valued(
        "unready-threshold",
        None,
        "N",
        &[env("DRAINIT_UNREADY_THRESHOLD")],
        "consecutive failures to become unready [3]",
        |c, v| {
            c.checks.unready_threshold = parse_count(v)?;
            Ok(())
        },
    ),
];

/// tini only asks whether these are set at all.
const TINI_PRESENCE_SUBREAPER: Env<Config> = Env {
    name: "TINI_SUBREAPER",
    read: EnvRead::Presence,
};
const TINI_PRESENCE_GROUP: Env<Config> = Env {
    name: "TINI_KILL_PROCESS_GROUP",
    read: EnvRead::Presence,
};

fn set_log_filter(c: &mut Config, value: &str) -> Result<(), String> {
    c.log_filter = value.trim().to_string();
    Ok(())
}

/// tini's levels: 1 is its default (warnings), 2 info, 3 debug.
fn set_tini_verbosity(c: &mut Config, value: &str) -> Result<(), String> {
    let n: u32 = value
        .trim()
        .parse()
        .map_err(|_| format!("'{value}' is not a number 0-3"))?;
    c.log_filter = level_for(n.saturating_sub(1)).into();
    Ok(())
}

/// dumb-init's debug switch.
fn set_dumb_init_debug(c: &mut Config, value: &str) -> Result<(), String> {
    if opts::parse_bool(value)? {
        c.log_filter = "debug".into();
    }
    Ok(())
}

/// dumb-init's setsid mode on or off; off is its single-child mode. Asking
/// for it asks for dumb-init's job control too, which dumb-init keeps in
/// both modes.
fn set_setsid(c: &mut Config, value: &str) -> Result<(), String> {
    let on = opts::parse_bool(value)?;
    c.setsid = on;
    c.process_group = on;
    c.stop.job_control |= on;
    Ok(())
}

/// Parses drainit's own arguments (without argv[0]) and the environment.
/// Invoked as `dumb-init`, drainit starts from dumb-init's defaults.
pub fn parse(
    invoked_as: &OsStr,
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, String> {
    let given = opts::tokenize(OPTIONS, args, true)?;
    let as_dumb_init = Path::new(invoked_as).file_name() == Some(OsStr::new("dumb-init"));
    let mut config = Config {
        program: given.positional.clone(),
        ..Config::default()
    };
    if as_dumb_init {
        set_setsid(&mut config, "1")?;
        config.leave_workdir = true;
    }
    given.apply(OPTIONS, &mut config, env)?;
    config.token_on_command_line = given.has("control-token");
    if let Some(asked) = config.asked.take() {
        return Ok(asked);
    }
    if config.program.is_empty() {
        return Err(
            "missing PROGRAM to run (usage: drainit [OPTIONS] [--] PROGRAM [ARGS...])".into(),
        );
    }
    config.settle()?;
    Ok(Invocation::Run(Box::new(config)))
}

impl Config {
    /// Decisions that take several options together.
    fn settle(&mut self) -> Result<(), String> {
        // A stopped child in its own session would leave the job running
        // for the shell: dumb-init stops the whole group, unless told how.
        if self.setsid {
            for sig in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
                self.stop.rewrites.add_default(sig, libc::SIGSTOP);
            }
        }
        // Draining needs somebody to tell: without an endpoint a drain
        // signal would only be delayed.
        if self.health_addr.is_none() && self.agent_addr.is_none() {
            self.drain.on.clear();
        }
        // A drain signal that --rewrite drops (SIG:0) is dropped, not
        // drained: holding it would end in a stop with nothing forwarded.
        let rewrites = &self.stop.rewrites;
        self.drain.on.retain(|&sig| rewrites.apply(sig).is_some());
        // A wait on probers or traffic lasts as long as they take; never
        // longer than the orchestrator's budget unless told.
        if self.drain.adaptive() && self.drain.timeout.is_none() {
            self.drain.timeout = Some(self.stop_timeout);
        }
        if self.drain_ports.is_some() && self.drain.quiet.is_none() {
            return Err("--drain-ports needs --drain-until-quiet".into());
        }
        self.checks.validate()
    }
}

fn level_for(verbosity: u32) -> &'static str {
    match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    }
}

fn non_empty(value: &str) -> Result<&str, String> {
    if value.is_empty() {
        Err("expected a non-empty path".into())
    } else {
        Ok(value)
    }
}

/// Seconds as a decimal number, optionally suffixed `s` or `ms`.
pub fn parse_seconds(value: &str) -> Result<Duration, String> {
    let bad = || format!("'{value}' is not a duration (expected SECONDS such as 10, 0.5 or 250ms)");
    let v = value.trim();
    let (number, scale) = if let Some(ms) = v.strip_suffix("ms") {
        (ms, 0.001)
    } else {
        (v.strip_suffix('s').unwrap_or(v), 1.0)
    };
    let n: f64 = number.parse().map_err(|_| bad())?;
    let secs = n * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn parse_positive_seconds(value: &str) -> Result<Duration, String> {
    let d = parse_seconds(value)?;
    if d.is_zero() {
        return Err(format!("'{value}' must be more than 0"));
    }
    Ok(d)
}

pub fn parse_count(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("'{value}' is not a whole number of at least 1")),
    }
}

fn parse_exit_code(value: &str) -> Result<i32, String> {
    match value.trim().parse::<i32>() {
        Ok(n) if (0..=255).contains(&n) => Ok(n),
        _ => Err(format!("'{value}' is not an exit code 0-255")),
    }
}

/// The `--help` text, generated from [`OPTIONS`].
pub fn help() -> String {
    format!(
        "drainit: an init for containers that reaps zombies, forwards signals, and drains\n\
         load-balancer traffic before the app is stopped.\n\n\
         Usage: drainit [OPTIONS] [--] PROGRAM [ARGS...]\n\
         \x20      drainit probe|drain|undrain|status [OPTIONS]   (see drainit probe --help)\n\
         \x20      (drainit -- drain runs a program called drain)\n\nOptions:\n{}\
         \nHealth endpoints: /livez /readyz /health /healthz /status /metrics,\n\
         \x20 /sethealth/ko and /sethealth/ok (the control socket; over TCP, see --tcp-control).\n\
         \nLog: one line per event on stderr, never waited on: when stderr cannot take\n\
         \x20 them, lines are dropped and counted (drainit_log_lines_dropped_total).\n\
         \nExit status:\n\
         \x20 the child's exit status, or 128+N when it was killed by signal N\n\
         \x20 0     when the child's code was given to --remap-exit\n\
         \x20 1     drainit itself failed (for example, could not fork)\n\
         \x20 2     usage error: unknown option, bad value, port in use\n\
         \x20 126   PROGRAM exists but could not be executed\n\
         \x20 127   PROGRAM was not found\n",
        opts::help(OPTIONS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        run_as("drainit", args, env)
    }

    fn run_as(name: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        match parse(OsStr::new(name), &args, &lookup)? {
            Invocation::Run(c) => Ok(*c),
            other => Err(format!("{other:?}")),
        }
    }

    /// dumb-init stops itself on a job-control stop in both its modes, and
    /// in setsid mode stops the child's group with SIGSTOP unless -r says
    /// otherwise; tini's way (drainit's default) does neither.
    #[test]
    fn job_control_as_dumb_init_does_it() {
        let tstp = |c: &Config| c.stop.rewrites.apply(libc::SIGTSTP);
        let c = run_as("/usr/bin/dumb-init", &["x"], &[]).unwrap();
        assert!(c.stop.job_control && c.leave_workdir);
        assert_eq!(tstp(&c), Some(libc::SIGSTOP));
        let c = run_as("dumb-init", &["-c", "x"], &[]).unwrap();
        assert!(c.stop.job_control && !c.setsid);
        assert_eq!(tstp(&c), Some(libc::SIGTSTP));
        let c = run_as("dumb-init", &["-r", "20:10", "x"], &[]).unwrap();
        assert_eq!(tstp(&c), Some(libc::SIGUSR1));
        assert_eq!(
            c.stop.rewrites.apply(libc::SIGTTOU),
            Some(libc::SIGSTOP),
            "the other two keep their default"
        );
        let c = run(&["--setsid", "x"], &[]).unwrap();
        assert!(c.stop.job_control && !c.leave_workdir);
        assert_eq!(tstp(&c), Some(libc::SIGSTOP));
        let c = run(&["x"], &[]).unwrap();
        assert!(!c.stop.job_control && !c.leave_workdir);
        assert_eq!(tstp(&c), Some(libc::SIGTSTP));
    }

    #[test]
    fn program_starts_at_first_non_option_or_double_dash() {
        let c = run(&["-s", "sleep", "-v"], &[]).unwrap();
        assert!(c.subreaper);
        assert_eq!(
            c.program,
            vec![OsString::from("sleep"), OsString::from("-v")]
        );
        let c = run(&["--", "-s"], &[]).unwrap();
        assert_eq!(c.program, vec![OsString::from("-s")]);
    }

    #[test]
    fn short_clusters_and_values() {
        let c = run(&["-sgvv", "-e143", "-e", "3", "-p", "KILL", "x"], &[]).unwrap();
        assert!(c.subreaper && c.process_group);
        assert_eq!(c.log_filter, "debug");
        assert_eq!(c.remap_exit, vec![143, 3]);
        assert_eq!(c.pdeath_signal, Some(libc::SIGKILL));
    }

    #[test]
    fn flag_wins_over_env_and_tini_env_is_honoured() {
        let c = run(
            &["--grace=2", "x"],
            &[("DRAINIT_GRACE", "5"), ("TINI_SUBREAPER", "")],
        )
        .unwrap();
        assert_eq!(c.stop.grace, Some(Duration::from_secs(2)));
        assert!(c.subreaper);
        let c = run(
            &["x"],
            &[("DRAINIT_REMAP_EXIT", "1, 2"), ("TINI_VERBOSITY", "3")],
        )
        .unwrap();
        assert_eq!(c.remap_exit, vec![1, 2]);
        assert_eq!(c.log_filter, "debug");
        let c = run(
            &["x"],
            &[("DRAINIT_SUBREAPER", "0"), ("TINI_SUBREAPER", "1")],
        )
        .unwrap();
        assert!(!c.subreaper);
    }

    #[test]
    fn bad_input_names_the_option() {
        let err = run(&["--grace", "soon", "x"], &[]).unwrap_err();
        assert!(err.starts_with("--grace: 'soon'"), "{err}");
        let err = run(&["--bogus", "x"], &[]).unwrap_err();
        assert!(err.contains("--bogus"), "{err}");
        let err = run(&["x"], &[("DRAINIT_SUBREAPER", "maybe")]).unwrap_err();
        assert!(err.starts_with("DRAINIT_SUBREAPER:"), "{err}");
        assert!(run(&["--grace"], &[])
            .unwrap_err()
            .contains("needs a value"));
        assert!(run(&[], &[]).unwrap_err().contains("missing PROGRAM"));
    }

    #[test]
    fn durations_and_addresses() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("inf").is_err());
        assert_eq!(server::parse_addr("none"), Ok(None));
        assert_eq!(
            server::parse_addr(":80").unwrap().unwrap().to_string(),
            "0.0.0.0:80"
        );
        assert!(server::parse_addr("nowhere").is_err());
    }
}
