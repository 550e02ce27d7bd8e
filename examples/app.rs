//! app: a tiny HTTP/1.1 server standing in for "the real application" in
//! drainit's tests: behind a load balancer, for readiness probes, and for
//! graceful-shutdown checks.
//!
//! On SIGTERM/SIGINT it stops accepting at once, answers requests already in
//! flight (with `Connection: close`), drops idle keep-alive connections and
//! exits with `--term-exit`.

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

const USAGE: &str = "usage: app [--listen ADDR] [--name NAME] [--work-ms N] [--start-delay MS]
           [--term-exit CODE] [--ready-file PATH] [--live-file PATH]";

/// How often blocked reads wake up to notice shutdown; bounds how long an
/// idle keep-alive connection can delay exit.
const READ_POLL: Duration = Duration::from_millis(100);
/// Idle keep-alive connections are dropped after this, as real servers do.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A peer that stops reading must not pin a thread (and shutdown) forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(50);
const LIVE_TOUCH_EVERY: Duration = Duration::from_secs(1);

struct Config {
    listen: String,
    name: String,
    work: Duration,
    start_delay: Duration,
    term_exit: i32,
    ready_file: Option<PathBuf>,
    live_file: Option<PathBuf>,
}

struct App {
    cfg: Config,
    started: Instant,
    /// Toggled by /ready/on and /ready/off.
    manual_ready: AtomicBool,
    shutting_down: AtomicBool,
    in_flight: AtomicUsize,
    connections: AtomicUsize,
}

impl App {
    fn stopping(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Unready while starting up, when switched off, and while draining, so
    /// probes steer traffic away as soon as we stop wanting it.
    fn is_ready(&self) -> bool {
        self.manual_ready.load(Ordering::SeqCst)
            && self.started.elapsed() >= self.cfg.start_delay
            && !self.stopping()
    }
}

/// Decrements a counter when dropped, so early returns cannot leak counts.
struct CountGuard<'a>(&'a AtomicUsize);

impl<'a> CountGuard<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        CountGuard(counter)
    }
}

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn main() {
    let cfg = match parse_args(std::env::args_os().skip(1)) {
        Ok(cfg) => cfg,
        Err(msg) => {
            eprintln!("app: {msg}\n{USAGE}");
            exit(2);
        }
    };
    let listener = TcpListener::bind(&cfg.listen)
        .unwrap_or_else(|e| fail(&format!("binding {}: {e}", cfg.listen)));
    // Handlers go in before we accept anything, so an early SIGTERM is graceful too.
    let signals = Signals::new([SIGTERM, SIGINT])
        .unwrap_or_else(|e| fail(&format!("installing handlers: {e}")));
    let app = Arc::new(App {
        cfg,
        started: Instant::now(),
        manual_ready: AtomicBool::new(true),
        shutting_down: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        connections: AtomicUsize::new(0),
    });
    match listener.local_addr() {
        Ok(addr) => eprintln!("app {}: listening on {addr}", app.cfg.name),
        Err(e) => eprintln!("app {}: listening (address unknown: {e})", app.cfg.name),
    }
    let listener = Arc::new(listener);
    {
        let (app, listener) = (app.clone(), listener.clone());
        thread::spawn(move || watch_signals(signals, &app, listener));
    }
    {
        let app = app.clone();
        thread::spawn(move || housekeeping(&app));
    }
    accept_loop(&app, &listener);
    drop(listener);
    while app.connections.load(Ordering::SeqCst) > 0 {
        thread::sleep(Duration::from_millis(10));
    }
    if let Some(path) = &app.cfg.ready_file {
        remove_if_present(path);
    }
    eprintln!("app {}: exiting", app.cfg.name);
    exit(app.cfg.term_exit);
}

fn fail(msg: &str) -> ! {
    eprintln!("app: {msg}");
    exit(1);
}

fn parse_args(mut args: impl Iterator<Item = OsString>) -> Result<Config, String> {
    let mut cfg = Config {
        listen: "127.0.0.1:8080".into(),
        name: "app".into(),
        work: Duration::from_millis(5),
        start_delay: Duration::ZERO,
        term_exit: 0,
        ready_file: None,
        live_file: None,
    };
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument is not UTF-8: {a:?}"))?;
        let flag = arg.as_str();
        match flag {
            "--listen" => cfg.listen = value(flag, &mut args)?,
            "--name" => cfg.name = value(flag, &mut args)?,
            "--work-ms" => cfg.work = Duration::from_millis(value(flag, &mut args)?),
            "--start-delay" => cfg.start_delay = Duration::from_millis(value(flag, &mut args)?),
            "--term-exit" => cfg.term_exit = value(flag, &mut args)?,
            "--ready-file" => cfg.ready_file = Some(value(flag, &mut args)?),
            "--live-file" => cfg.live_file = Some(value(flag, &mut args)?),
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0);
            }
            _ => return Err(format!("unknown argument: {arg}")),
        }
    }
    Ok(cfg)
}

fn value<T: FromStr>(flag: &str, args: &mut impl Iterator<Item = OsString>) -> Result<T, String> {
    let raw = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
    let text = raw
        .to_str()
        .ok_or_else(|| format!("{flag}: value is not UTF-8"))?;
    text.parse()
        .map_err(|_| format!("{flag}: invalid value {text:?}"))
}

fn watch_signals(mut signals: Signals, app: &App, listener: Arc<TcpListener>) {
    let mut pending = signals.forever();
    if let Some(sig) = pending.next() {
        app.shutting_down.store(true, Ordering::SeqCst);
        // shutdown() rather than close(): it is safe while the accept loop
        // sits in accept() on the same fd, wakes it up, and makes the kernel
        // refuse new connections right away.
        // SAFETY: the fd stays valid because we hold an Arc to the listener.
        unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
        drop(listener);
        let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
        let in_flight = app.in_flight.load(Ordering::SeqCst);
        eprintln!("app {}: got {name}, {in_flight} in flight", app.cfg.name);
    }
    // Keep consuming: dropping `signals` would leave the handler installed
    // but doing nothing, and draining should not restart on a second signal.
    for _ in pending {}
}

fn accept_loop(app: &Arc<App>, listener: &TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, _)) if app.stopping() => drop(stream),
            Ok((stream, _)) => spawn_connection(app, stream),
            Err(_) if app.stopping() => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // e.g. EMFILE: back off instead of spinning.
                eprintln!("app {}: accept: {e}", app.cfg.name);
                thread::sleep(Duration::from_millis(50));
            }
        }
        if app.stopping() {
            return;
        }
    }
}

fn spawn_connection(app: &Arc<App>, stream: TcpStream) {
    let app = app.clone();
    // Counted before the thread starts so the exit wait cannot miss it.
    app.connections.fetch_add(1, Ordering::SeqCst);
    let spawned = thread::Builder::new().spawn({
        let app = app.clone();
        move || {
            serve_connection(&app, stream);
            app.connections.fetch_sub(1, Ordering::SeqCst);
        }
    });
    if let Err(e) = spawned {
        app.connections.fetch_sub(1, Ordering::SeqCst);
        eprintln!("app {}: cannot start connection thread: {e}", app.cfg.name);
    }
}

/// Creates/removes the ready file as readiness changes and touches the
/// live file periodically.
fn housekeeping(app: &App) {
    let mut ready_file_present = false;
    let mut last_touch: Option<Instant> = None;
    loop {
        if let Some(path) = &app.cfg.ready_file {
            let want = app.is_ready();
            if want != ready_file_present {
                if want {
                    create_marker(path);
                } else {
                    remove_if_present(path);
                }
                ready_file_present = want;
            }
        }
        if let Some(path) = &app.cfg.live_file {
            if last_touch.is_none_or(|t| t.elapsed() >= LIVE_TOUCH_EVERY) {
                if let Err(e) = touch(path) {
                    eprintln!("app {}: touching {}: {e}", app.cfg.name, path.display());
                }
                last_touch = Some(Instant::now());
            }
        }
        thread::sleep(HOUSEKEEPING_TICK);
    }
}

/// Written via rename so a checker never sees a half-created file.
fn create_marker(path: &Path) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    if let Err(e) = fs::write(&tmp, "ready\n").and_then(|_| fs::rename(&tmp, path)) {
        eprintln!("app: creating {}: {e}", path.display());
    }
}

fn remove_if_present(path: &Path) {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            eprintln!("app: removing {}: {e}", path.display())
        }
        _ => {}
    }
}

fn touch(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .set_modified(SystemTime::now())
}

// ---------------------------------------------------------------- HTTP

struct Request {
    method: String,
    path: String,
    query: String,
    keep_alive: bool,
    /// Names are lower-cased.
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    extra_headers: Vec<(&'static str, String)>,
    /// Headers-only answers (HEAD) still announce the real length.
    head_only: bool,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain",
            body: body.into(),
            extra_headers: Vec::new(),
            head_only: false,
        }
    }

    fn json(status: u16, body: &str) -> Self {
        Response {
            content_type: "application/json",
            ..Response::text(status, body)
        }
    }

    fn redirect(location: impl Into<String>) -> Self {
        Response {
            extra_headers: vec![("Location", location.into())],
            ..Response::text(301, "moved\n")
        }
    }
}

enum ReadOutcome {
    Request(Request),
    BadRequest(u16, &'static str),
    Closed,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn serve_connection(app: &App, stream: TcpStream) {
    let setup = stream
        .set_read_timeout(Some(READ_POLL))
        .and_then(|_| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
        .and_then(|_| stream.set_nodelay(true));
    if setup.is_err() {
        return;
    }
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    loop {
        let req = match read_request(app, &mut conn) {
            ReadOutcome::Request(req) => req,
            ReadOutcome::BadRequest(status, why) => {
                let _ = write_response(app, &mut conn.stream, &Response::text(status, why), true);
                return;
            }
            ReadOutcome::Closed => return,
        };
        let _in_flight = CountGuard::new(&app.in_flight);
        let Some(mut resp) = handle(app, &req) else {
            return;
        };
        resp.head_only = req.method == "HEAD";
        // Checked after the work so a request that straddled SIGTERM still
        // tells its client to go elsewhere next time.
        let close = !req.keep_alive || app.stopping();
        if write_response(app, &mut conn.stream, &resp, close).is_err() || close {
            return;
        }
    }
}

fn read_request(app: &App, conn: &mut Conn) -> ReadOutcome {
    let idle_since = Instant::now();
    let head_end = loop {
        if let Some(end) = find_head_end(&conn.buf) {
            break end;
        }
        if conn.buf.len() > MAX_HEAD {
            return ReadOutcome::BadRequest(431, "request head too large\n");
        }
        // Only an idle connection may be dropped; a half-received request
        // was already sent by the client and deserves an answer.
        if conn.buf.is_empty() && (app.stopping() || idle_since.elapsed() > IDLE_TIMEOUT) {
            return ReadOutcome::Closed;
        }
        if !read_more(conn) {
            return ReadOutcome::Closed;
        }
    };
    let head: Vec<u8> = conn.buf.drain(..head_end).collect();
    let req = match parse_head(&head) {
        Ok(req) => req,
        Err(why) => return ReadOutcome::BadRequest(400, why),
    };
    if req.header("transfer-encoding").is_some() {
        return ReadOutcome::BadRequest(501, "chunked request bodies are not supported\n");
    }
    let body_len = match req.header("content-length").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) if n <= MAX_BODY => n,
        Some(Ok(_)) => return ReadOutcome::BadRequest(413, "body too large\n"),
        Some(Err(_)) => return ReadOutcome::BadRequest(400, "bad content-length\n"),
    };
    while conn.buf.len() < body_len {
        if !read_more(conn) {
            return ReadOutcome::Closed;
        }
    }
    // No endpoint uses a body; it is consumed only to keep the stream in sync.
    conn.buf.drain(..body_len);
    ReadOutcome::Request(req)
}

/// Reads what is available; false when the peer is gone. A read timeout
/// counts as "still open" so callers get to re-check shutdown.
fn read_more(conn: &mut Conn) -> bool {
    let mut chunk = [0u8; 8192];
    match conn.stream.read(&mut chunk) {
        Ok(0) => false,
        Ok(n) => {
            conn.buf.extend_from_slice(&chunk[..n]);
            true
        }
        Err(e) => matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
        ),
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn parse_head(head: &[u8]) -> Result<Request, &'static str> {
    let text = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8\n")?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line\n");
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err("unsupported HTTP version\n"),
    };
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or("malformed header\n")?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        keep_alive: http11,
        headers,
    };
    if let Some(conn) = req.header("connection").map(str::to_ascii_lowercase) {
        if conn.contains("close") {
            req.keep_alive = false;
        } else if conn.contains("keep-alive") {
            req.keep_alive = true;
        }
    }
    Ok(req)
}

/// None means "never answer": the connection is just closed.
fn handle(app: &App, req: &Request) -> Option<Response> {
    let read_only = matches!(req.method.as_str(), "GET" | "HEAD");
    let toggle = matches!(req.method.as_str(), "GET" | "POST");
    let (allowed, allow) = match req.path.as_str() {
        "/ready/on" | "/ready/off" => (toggle, "GET, POST"),
        _ => (read_only, "GET, HEAD"),
    };
    if !allowed {
        let mut resp = Response::text(405, "method not allowed\n");
        resp.extra_headers.push(("Allow", allow.to_string()));
        return Some(resp);
    }
    if req.path == "/hang" {
        return hang(app);
    }
    // Simulated work keeps requests in flight long enough to observe draining.
    thread::sleep(app.cfg.work);
    Some(match req.path.as_str() {
        "/" => Response::text(200, format!("hello from {}\n", app.cfg.name)),
        "/ready" => readiness(app),
        "/ready/on" => set_ready(app, true),
        "/ready/off" => set_ready(app, false),
        "/slow" => slow(req),
        "/redirect-other" => Response::redirect("http://example.invalid/"),
        "/redirect-same" => Response::redirect("/ready"),
        "/tls-only" => tls_only(app, req),
        _ => Response::text(404, "not found\n"),
    })
}

fn readiness(app: &App) -> Response {
    if app.is_ready() {
        Response::json(200, "{\"status\":\"healthy\"}")
    } else {
        Response::json(503, "{\"status\":\"unhealthy\"}")
    }
}

fn set_ready(app: &App, on: bool) -> Response {
    app.manual_ready.store(on, Ordering::SeqCst);
    Response::text(200, if on { "ready on\n" } else { "ready off\n" })
}

fn slow(req: &Request) -> Response {
    let ms = req
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("ms="))
        .map(str::parse::<u64>);
    match ms {
        Some(Ok(ms)) => {
            thread::sleep(Duration::from_millis(ms));
            Response::text(200, format!("slept {ms} ms\n"))
        }
        _ => Response::text(400, "need ?ms=N\n"),
    }
}

/// Holds the request unanswered until shutdown, then drops the connection,
/// so it never blocks a graceful exit.
fn hang(app: &App) -> Option<Response> {
    while !app.stopping() {
        thread::sleep(READ_POLL);
    }
    None
}

fn tls_only(app: &App, req: &Request) -> Response {
    let https = req
        .header("x-forwarded-proto")
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    if https {
        return readiness(app);
    }
    match req.header("host") {
        Some(host) => Response::redirect(format!("https://{host}/tls-only")),
        None => Response::text(400, "missing Host header\n"),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn write_response(
    app: &App,
    stream: &mut TcpStream,
    resp: &Response,
    close: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nX-App-Name: {}\r\nConnection: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len(),
        app.cfg.name,
        if close { "close" } else { "keep-alive" },
    );
    for (name, value) in &resp.extra_headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    if !resp.head_only {
        out.push_str(&resp.body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}
