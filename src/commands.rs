//! Client subcommands of the same binary, for images without curl:
//! `drainit probe` (a HEALTHCHECK command) and `drainit drain`, `undrain`,
//! `status` (talking to the local drainit's health endpoint).

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::cli::{self, EXIT_USAGE};
use crate::control;
use crate::http::client::{self, Url};
use crate::http::server;
use crate::json;
use crate::opts::{self, env, flag, list, valued, Opt};
use crate::spawn::CONTROL_TOKEN_ENV;

const SUBCOMMANDS: [&str; 4] = ["probe", "drain", "undrain", "status"];

pub fn is_subcommand(arg: &OsString) -> bool {
    SUBCOMMANDS.iter().any(|s| arg == *s)
}

const USAGE: &str = "\
Usage: drainit probe [URL] [--timeout S] [--attempts N] [--interval S] [--header 'N: V'] [--expect-json]
       drainit probe --tcp HOST:PORT [--timeout S] [--attempts N] [--interval S]
       drainit probe --file PATH [--max-age S]
       drainit drain | undrain | status [--socket PATH] [--addr ADDR] [--json] [--token TOKEN]

probe: without URL, GETs the local drainit's /readyz (address from --addr, DRAINIT_HEALTH_ADDR
       or 0.0.0.0:8099, asked on loopback). Prints one line; exit 0 healthy, 1 unhealthy, 2 usage.
       Healthy is a complete 2xx answer; with --expect-json, its body must also be a JSON object
       whose top-level \"status\" is healthy, ok, up, pass or warn (any case).
drain/undrain: /sethealth/ko or /sethealth/ok on the local drainit, over its control socket
       when there is one (no token needed), else over TCP (loopback, or the token).
status: prints the local drainit's state (--json: the /status document, on one line).

Options:
";

/// Everything the client subcommands accept.
#[derive(Default)]
pub struct ClientArgs {
    help: bool,
    url: Option<String>,
    addr: Option<String>,
    socket: Option<String>,
    timeout: Option<Duration>,
    attempts: Option<u32>,
    interval: Option<Duration>,
    headers: Vec<(String, String)>,
    expect_json: bool,
    tcp: Option<String>,
    file: Option<PathBuf>,
    max_age: Option<Duration>,
    json: bool,
    token: Option<String>,
}

impl ClientArgs {
    fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(3))
    }
}

/// Every option of the client subcommands, with what it does.
pub static OPTIONS: &[Opt<ClientArgs>] = &[
    flag(
        "help",
        Some('h'),
        &[],
        "print this help and exit",
        |a, _| {
            a.help = true;
            Ok(())
        },
    ),
    valued(
        "timeout",
        None,
        "SECONDS",
        &[],
        "time limit of one attempt [3]",
        |a, v| {
            a.timeout = Some(cli::parse_positive_seconds(v)?);
            Ok(())
        },
    ),
    valued(
        "attempts",
        None,
        "N",
        &[],
        "probe: attempts before unhealthy [1]",
        |a, v| {
            a.attempts = Some(cli::parse_count(v)?);
            Ok(())
        },
    ),
    valued(
        "interval",
        None,
        "SECONDS",
        &[],
        "probe: time between attempts [1]",
        |a, v| {
            a.interval = Some(cli::parse_seconds(v)?);
            Ok(())
        },
    ),
    list(
        "header",
        None,
        "'NAME: VALUE'",
        &[],
        "probe: extra request header",
        |a, v| {
            a.headers.push(client::parse_header(v)?);
            Ok(())
        },
    ),
    flag(
        "expect-json",
        None,
        &[],
        "probe: the body's top-level \"status\" must be healthy, ok, up, pass or warn",
        |a, _| {
            a.expect_json = true;
            Ok(())
        },
    ),
    valued(
        "tcp",
        None,
        "HOST:PORT",
        &[],
        "probe: healthy when it accepts a connection",
        |a, v| {
            a.tcp = Some(v.to_string());
            Ok(())
        },
    ),
    valued(
        "file",
        None,
        "PATH",
        &[],
        "probe: healthy while PATH is fresh",
        |a, v| {
            a.file = Some(PathBuf::from(v));
            Ok(())
        },
    ),
    valued(
        "max-age",
        None,
        "SECONDS",
        &[],
        "probe --file: oldest fresh mtime [60]",
        |a, v| {
            a.max_age = Some(cli::parse_positive_seconds(v)?);
            Ok(())
        },
    ),
    valued(
        "addr",
        None,
        "ADDR",
        &[env("DRAINIT_HEALTH_ADDR")],
        "the local drainit's health address [0.0.0.0:8099, asked on loopback]",
        |a, v| {
            a.addr = Some(v.to_string());
            Ok(())
        },
    ),
    valued(
        "socket",
        None,
        "PATH",
        &[env("DRAINIT_CONTROL_SOCKET")],
        "the local drainit's control socket, or none [/run/drainit.sock, then the temp dir]",
        |a, v| {
            a.socket = Some(v.to_string());
            Ok(())
        },
    ),
    flag(
        "json",
        None,
        &[],
        "drain, undrain, status: print drainit's JSON",
        |a, _| {
            a.json = true;
            Ok(())
        },
    ),
    valued(
        "token",
        None,
        "TOKEN",
        &[env(CONTROL_TOKEN_ENV)],
        "bearer token for control over TCP",
        |a, v| {
            a.token = Some(control::parse_token(v)?);
            Ok(())
        },
    ),
    valued(
        "token-file",
        None,
        "PATH",
        &[env("DRAINIT_CONTROL_TOKEN_FILE")],
        "read the bearer token from PATH",
        |a, v| {
            a.token = Some(control::read_token_file(v)?);
            Ok(())
        },
    ),
];

/// Runs `drainit SUBCOMMAND ARGS...`; returns the exit code.
pub fn run(sub: &str, args: &[OsString], env: &dyn Fn(&str) -> Option<String>) -> i32 {
    let parsed = match parse(args, env) {
        Ok(a) if a.help => {
            print!("{USAGE}{}", opts::help(OPTIONS));
            return 0;
        }
        Ok(a) => a,
        Err(e) => {
            eprintln!("drainit {sub}: {e}");
            return EXIT_USAGE;
        }
    };
    let result = match sub {
        "probe" => return probe(&parsed),
        "drain" => control(&parsed, "/sethealth/ko"),
        "undrain" => control(&parsed, "/sethealth/ok"),
        _ => status(&parsed),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err((code, e)) => {
            eprintln!("drainit {sub}: {e}");
            code
        }
    }
}

fn parse(args: &[OsString], env: &dyn Fn(&str) -> Option<String>) -> Result<ClientArgs, String> {
    let given = opts::tokenize(OPTIONS, args, false)?;
    let mut a = ClientArgs::default();
    given.apply(OPTIONS, &mut a, env)?;
    match given.positional.as_slice() {
        [] => {}
        [url] => a.url = Some(url.to_string_lossy().into_owned()),
        [_, extra, ..] => return Err(format!("unexpected argument '{}'", extra.to_string_lossy())),
    }
    Ok(a)
}

/// The local drainit's base URL: its health address, with an unspecified
/// bind address (0.0.0.0, ::) asked on loopback.
fn local_base(a: &ClientArgs) -> Result<String, String> {
    let addr = a.addr.as_deref().unwrap_or(cli::DEFAULT_HEALTH_ADDR);
    let Some(mut sock) = server::parse_addr(addr)? else {
        return Err("the health endpoint is off (health address 'none')".into());
    };
    if sock.ip().is_unspecified() {
        let ip = if sock.is_ipv4() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        };
        sock = SocketAddr::new(ip, sock.port());
    }
    Ok(format!("http://{sock}"))
}

enum Verdict {
    Healthy(String),
    Unhealthy(String),
}

fn probe(a: &ClientArgs) -> i32 {
    let check = match probe_target(a) {
        Ok(check) => check,
        Err(e) => {
            eprintln!("drainit probe: {e}");
            return EXIT_USAGE;
        }
    };
    let attempts = a.attempts.unwrap_or(1);
    let mut attempt = 1;
    loop {
        match check() {
            Verdict::Healthy(line) => {
                println!("healthy: {line}");
                return 0;
            }
            Verdict::Unhealthy(line) if attempt >= attempts => {
                let suffix = if attempts > 1 {
                    format!(" (after {attempt} attempts)")
                } else {
                    String::new()
                };
                println!("unhealthy: {line}{suffix}");
                return 1;
            }
            Verdict::Unhealthy(_) => {
                attempt += 1;
                thread::sleep(a.interval.unwrap_or(Duration::from_secs(1)));
            }
        }
    }
}

type ProbeFn<'a> = Box<dyn Fn() -> Verdict + 'a>;

/// Validates the probe's arguments once, before any attempt.
fn probe_target(a: &ClientArgs) -> Result<ProbeFn<'_>, String> {
    let modes = [a.url.is_some(), a.tcp.is_some(), a.file.is_some()];
    if modes.iter().filter(|m| **m).count() > 1 {
        return Err("give one of URL, --tcp or --file".into());
    }
    if let Some(addr) = &a.tcp {
        let resolved: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| format!("--tcp: '{addr}' is not HOST:PORT ({e})"))?
            .collect();
        if resolved.is_empty() {
            return Err(format!("--tcp: '{addr}' does not resolve"));
        }
        return Ok(Box::new(move || probe_tcp(&resolved, a.timeout())));
    }
    if let Some(path) = &a.file {
        let max_age = a.max_age.unwrap_or(Duration::from_secs(60));
        return Ok(Box::new(move || probe_file(path, max_age)));
    }
    let url = match &a.url {
        Some(u) => Url::parse(u)?,
        None => Url::parse(&format!("{}/readyz", local_base(a)?))?,
    };
    Ok(Box::new(move || probe_http(&url, a)))
}

fn probe_http(url: &Url, a: &ClientArgs) -> Verdict {
    let started = Instant::now();
    match client::get(url, &a.headers, a.timeout()) {
        Ok(r) => {
            let took = millis(started);
            let line = format!("{} from {} in {took}", r.code, r.from);
            if !(200..300).contains(&r.code) {
                return Verdict::Unhealthy(line);
            }
            match a.expect_json.then(|| json::healthy(&r.body)) {
                Some(Err(why)) => Verdict::Unhealthy(format!("{line}, {why}")),
                _ => Verdict::Healthy(line),
            }
        }
        Err(e) => Verdict::Unhealthy(e),
    }
}

/// Tries every resolved address in turn (`localhost` may be ::1 first).
fn probe_tcp(addrs: &[SocketAddr], timeout: Duration) -> Verdict {
    let started = Instant::now();
    match client::connect_any(addrs, started + timeout) {
        Ok(stream) => Verdict::Healthy(format!(
            "{} accepted a connection in {}",
            stream.peer_addr().unwrap_or(addrs[0]),
            millis(started)
        )),
        // The error is the last address's: the one tried last.
        Err(e) => {
            let last = addrs[addrs.len() - 1];
            Verdict::Unhealthy(format!("cannot connect to {last}: {e}"))
        }
    }
}

fn probe_file(path: &PathBuf, max_age: Duration) -> Verdict {
    let modified = std::fs::metadata(path).and_then(|m| m.modified());
    match modified {
        Ok(m) => {
            let age = SystemTime::now().duration_since(m).unwrap_or_default();
            let line = format!(
                "{} modified {:.1}s ago (max {:.1}s)",
                path.display(),
                age.as_secs_f64(),
                max_age.as_secs_f64()
            );
            if age <= max_age {
                Verdict::Healthy(line)
            } else {
                Verdict::Unhealthy(line)
            }
        }
        Err(e) => Verdict::Unhealthy(format!("{}: {e}", path.display())),
    }
}

fn millis(since: Instant) -> String {
    format!("{:.1} ms", since.elapsed().as_secs_f64() * 1000.0)
}

type Failure = (i32, String);

/// Asks the local drainit for `path`: over its control socket when one
/// answers (it needs no token), else over TCP.
fn fetch(a: &ClientArgs, path: &str) -> Result<client::Response, Failure> {
    let headers: Vec<(String, String)> = a
        .token
        .iter()
        .map(|t| ("Authorization".to_string(), format!("Bearer {t}")))
        .collect();
    let sockets = match a.socket.as_deref() {
        Some("none") => Vec::new(),
        Some(path) => vec![PathBuf::from(path)],
        None => control::default_sockets(),
    };
    for socket in sockets.iter().filter(|s| s.exists()) {
        match client::get_local(socket, path, &headers, a.timeout()) {
            Ok(r) => return Ok(r),
            Err(e) if a.socket.is_some() => return Err((1, e)),
            Err(_) => {}
        }
    }
    let base = local_base(a).map_err(|e| (EXIT_USAGE, e))?;
    let url = Url::parse(&format!("{base}{path}")).map_err(|e| (EXIT_USAGE, e))?;
    client::get(&url, &headers, a.timeout()).map_err(|e| (1, e))
}

/// drainit's answer read as JSON. `--json` prints it written out again
/// rather than as sent: one line, every control character escaped.
fn document(r: &client::Response) -> Result<serde_json::Value, Failure> {
    json::parse(&r.body).map_err(|e| (1, format!("{} answered {}: {e}", r.from, r.code)))
}

fn control(a: &ClientArgs, path: &str) -> Result<String, Failure> {
    let r = fetch(a, path)?;
    let doc = document(&r)?;
    if a.json {
        return if r.code == 200 {
            Ok(doc.to_string())
        } else {
            Err((1, doc.to_string()))
        };
    }
    let field = |k: &str, absent: &str| printable(&json::member(&doc, k).unwrap_or(absent.into()));
    let state = field("state", "unknown");
    match r.code {
        200 if path.ends_with("ko") => Ok(format!("drained: readiness now fails (state {state})")),
        200 => Ok(format!("undrained: state {state}")),
        code => Err((
            1,
            format!(
                "{} answered {code}: {} (state {state})",
                r.from,
                field("error", "")
            ),
        )),
    }
}

fn status(a: &ClientArgs) -> Result<String, Failure> {
    let r = fetch(a, "/status")?;
    if r.code != 200 {
        return Err((1, format!("{} answered {}", r.from, r.code)));
    }
    let doc = document(&r)?;
    if a.json {
        return Ok(doc.to_string());
    }
    let field = |k: &str| printable(&json::member(&doc, k).unwrap_or("?".into()));
    Ok(format!(
        "state {}, child pid {}, up {}s, drains {}",
        field("state"),
        field("child_pid"),
        field("uptime_seconds"),
        field("drains")
    ))
}

/// `text` with its control characters escaped: what a server sends must
/// not move the cursor or recolour the terminal of whoever runs drainit.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            printable("ready\u{1b}[2J\r\n"),
            "ready\\u{1b}[2J\\u{d}\\u{a}"
        );
    }
}
