//! Client subcommands of the same binary, for images without curl:
//! `drainit probe` (a HEALTHCHECK command) and `drainit drain`, `undrain`,
//! `status` (talking to the local drainit's health endpoint).

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::cli::{self, EXIT_USAGE};
use crate::http::client::{self, Url};
use crate::json;

const SUBCOMMANDS: [&str; 4] = ["probe", "drain", "undrain", "status"];

pub fn is_subcommand(arg: &OsString) -> bool {
    SUBCOMMANDS.iter().any(|s| arg == *s)
}

const PROBE_HELP: &str = "\
Usage: drainit probe [URL] [--timeout S] [--attempts N] [--interval S] [--header 'N: V'] [--expect-json]
       drainit probe --tcp HOST:PORT [--timeout S] [--attempts N] [--interval S]
       drainit probe --file PATH [--max-age S]
       drainit drain | undrain | status [--addr ADDR] [--json] [--timeout S] [--token TOKEN]

probe: without URL, GETs the local drainit's /readyz (address from --addr, DRAINIT_HEALTH_ADDR
       or 0.0.0.0:8099, asked on loopback). Prints one line; exit 0 healthy, 1 unhealthy, 2 usage.
       Healthy is a complete 2xx answer; with --expect-json, its body must also be a JSON object
       whose top-level \"status\" is healthy, ok, up, pass or warn (any case).
drain/undrain: /sethealth/ko or /sethealth/ok on the local drainit (token: DRAINIT_CONTROL_TOKEN).
status: prints the local drainit's state (--json: the /status document, on one line).
";

/// Everything the client subcommands accept.
struct ClientArgs {
    url: Option<String>,
    addr: Option<String>,
    timeout: Duration,
    attempts: u32,
    interval: Duration,
    headers: Vec<(String, String)>,
    expect_json: bool,
    tcp: Option<String>,
    file: Option<PathBuf>,
    max_age: Duration,
    json: bool,
    token: Option<String>,
}

/// Runs `drainit SUBCOMMAND ARGS...`; returns the exit code.
pub fn run(sub: &str, args: &[OsString], env: &dyn Fn(&str) -> Option<String>) -> i32 {
    let parsed = match parse(args, env) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{PROBE_HELP}");
            return 0;
        }
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

fn parse(
    args: &[OsString],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ClientArgs>, String> {
    let mut a = ClientArgs {
        url: None,
        addr: env("DRAINIT_HEALTH_ADDR"),
        timeout: Duration::from_secs(3),
        attempts: 1,
        interval: Duration::from_secs(1),
        headers: Vec::new(),
        expect_json: false,
        tcp: None,
        file: None,
        max_age: Duration::from_secs(60),
        json: false,
        token: env("DRAINIT_CONTROL_TOKEN"),
    };
    let mut it = args.iter().map(|s| s.to_string_lossy().into_owned());
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--timeout" => a.timeout = positive(&name, &value()?)?,
            "--interval" => {
                a.interval = cli::parse_seconds(&value()?).map_err(|e| format!("{name}: {e}"))?
            }
            "--attempts" => {
                a.attempts = cli::parse_count(&value()?).map_err(|e| format!("{name}: {e}"))?
            }
            "--header" => a
                .headers
                .push(cli::parse_header(&value()?).map_err(|e| format!("{name}: {e}"))?),
            "--expect-json" => a.expect_json = true,
            "--tcp" => a.tcp = Some(value()?),
            "--file" => a.file = Some(PathBuf::from(value()?)),
            "--max-age" => a.max_age = positive(&name, &value()?)?,
            "--addr" => a.addr = Some(value()?),
            "--json" => a.json = true,
            "--token" => a.token = Some(value()?),
            other if other.starts_with('-') => {
                return Err(format!(
                    "unknown option '{other}' (see drainit probe --help)"
                ))
            }
            _ if a.url.is_none() => a.url = Some(arg),
            _ => return Err(format!("unexpected argument '{arg}'")),
        }
    }
    Ok(Some(a))
}

fn positive(name: &str, value: &str) -> Result<Duration, String> {
    match cli::parse_seconds(value) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{name}: must be more than 0")),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

/// The local drainit's base URL: its health address, with an unspecified
/// bind address (0.0.0.0, ::) asked on loopback.
fn local_base(a: &ClientArgs) -> Result<String, String> {
    let addr = a.addr.as_deref().unwrap_or(cli::DEFAULT_HEALTH_ADDR);
    let Some(mut sock) = cli::resolve_addr(addr)? else {
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
    let mut attempt = 1;
    loop {
        match check() {
            Verdict::Healthy(line) => {
                println!("healthy: {line}");
                return 0;
            }
            Verdict::Unhealthy(line) if attempt >= a.attempts => {
                let suffix = if a.attempts > 1 {
                    format!(" (after {attempt} attempts)")
                } else {
                    String::new()
                };
                println!("unhealthy: {line}{suffix}");
                return 1;
            }
            Verdict::Unhealthy(_) => {
                attempt += 1;
                thread::sleep(a.interval);
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
        return Ok(Box::new(move || probe_tcp(&resolved, a.timeout)));
    }
    if let Some(path) = &a.file {
        return Ok(Box::new(move || probe_file(path, a.max_age)));
    }
    let url = match &a.url {
        Some(u) => Url::parse(u)?,
        None => Url::parse(&format!("{}/readyz", local_base(a)?))?,
    };
    Ok(Box::new(move || probe_http(&url, a)))
}

fn probe_http(url: &Url, a: &ClientArgs) -> Verdict {
    let started = Instant::now();
    match client::get(url, &a.headers, a.timeout) {
        Ok(r) => {
            let took = millis(started);
            let line = format!("{} from {} in {took}", r.code, r.url);
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

fn fetch(a: &ClientArgs, path: &str) -> Result<client::Response, Failure> {
    let base = local_base(a).map_err(|e| (EXIT_USAGE, e))?;
    let url = Url::parse(&format!("{base}{path}")).map_err(|e| (EXIT_USAGE, e))?;
    let headers: Vec<(String, String)> = a
        .token
        .iter()
        .map(|t| ("Authorization".to_string(), format!("Bearer {t}")))
        .collect();
    client::get(&url, &headers, a.timeout).map_err(|e| (1, e))
}

/// drainit's answer read as JSON. `--json` prints it written out again
/// rather than as sent: one line, every control character escaped.
fn document(r: &client::Response) -> Result<serde_json::Value, Failure> {
    json::parse(&r.body).map_err(|e| (1, format!("{} answered {}: {e}", r.url, r.code)))
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
                r.url,
                field("error", "")
            ),
        )),
    }
}

fn status(a: &ClientArgs) -> Result<String, Failure> {
    let r = fetch(a, "/status")?;
    if r.code != 200 {
        return Err((1, format!("{} answered {}", r.url, r.code)));
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
