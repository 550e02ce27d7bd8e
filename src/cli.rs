//! The command line and its environment variables.
//!
//! Every option is described once, in [`OPTIONS`]; parsing, the environment
//! fallback and `--help` are all driven by that table so they cannot drift
//! apart. A flag always wins over its environment variable.

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use libc::c_int;

use crate::checks::CheckSettings;
use crate::drain::DrainPolicy;
use crate::signals::{self, Rewrites};

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
    pub pdeath_signal: Option<c_int>,
    pub rewrites: Rewrites,
    pub remap_exit: Vec<i32>,
    pub log_filter: String,
    pub warn_on_reap: bool,
    pub grace: Duration,
    pub wait_adopted: bool,
    pub health_addr: Option<SocketAddr>,
    pub agent_addr: Option<SocketAddr>,
    pub control_token: Option<String>,
    pub drain: DrainPolicy,
    pub stop_timeout: Duration,
    pub checks: CheckSettings,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            program: Vec::new(),
            subreaper: false,
            process_group: false,
            pdeath_signal: None,
            rewrites: Rewrites::default(),
            remap_exit: Vec::new(),
            log_filter: "warn".into(),
            warn_on_reap: false,
            grace: Duration::from_secs(6),
            wait_adopted: true,
            health_addr: resolve_addr(DEFAULT_HEALTH_ADDR).ok().flatten(),
            agent_addr: None,
            control_token: None,
            drain: DrainPolicy::default(),
            stop_timeout: Duration::from_secs(10),
            checks: CheckSettings::default(),
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Run(Box<Config>),
    Help,
    Version,
}

/// One option: its names, environment variables (first is drainit's own,
/// the rest are honoured aliases such as tini's), value and help text.
pub struct OptionSpec {
    pub long: &'static str,
    pub short: Option<char>,
    pub env: &'static [&'static str],
    pub value: Option<&'static str>,
    pub help: &'static str,
}

const fn opt(
    long: &'static str,
    short: Option<char>,
    env: &'static [&'static str],
    value: Option<&'static str>,
    help: &'static str,
) -> OptionSpec {
    OptionSpec {
        long,
        short,
        env,
        value,
        help,
    }
}

pub const OPTIONS: &[OptionSpec] = &[
    opt("help", Some('h'), &[], None, "print this help and exit"),
    opt("version", None, &[], None, "print the version and exit"),
    opt(
        "verbose",
        Some('v'),
        &["DRAINIT_LOG", "RUST_LOG", "TINI_VERBOSITY"],
        None,
        "log more (repeat for debug, trace); the env takes a level or env_logger filter",
    ),
    opt(
        "subreaper",
        Some('s'),
        &["DRAINIT_SUBREAPER", "TINI_SUBREAPER"],
        None,
        "register as child subreaper when not running as PID 1",
    ),
    opt(
        "process-group",
        Some('g'),
        &["DRAINIT_PROCESS_GROUP", "TINI_KILL_PROCESS_GROUP"],
        None,
        "send signals to the child's whole process group",
    ),
    opt(
        "pdeath-signal",
        Some('p'),
        &["DRAINIT_PDEATH_SIGNAL"],
        Some("SIG"),
        "signal drainit gets when its parent dies (then forwarded as usual)",
    ),
    opt(
        "rewrite",
        Some('r'),
        &["DRAINIT_REWRITE"],
        Some("FROM:TO"),
        "forward signal FROM as TO; TO 0 drops it (repeatable, env comma-separated)",
    ),
    opt(
        "remap-exit",
        Some('e'),
        &["DRAINIT_REMAP_EXIT"],
        Some("CODE"),
        "exit 0 when the child exits with CODE (repeatable, env comma-separated)",
    ),
    opt(
        "warn-on-reap",
        Some('w'),
        &["DRAINIT_WARN_ON_REAP"],
        None,
        "warn when a zombie other than the child is reaped",
    ),
    opt(
        "grace",
        None,
        &["DRAINIT_GRACE"],
        Some("SECONDS"),
        "after forwarding SIGTERM/SIGINT/SIGQUIT, SIGKILL the child's group after this long [6]",
    ),
    opt(
        "no-wait-adopted",
        None,
        &["DRAINIT_NO_WAIT_ADOPTED"],
        None,
        "do not signal and wait for adopted daemons on stop; SIGKILL them when the child exits",
    ),
    opt(
        "health-addr",
        None,
        &["DRAINIT_HEALTH_ADDR"],
        Some("ADDR"),
        "health endpoint HOST:PORT, :PORT or 'none' [0.0.0.0:8099]",
    ),
    opt(
        "agent-addr",
        None,
        &["DRAINIT_AGENT_ADDR"],
        Some("ADDR"),
        "serve HAProxy agent-check (ready/drain/down) on HOST:PORT [off]",
    ),
    opt(
        "control-token",
        None,
        &["DRAINIT_CONTROL_TOKEN"],
        Some("TOKEN"),
        "bearer token that lets non-loopback peers use /sethealth/* [none: loopback only]",
    ),
    opt(
        "drain-on",
        None,
        &["DRAINIT_DRAIN_ON"],
        Some("SIG"),
        "signal that drains before it is forwarded (repeatable, env comma-separated) [TERM]",
    ),
    opt(
        "drain-delay",
        None,
        &["DRAINIT_DRAIN_DELAY"],
        Some("SECONDS"),
        "fixed drain wait before forwarding the drain signal [3]",
    ),
    opt(
        "drain-checks",
        None,
        &["DRAINIT_DRAIN_CHECKS"],
        Some("N"),
        "end the wait once N readiness probes were answered unhealthy [off]",
    ),
    opt(
        "drain-linger",
        None,
        &["DRAINIT_DRAIN_LINGER"],
        Some("SECONDS"),
        "after --drain-checks is met, wait this long for dispatched requests [1]",
    ),
    opt(
        "drain-timeout",
        None,
        &["DRAINIT_DRAIN_TIMEOUT"],
        Some("SECONDS"),
        "cap on any drain wait [none]",
    ),
    opt(
        "drain-status",
        None,
        &["DRAINIT_DRAIN_STATUS"],
        Some("CODE"),
        "readiness status while draining: 503 or 404 (HAProxy disable-on-404) [503]",
    ),
    opt(
        "stop-timeout",
        None,
        &["DRAINIT_STOP_TIMEOUT"],
        Some("SECONDS"),
        "the orchestrator's stop budget; warn when drain + grace exceed it [10]",
    ),
    opt(
        "ready-http",
        None,
        &["DRAINIT_READY_HTTP"],
        Some("URL"),
        "ready when GET URL answers 2xx",
    ),
    opt(
        "ready-expect-json",
        None,
        &["DRAINIT_READY_EXPECT_JSON"],
        None,
        "with --ready-http, also require a JSON body with top-level \"status\" healthy, ok, up, pass or warn (any case)",
    ),
    opt(
        "ready-header",
        None,
        &["DRAINIT_READY_HEADER"],
        Some("'NAME: VALUE'"),
        "extra header for --ready-http (repeatable, env comma-separated)",
    ),
    opt(
        "ready-tcp",
        None,
        &["DRAINIT_READY_TCP"],
        Some("HOST:PORT"),
        "ready when HOST:PORT accepts a connection",
    ),
    opt(
        "ready-file",
        None,
        &["DRAINIT_READY_FILE"],
        Some("PATH"),
        "ready when PATH exists",
    ),
    opt(
        "ready-cmd",
        None,
        &["DRAINIT_READY_CMD"],
        Some("COMMAND"),
        "ready when COMMAND exits 0 (split on spaces, no shell; use 'sh -c ...' for one)",
    ),
    opt(
        "live-file",
        None,
        &["DRAINIT_LIVE_FILE"],
        Some("PATH"),
        "live while PATH's mtime is newer than --live-max-age",
    ),
    opt(
        "live-max-age",
        None,
        &["DRAINIT_LIVE_MAX_AGE"],
        Some("SECONDS"),
        "maximum age of --live-file [60]",
    ),
    opt(
        "check-interval",
        None,
        &["DRAINIT_CHECK_INTERVAL"],
        Some("SECONDS"),
        "time between readiness checks [1]",
    ),
    opt(
        "check-timeout",
        None,
        &["DRAINIT_CHECK_TIMEOUT"],
        Some("SECONDS"),
        "time limit of one check [1]",
    ),
    opt(
        "ready-threshold",
        None,
        &["DRAINIT_READY_THRESHOLD"],
        Some("N"),
        "consecutive passes to become ready [1]",
    ),
    opt(
        "unready-threshold",
        None,
        &["DRAINIT_UNREADY_THRESHOLD"],
        Some("N"),
        "consecutive failures to become unready [3]",
    ),
];

/// Parses drainit's own arguments (without argv[0]) and the environment.
pub fn parse(
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Invocation, String> {
    let (given, program) = split_args(args)?;
    if given.iter().any(|(s, _)| s.long == "help") {
        return Ok(Invocation::Help);
    }
    if given.iter().any(|(s, _)| s.long == "version") {
        return Ok(Invocation::Version);
    }
    let mut config = Config {
        program,
        ..Config::default()
    };
    for spec in OPTIONS {
        if given.iter().any(|(s, _)| s.long == spec.long) {
            continue;
        }
        if let Some((var, value)) = spec.env.iter().find_map(|v| env(v).map(|x| (*v, x))) {
            apply_env(&mut config, spec, var, &value).map_err(|e| format!("{var}: {e}"))?;
        }
    }
    let mut verbosity = 0;
    for (spec, value) in &given {
        if spec.long == "verbose" {
            verbosity += 1;
            config.log_filter = level_for(verbosity).into();
            continue;
        }
        apply(&mut config, spec.long, value.as_deref().unwrap_or(""))
            .map_err(|e| format!("--{}: {e}", spec.long))?;
    }
    if config.program.is_empty() {
        return Err(
            "missing PROGRAM to run (usage: drainit [OPTIONS] [--] PROGRAM [ARGS...])".into(),
        );
    }
    config.checks.validate()?;
    Ok(Invocation::Run(Box::new(config)))
}

type Given = Vec<(&'static OptionSpec, Option<String>)>;

/// Splits the arguments into options (with their values) and the program.
/// The program starts at `--` or at the first argument that is not an option.
fn split_args(args: &[OsString]) -> Result<(Given, Vec<OsString>), String> {
    let mut given = Given::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_str().unwrap_or("");
        if arg == "--" {
            return Ok((given, args[i + 1..].to_vec()));
        }
        if let Some(long) = arg.strip_prefix("--") {
            i = take_long(long, args, i, &mut given)?;
        } else if arg.len() > 1 && arg.starts_with('-') {
            i = take_shorts(&arg[1..], args, i, &mut given)?;
        } else {
            return Ok((given, args[i..].to_vec()));
        }
    }
    Ok((given, Vec::new()))
}

fn take_long(long: &str, args: &[OsString], i: usize, given: &mut Given) -> Result<usize, String> {
    let (name, inline) = match long.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (long, None),
    };
    let spec = OPTIONS
        .iter()
        .find(|s| s.long == name)
        .ok_or_else(|| format!("unknown option '--{name}' (see drainit --help)"))?;
    match (spec.value, inline) {
        (None, Some(_)) => Err(format!("--{name} takes no value")),
        (None, None) => {
            given.push((spec, None));
            Ok(i + 1)
        }
        (Some(_), Some(v)) => {
            given.push((spec, Some(v)));
            Ok(i + 1)
        }
        (Some(form), None) => {
            let v =
                value_at(args, i + 1).ok_or_else(|| format!("--{name} needs a value {form}"))?;
            given.push((spec, Some(v)));
            Ok(i + 2)
        }
    }
}

fn take_shorts(
    cluster: &str,
    args: &[OsString],
    i: usize,
    given: &mut Given,
) -> Result<usize, String> {
    for (pos, c) in cluster.char_indices() {
        let spec = OPTIONS
            .iter()
            .find(|s| s.short == Some(c))
            .ok_or_else(|| format!("unknown option '-{c}' (see drainit --help)"))?;
        let Some(form) = spec.value else {
            given.push((spec, None));
            continue;
        };
        let rest = &cluster[pos + c.len_utf8()..];
        if !rest.is_empty() {
            given.push((spec, Some(rest.to_string())));
            return Ok(i + 1);
        }
        let v = value_at(args, i + 1).ok_or_else(|| format!("-{c} needs a value {form}"))?;
        given.push((spec, Some(v)));
        return Ok(i + 2);
    }
    Ok(i + 1)
}

fn value_at(args: &[OsString], i: usize) -> Option<String> {
    args.get(i).map(|v| v.to_string_lossy().into_owned())
}

fn level_for(verbosity: u32) -> &'static str {
    match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    }
}

/// Applies an option's value taken from environment variable `var`.
fn apply_env(config: &mut Config, spec: &OptionSpec, var: &str, value: &str) -> Result<(), String> {
    match (spec.long, var) {
        ("verbose", "TINI_VERBOSITY") => {
            let n: u32 = value
                .trim()
                .parse()
                .map_err(|_| format!("'{value}' is not a number 0-3"))?;
            config.log_filter = level_for(n.saturating_sub(1)).into();
            Ok(())
        }
        ("verbose", _) => {
            config.log_filter = value.trim().to_string();
            Ok(())
        }
        // tini only asks whether these are set at all.
        (_, "TINI_SUBREAPER" | "TINI_KILL_PROCESS_GROUP") => apply(config, spec.long, ""),
        _ if spec.value.is_none() => {
            if parse_bool(value)? {
                apply(config, spec.long, "")
            } else {
                Ok(())
            }
        }
        _ if is_repeatable(spec.long) => {
            for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                apply(config, spec.long, item)?;
            }
            Ok(())
        }
        _ => apply(config, spec.long, value),
    }
}

fn is_repeatable(long: &str) -> bool {
    matches!(long, "rewrite" | "remap-exit" | "drain-on" | "ready-header")
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "'{value}' is not a boolean (expected 1/0, true/false, yes/no)"
        )),
    }
}

/// Applies one option. Flags pass an empty `value`.
fn apply(c: &mut Config, long: &str, value: &str) -> Result<(), String> {
    match long {
        "subreaper" => c.subreaper = true,
        "process-group" => c.process_group = true,
        "warn-on-reap" => c.warn_on_reap = true,
        "no-wait-adopted" => c.wait_adopted = false,
        "pdeath-signal" => c.pdeath_signal = Some(signals::parse(value, false)?),
        "rewrite" => c.rewrites.add(value)?,
        "remap-exit" => c.remap_exit.push(parse_exit_code(value)?),
        "grace" => c.grace = parse_seconds(value)?,
        "health-addr" => c.health_addr = resolve_addr(value)?,
        "agent-addr" => c.agent_addr = resolve_addr(value)?,
        "control-token" => c.control_token = parse_token(value)?,
        "drain-on" => add_drain_signal(&mut c.drain, value)?,
        "drain-delay" => c.drain.delay = parse_seconds(value)?,
        "drain-checks" => c.drain.checks = Some(parse_count(value)?),
        "drain-linger" => c.drain.linger = parse_seconds(value)?,
        "drain-timeout" => c.drain.timeout = Some(parse_seconds(value)?),
        "drain-status" => c.drain.status = parse_drain_status(value)?,
        "stop-timeout" => c.stop_timeout = parse_seconds(value)?,
        "ready-http" => c.checks.ready_http = Some(value.to_string()),
        "ready-expect-json" => c.checks.expect_json = true,
        "ready-header" => c.checks.headers.push(parse_header(value)?),
        "ready-tcp" => c.checks.ready_tcp = Some(value.to_string()),
        "ready-file" => c.checks.ready_file = Some(non_empty(value)?.into()),
        "ready-cmd" => c.checks.ready_cmd = Some(parse_command(value)?),
        "live-file" => c.checks.live_file = Some(non_empty(value)?.into()),
        "live-max-age" => c.checks.live_max_age = parse_seconds(value)?,
        "check-interval" => c.checks.interval = parse_positive_seconds(value)?,
        "check-timeout" => c.checks.timeout = parse_positive_seconds(value)?,
        "ready-threshold" => c.checks.ready_threshold = parse_count(value)?,
        "unready-threshold" => c.checks.unready_threshold = parse_count(value)?,
        other => return Err(format!("option --{other} has no handler")),
    }
    Ok(())
}

fn add_drain_signal(policy: &mut DrainPolicy, value: &str) -> Result<(), String> {
    if !policy.explicit_signals {
        policy.on.clear();
        policy.explicit_signals = true;
    }
    policy.on.push(signals::parse(value, false)?);
    Ok(())
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

fn parse_positive_seconds(value: &str) -> Result<Duration, String> {
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

fn parse_drain_status(value: &str) -> Result<u16, String> {
    match value.trim() {
        "503" => Ok(503),
        "404" => Ok(404),
        _ => Err(format!("'{value}' is not 503 or 404")),
    }
}

fn parse_token(value: &str) -> Result<Option<String>, String> {
    if value.len() < 8 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("expected at least 8 characters without spaces".into());
    }
    Ok(Some(value.to_string()))
}

/// `'Name: value'` as sent by --ready-header and `drainit probe --header`.
pub fn parse_header(value: &str) -> Result<(String, String), String> {
    let (name, v) = value
        .split_once(':')
        .ok_or_else(|| format!("'{value}' is not 'NAME: VALUE'"))?;
    let name = name.trim();
    let valid = |c: char| c.is_ascii_alphanumeric() || "-_!#$%&'*+.^`|~".contains(c);
    if name.is_empty() || !name.chars().all(valid) || v.contains(['\r', '\n']) {
        return Err(format!("'{value}' is not 'NAME: VALUE'"));
    }
    Ok((name.to_string(), v.trim().to_string()))
}

fn parse_command(value: &str) -> Result<Vec<String>, String> {
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

/// `none`/`off`, `HOST:PORT`, `:PORT` or `PORT`.
pub fn resolve_addr(value: &str) -> Result<Option<SocketAddr>, String> {
    let v = value.trim();
    if matches!(v, "none" | "off" | "") {
        return Ok(None);
    }
    let full = if let Some(port) = v.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if v.parse::<u16>().is_ok() {
        format!("0.0.0.0:{v}")
    } else {
        v.to_string()
    };
    let bad = || format!("'{value}' is not an address (expected HOST:PORT, :PORT or none)");
    full.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .map(Some)
        .ok_or_else(bad)
}

/// The `--help` text, generated from [`OPTIONS`].
pub fn help() -> String {
    let mut out = String::from(
        "drainit: an init for containers that reaps zombies, forwards signals, and drains\n\
         load-balancer traffic before the app is stopped.\n\n\
         Usage: drainit [OPTIONS] [--] PROGRAM [ARGS...]\n\
         \x20      drainit probe|drain|undrain|status [OPTIONS]   (see drainit probe --help)\n\
         \x20      (drainit -- drain runs a program called drain)\n\nOptions:\n",
    );
    for spec in OPTIONS {
        let short = spec.short.map_or("    ".to_string(), |c| format!("-{c}, "));
        let value = spec.value.map_or(String::new(), |v| format!(" {v}"));
        out.push_str(&format!(
            "  {short}--{}{value}\n        {}\n",
            spec.long, spec.help
        ));
        if !spec.env.is_empty() {
            out.push_str(&format!("        env: {}\n", spec.env.join(", ")));
        }
    }
    out.push_str(
        "\nHealth endpoints: /livez /readyz /health /healthz /status /metrics,\n\
         \x20 /sethealth/ko and /sethealth/ok (loopback, or Authorization: Bearer TOKEN).\n\
         \nExit status:\n\
         \x20 the child's exit status, or 128+N when it was killed by signal N\n\
         \x20 0     when the child's code was given to --remap-exit\n\
         \x20 1     drainit itself failed (for example, could not fork)\n\
         \x20 2     usage error: unknown option, bad value, port in use\n\
         \x20 126   PROGRAM exists but could not be executed\n\
         \x20 127   PROGRAM was not found\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let lookup = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        match parse(&args, &lookup)? {
            Invocation::Run(c) => Ok(*c),
            other => Err(format!("{other:?}")),
        }
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
        assert_eq!(c.grace, Duration::from_secs(2));
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
        assert_eq!(resolve_addr("none"), Ok(None));
        assert_eq!(
            resolve_addr(":80").unwrap().unwrap().to_string(),
            "0.0.0.0:80"
        );
        assert!(resolve_addr("nowhere").is_err());
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
}
