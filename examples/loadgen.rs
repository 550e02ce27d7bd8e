//! loadgen: a steady-rate HTTP/1.1 load client that counts the outcome of
//! every request, for measuring what a rolling restart costs the users of a
//! load-balanced service. std only: threads, blocking sockets.
//!
//! Each of `--conns` threads owns one keep-alive connection and sends on a
//! fixed schedule (request j of thread k is due at (j*conns + k) / rate
//! seconds). A thread that falls behind (a slow or timed-out request) sends
//! its overdue requests back to back without skipping any, so every
//! scheduled request is sent and gets exactly one outcome. Like a browser
//! tab or one slot of a connection pool, a connection waits for its answer
//! before sending the next request: while a backend stalls, each
//! connection loses at most the one request it is waiting on, so failure
//! counts during a stall are a lower bound that grows with `--conns`. The
//! timeout counts from when a request was actually sent.
//!
//! What is counted, per request (a request = one scheduled GET):
//!
//! - `ok`: a complete response with a 2xx status.
//! - `status`: a complete response with any other status (HAProxy's own
//!   502/503/504 land here), counted per code in `statuses`.
//! - `connect_error`: a new TCP connection could not be made (refused,
//!   unreachable, ...).
//! - `reset`: the connection broke after the request was sent on a *new*
//!   connection (EOF or RST before a complete response), or mid-response
//!   on any connection.
//! - `stale`: the request was written to a *reused* keep-alive connection
//!   and the peer closed it (EOF or RST) before sending a single byte. This
//!   is the keep-alive race every HTTP client knows; browsers, curl and Go's
//!   net/http resend an idempotent request once on a new connection. By
//!   default loadgen does not: it is counted as a failure, because the
//!   point is to see what the server side did. With `--retry-stale` it is
//!   resent once on a new connection (like those clients), counted in
//!   `stale_retried`, and the resend's outcome is the request's outcome.
//! - `timeout`: no complete response within `--timeout` of sending
//!   (connect time included).
//!
//! `failed` is everything but `ok`. A response with `Connection: close` is
//! honoured (the next request opens a new connection; that is counted in
//! `connections_opened`, not as a failure).
//!
//! Output: one JSON summary line on stdout. Optional files: `--timeline`
//! (CSV `t_ms,ok,failed`, requests by completion time in 100 ms buckets) and
//! `--events` (CSV, one line per request, for finer analysis). Times are
//! relative to `start_unix` in the summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::exit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str =
    "usage: loadgen --url http://HOST:PORT/PATH [--rate N] [--conns N] [--duration S]
               [--timeout S] [--until-file PATH] [--timeline FILE] [--events FILE]
               [--retry-stale]

  --rate N          requests per second over all connections [200]
  --conns N         keep-alive connections, one thread each [8]
  --duration S      stop scheduling after S seconds [10]
  --timeout S       per-request limit, connect included [2]
  --until-file P    stop scheduling as soon as P exists (--duration still caps)
  --timeline FILE   CSV t_ms,ok,failed per 100 ms (by completion time)
  --events FILE     CSV start_ms,end_ms,outcome,status,conn,reused per request
  --retry-stale     resend once when a reused connection was closed before
                    any byte came back (what browsers do); default: a failure";

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;
const BUCKET_MS: u64 = 100;

struct Config {
    url: String,
    addr: SocketAddr,
    host_header: String,
    path: String,
    rate: f64,
    conns: usize,
    duration: Duration,
    timeout: Duration,
    until_file: Option<PathBuf>,
    timeline: Option<PathBuf>,
    events: Option<PathBuf>,
    retry_stale: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    Status,
    ConnectError,
    Reset,
    Stale,
    Timeout,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Status => "status",
            Outcome::ConnectError => "connect_error",
            Outcome::Reset => "reset",
            Outcome::Stale => "stale",
            Outcome::Timeout => "timeout",
        }
    }
}

/// One request's result.
struct Event {
    start: Duration,
    end: Duration,
    outcome: Outcome,
    status: u16,
    conn: usize,
    reused: bool,
    detail: Option<String>,
}

/// What one thread learned, merged at the end.
#[derive(Default)]
struct Tally {
    events: Vec<Event>,
    stale_retried: u64,
    connections_opened: u64,
}

fn main() {
    let cfg = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            exit(2);
        }
    };
    let cfg = Arc::new(cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let start_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let t0 = Instant::now();
    let tallies = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for k in 0..cfg.conns {
        let (cfg, stop, tallies) = (cfg.clone(), stop.clone(), tallies.clone());
        workers.push(
            thread::Builder::new()
                .name(format!("conn{k}"))
                .spawn(move || {
                    let tally = worker(&cfg, k, t0, &stop);
                    tallies.lock().unwrap().push(tally);
                })
                .unwrap_or_else(|e| {
                    eprintln!("loadgen: cannot start a thread: {e}");
                    exit(1)
                }),
        );
    }
    // The schedule ends at --duration, or earlier when --until-file appears.
    while t0.elapsed() < cfg.duration {
        if cfg.until_file.as_ref().is_some_and(|p| p.exists()) {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    let scheduled_for = t0.elapsed();
    for w in workers {
        let _ = w.join();
    }
    let tallies = std::mem::take(&mut *tallies.lock().unwrap());
    let mut all = Tally::default();
    for t in tallies {
        all.events.extend(t.events);
        all.stale_retried += t.stale_retried;
        all.connections_opened += t.connections_opened;
    }
    all.events.sort_by_key(|e| e.start);
    if let Some(path) = &cfg.timeline {
        if let Err(e) = write_timeline(path, &all.events) {
            eprintln!("loadgen: writing {}: {e}", path.display());
        }
    }
    if let Some(path) = &cfg.events {
        if let Err(e) = write_events(path, &all.events) {
            eprintln!("loadgen: writing {}: {e}", path.display());
        }
    }
    println!("{}", summary(&cfg, &all, start_unix, scheduled_for));
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut url = None;
    let mut rate: f64 = 200.0;
    let mut conns = 8;
    let mut duration: f64 = 10.0;
    let mut timeout: f64 = 2.0;
    let mut until_file = None;
    let mut timeline = None;
    let mut events = None;
    let mut retry_stale = false;
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--rate" => rate = number(&flag, &value()?)?,
            "--conns" => conns = number::<usize>(&flag, &value()?)?,
            "--duration" => duration = number(&flag, &value()?)?,
            "--timeout" => timeout = number(&flag, &value()?)?,
            "--until-file" => until_file = Some(PathBuf::from(value()?)),
            "--timeline" => timeline = Some(PathBuf::from(value()?)),
            "--events" => events = Some(PathBuf::from(value()?)),
            "--retry-stale" => retry_stale = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0);
            }
            _ => return Err(format!("unknown argument: {arg}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    if !(rate > 0.0 && rate.is_finite()) || conns == 0 || duration <= 0.0 || timeout <= 0.0 {
        return Err("--rate, --conns, --duration and --timeout must be positive".into());
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority} (HOST:PORT needed): {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} does not resolve"))?;
    Ok(Config {
        url: url.clone(),
        addr,
        host_header: authority.to_string(),
        path: path.to_string(),
        rate,
        conns,
        duration: Duration::from_secs_f64(duration),
        timeout: Duration::from_secs_f64(timeout),
        until_file,
        timeline,
        events,
        retry_stale,
    })
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: {text:?} is not a number"))
}

/// One connection's thread: sends on its schedule until told to stop.
fn worker(cfg: &Config, k: usize, t0: Instant, stop: &AtomicBool) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<TcpStream> = None;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: drainit-loadgen\r\nAccept: */*\r\n\r\n",
        cfg.path, cfg.host_header
    );
    for j in 0u64.. {
        let due = Duration::from_secs_f64((j as f64 * cfg.conns as f64 + k as f64) / cfg.rate);
        if due >= cfg.duration {
            break;
        }
        // Sleep in short steps so a stop request is noticed promptly.
        loop {
            if stop.load(Ordering::SeqCst) {
                return tally;
            }
            let now = t0.elapsed();
            if now >= due {
                break;
            }
            thread::sleep((due - now).min(Duration::from_millis(20)));
        }
        let start = t0.elapsed();
        let reused = conn.is_some();
        let (mut outcome, mut status, mut detail) =
            attempt(cfg, &mut conn, &request, &mut tally.connections_opened);
        if outcome == Outcome::Stale && cfg.retry_stale {
            tally.stale_retried += 1;
            (outcome, status, detail) =
                attempt(cfg, &mut conn, &request, &mut tally.connections_opened);
        }
        tally.events.push(Event {
            start,
            end: t0.elapsed(),
            outcome,
            status,
            conn: k,
            reused,
            detail,
        });
    }
    tally
}

/// Sends the request once, on the open connection or a new one. Leaves
/// `conn` open only when the response allows the connection to be reused.
fn attempt(
    cfg: &Config,
    conn: &mut Option<TcpStream>,
    request: &str,
    opened: &mut u64,
) -> (Outcome, u16, Option<String>) {
    let deadline = Instant::now() + cfg.timeout;
    let reused = conn.is_some();
    let mut stream = match conn.take() {
        Some(s) => s,
        None => match TcpStream::connect_timeout(&cfg.addr, cfg.timeout) {
            Ok(s) => {
                *opened += 1;
                let _ = s.set_nodelay(true);
                s
            }
            Err(e) if is_timeout(&e) => {
                return (Outcome::Timeout, 0, Some(format!("connect: {e}")))
            }
            Err(e) => return (Outcome::ConnectError, 0, Some(format!("connect: {e}"))),
        },
    };
    let _ = stream.set_write_timeout(Some(cfg.timeout));
    if let Err(e) = stream.write_all(request.as_bytes()) {
        let outcome = match (is_timeout(&e), reused) {
            (true, _) => Outcome::Timeout,
            (false, true) => Outcome::Stale,
            (false, false) => Outcome::Reset,
        };
        return (outcome, 0, Some(format!("write: {e}")));
    }
    match read_response(&mut stream, deadline) {
        Ok((status, keep)) => {
            if keep {
                *conn = Some(stream);
            }
            let outcome = if (200..300).contains(&status) {
                Outcome::Ok
            } else {
                Outcome::Status
            };
            (outcome, status, None)
        }
        Err(ReadError::Timeout) => (Outcome::Timeout, 0, Some("no response in time".into())),
        Err(ReadError::Broken { got_bytes, why }) => {
            let outcome = if reused && !got_bytes {
                Outcome::Stale
            } else {
                Outcome::Reset
            };
            (outcome, 0, Some(why))
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

enum ReadError {
    Timeout,
    /// EOF, RST or a malformed response; `got_bytes` says whether any byte
    /// of a response arrived.
    Broken {
        got_bytes: bool,
        why: String,
    },
}

/// Reads into `buf` until `done(buf)`; the read timeout follows the deadline.
fn read_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
    mut done: impl FnMut(&[u8]) -> bool,
    started_with: usize,
) -> Result<(), ReadError> {
    let mut chunk = [0u8; 16 * 1024];
    while !done(buf) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout);
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(ReadError::Broken {
                    got_bytes: started_with + buf.len() > 0,
                    why: format!("connection closed after {} response bytes", buf.len()),
                })
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(ReadError::Timeout),
            Err(e) => {
                return Err(ReadError::Broken {
                    got_bytes: started_with + buf.len() > 0,
                    why: format!("read: {e}"),
                })
            }
        }
        if buf.len() > MAX_HEAD + MAX_BODY {
            return Err(ReadError::Broken {
                got_bytes: true,
                why: "response too large".into(),
            });
        }
    }
    Ok(())
}

fn malformed(why: &str) -> ReadError {
    ReadError::Broken {
        got_bytes: true,
        why: why.to_string(),
    }
}

/// Reads one whole response; returns its status and whether the
/// connection may carry another request.
fn read_response(stream: &mut TcpStream, deadline: Instant) -> Result<(u16, bool), ReadError> {
    let mut buf = Vec::new();
    read_until(stream, &mut buf, deadline, |b| head_end(b).is_some(), 0)?;
    let end = head_end(&buf).unwrap_or(buf.len());
    if end > MAX_HEAD {
        return Err(malformed("response head too large"));
    }
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut body: Vec<u8> = buf[end..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(&format!("bad status line {status_line:?}")))?;
    let mut length = None;
    let mut chunked = false;
    let mut keep = version == "HTTP/1.1";
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (
            name.trim().to_ascii_lowercase(),
            value.trim().to_ascii_lowercase(),
        );
        match name.as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| malformed("bad content-length"))?,
                )
            }
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" if value.contains("close") => keep = false,
            "connection" if value.contains("keep-alive") => keep = true,
            _ => {}
        }
    }
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    if no_body {
        return Ok((status, keep));
    }
    if chunked {
        read_chunked(stream, body, deadline, end)?;
        return Ok((status, keep));
    }
    match length {
        Some(n) => {
            if n > MAX_BODY {
                return Err(malformed("body too large"));
            }
            read_until(stream, &mut body, deadline, |b| b.len() >= n, end)?;
            Ok((status, keep))
        }
        None => {
            // Delimited by close: read to EOF.
            let mut chunk = [0u8; 16 * 1024];
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ReadError::Timeout);
                }
                let _ = stream.set_read_timeout(Some(left));
                match stream.read(&mut chunk) {
                    Ok(0) => return Ok((status, false)),
                    Ok(n) => body.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if is_timeout(&e) => return Err(ReadError::Timeout),
                    Err(e) => return Err(malformed(&format!("read: {e}"))),
                }
                if body.len() > MAX_BODY {
                    return Err(malformed("body too large"));
                }
            }
        }
    }
}

/// Consumes a chunked body (trailers included).
fn read_chunked(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    deadline: Instant,
    head_len: usize,
) -> Result<(), ReadError> {
    loop {
        read_until(
            stream,
            &mut buf,
            deadline,
            |b| find(b, b"\r\n").is_some(),
            head_len,
        )?;
        let line_end = find(&buf, b"\r\n").unwrap_or(0);
        let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| malformed("bad chunk size"))?;
        buf.drain(..line_end + 2);
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                read_until(
                    stream,
                    &mut buf,
                    deadline,
                    |b| find(b, b"\r\n").is_some(),
                    head_len,
                )?;
                let end = find(&buf, b"\r\n").unwrap_or(0);
                buf.drain(..end + 2);
                if end == 0 {
                    return Ok(());
                }
            }
        }
        if size > MAX_BODY {
            return Err(malformed("chunk too large"));
        }
        read_until(
            stream,
            &mut buf,
            deadline,
            |b| b.len() >= size + 2,
            head_len,
        )?;
        buf.drain(..size + 2);
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    find(buf, b"\r\n\r\n").map(|p| p + 4)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn write_timeline(path: &PathBuf, events: &[Event]) -> io::Result<()> {
    let mut buckets: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let last = events.iter().map(|e| e.end).max().unwrap_or_default();
    for b in 0..=(last.as_millis() as u64 / BUCKET_MS) {
        buckets.insert(b, (0, 0));
    }
    for e in events {
        let entry = buckets
            .entry(e.end.as_millis() as u64 / BUCKET_MS)
            .or_default();
        if e.outcome == Outcome::Ok {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    let mut out = BufWriter::new(fs::File::create(path)?);
    writeln!(out, "t_ms,ok,failed")?;
    for (b, (ok, failed)) in buckets {
        writeln!(out, "{},{ok},{failed}", b * BUCKET_MS)?;
    }
    out.flush()
}

fn write_events(path: &PathBuf, events: &[Event]) -> io::Result<()> {
    let mut out = BufWriter::new(fs::File::create(path)?);
    writeln!(out, "start_ms,end_ms,outcome,status,conn,reused")?;
    for e in events {
        writeln!(
            out,
            "{:.3},{:.3},{},{},{},{}",
            ms(e.start),
            ms(e.end),
            e.outcome.name(),
            e.status,
            e.conn,
            u8::from(e.reused)
        )?;
    }
    out.flush()
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn summary(cfg: &Config, all: &Tally, start_unix: f64, scheduled_for: Duration) -> String {
    let events = &all.events;
    let count = |o: Outcome| events.iter().filter(|e| e.outcome == o).count();
    let ok = count(Outcome::Ok);
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e.outcome == Outcome::Status) {
        *statuses.entry(e.status).or_default() += 1;
    }
    let mut latencies: Vec<f64> = events.iter().map(|e| ms(e.end - e.start)).collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if latencies.is_empty() {
            0.0
        } else {
            latencies[((latencies.len() - 1) as f64 * p).round() as usize]
        }
    };
    // Longest time between two consecutive successful completions.
    let mut ok_ends: Vec<Duration> = events
        .iter()
        .filter(|e| e.outcome == Outcome::Ok)
        .map(|e| e.end)
        .collect();
    ok_ends.sort();
    let gap = ok_ends
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    let first_failures: Vec<String> = events
        .iter()
        .filter(|e| e.outcome != Outcome::Ok)
        .take(5)
        .map(|e| {
            json_string(&format!(
                "t={:.0}ms conn{}{} {}{}{}",
                ms(e.start),
                e.conn,
                if e.reused { " (reused)" } else { "" },
                e.outcome.name(),
                if e.status > 0 {
                    format!(" {}", e.status)
                } else {
                    String::new()
                },
                e.detail
                    .as_ref()
                    .map_or(String::new(), |d| format!(": {d}"))
            ))
        })
        .collect();
    let statuses_json: Vec<String> = statuses
        .iter()
        .map(|(code, n)| format!("\"{code}\":{n}"))
        .collect();
    let elapsed = scheduled_for.as_secs_f64();
    format!(
        concat!(
            "{{\"url\":{},\"requests\":{},\"ok\":{},\"failed\":{},",
            "\"status\":{},\"statuses\":{{{}}},\"connect_error\":{},\"reset\":{},",
            "\"stale\":{},\"timeout\":{},\"stale_retried\":{},\"connections_opened\":{},",
            "\"rate_target\":{},\"rate_achieved\":{:.1},\"conns\":{},\"timeout_s\":{},",
            "\"duration_s\":{:.3},\"start_unix\":{:.3},",
            "\"latency_ms\":{{\"p50\":{:.2},\"p99\":{:.2},\"max\":{:.2}}},",
            "\"longest_ok_gap_ms\":{:.1},\"first_failures\":[{}]}}"
        ),
        json_string(&cfg.url),
        events.len(),
        ok,
        events.len() - ok,
        count(Outcome::Status),
        statuses_json.join(","),
        count(Outcome::ConnectError),
        count(Outcome::Reset),
        count(Outcome::Stale),
        count(Outcome::Timeout),
        all.stale_retried,
        all.connections_opened,
        cfg.rate,
        if elapsed > 0.0 {
            events.len() as f64 / elapsed
        } else {
            0.0
        },
        cfg.conns,
        cfg.timeout.as_secs_f64(),
        elapsed,
        start_unix,
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(0.0),
        ms(gap),
        first_failures.join(","),
    )
}
