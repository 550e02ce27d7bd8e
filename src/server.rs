//! A bounded HTTP/1.1 server for the health endpoint.
//!
//! tiny_http gives every connection its own thread and never times a
//! request out, so 2,000 idle connections meant 2,000 threads in PID 1.
//! This server is one thread and one epoll set instead, with a cap on
//! connections (at the cap, the least recently active one is dropped, so a
//! flood of idle sockets cannot lock the proxy's probes out), a deadline for
//! each request head, an idle deadline between keep-alive requests, and a
//! strict parser: anything it does not understand is answered 4xx/5xx and
//! the connection closed. Health requests carry no bodies worth reading.
//! When no connection is open it sleeps in epoll_wait without a timeout.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::thread;
use std::time::{Duration, Instant};

use log::debug;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::health::{Reply, Request};
use crate::logger::Throttle;

/// Limits that keep one hostile client from costing PID 1 anything.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// From the first byte of a request to its complete head.
    pub head_timeout: Duration,
    /// Between keep-alive requests.
    pub idle_timeout: Duration,
    /// Request line plus headers.
    pub max_head: usize,
    pub max_headers: usize,
    /// Largest request body read and discarded (control POSTs may carry one).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: connection_cap(),
            head_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            max_head: 8 * 1024,
            max_headers: 64,
            max_body: 1024,
        }
    }
}

/// At most 1,024 connections, fewer when the descriptor limit is low
/// (drainit does not raise it: its child would inherit the change).
fn connection_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `limit`.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    };
    usize::try_from(soft.saturating_sub(64) / 2)
        .unwrap_or(1024)
        .clamp(16, 1024)
}

const LISTENER: u64 = u64::MAX;
/// How often deadlines are swept while connections are open.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

struct Conn {
    stream: TcpStream,
    peer: IpAddr,
    input: Vec<u8>,
    /// Leading bytes of `input` already searched for the end of the head.
    scanned: usize,
    output: Vec<u8>,
    written: usize,
    deadline: Instant,
    last_active: Instant,
    close_after_write: bool,
    wants_write: bool,
}

/// Serves `handler` on `listener` on the calling thread; returns only
/// with the error that stopped it.
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    handler: &dyn Fn(&Request) -> Reply,
) -> io::Error {
    match prepare(&listener) {
        Ok(epoll) => run(listener, epoll, limits, handler),
        Err(e) => e,
    }
}

fn prepare(listener: &TcpListener) -> io::Result<Epoll> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(
        listener.as_fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, LISTENER),
    )?;
    Ok(epoll)
}

fn run(
    listener: TcpListener,
    epoll: Epoll,
    limits: Limits,
    handler: &dyn Fn(&Request) -> Reply,
) -> io::Error {
    let mut server = Server {
        epoll,
        listener,
        limits,
        conns: HashMap::new(),
        next_token: 0,
        next_sweep: Instant::now(),
    };
    let mut events = vec![EpollEvent::empty(); 256];
    loop {
        let timeout = if server.conns.is_empty() {
            EpollTimeout::NONE
        } else {
            EpollTimeout::try_from(SWEEP_EVERY).unwrap_or(EpollTimeout::NONE)
        };
        let n = match server.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return e.into(),
        };
        // Connections first, then new ones: a probe accepted in the last
        // round is answered before a batch of newcomers can evict it.
        let mut listener_ready = false;
        for event in &events[..n] {
            match event.data() {
                LISTENER => listener_ready = true,
                token => server.service(token, event.events(), handler),
            }
        }
        if listener_ready {
            server.accept_some();
        }
        server.sweep();
    }
}

struct Server {
    epoll: Epoll,
    listener: TcpListener,
    limits: Limits,
    conns: HashMap<u64, Conn>,
    next_token: u64,
    next_sweep: Instant,
}

impl Server {
    /// Accepts at most a quarter of the cap per round: accepting a whole
    /// flood at once evicted the connections accepted earlier in the same
    /// round, probes included, before their requests were even read. The
    /// listener is level-triggered, so the rest waits for the next round.
    fn accept_some(&mut self) {
        for _ in 0..(self.limits.max_connections / 4).max(1) {
            match self.listener.accept() {
                Ok((stream, peer)) => self.adopt(stream, peer),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or a transient error:
                    // make room and let the next readiness event retry.
                    static ACCEPT_FAILED: Throttle = Throttle::new();
                    ACCEPT_FAILED.warn(|| format!("health server cannot accept: {e}"));
                    if !self.evict_oldest() {
                        thread::sleep(Duration::from_millis(50));
                    }
                    return;
                }
            }
        }
    }

    fn adopt(&mut self, stream: TcpStream, peer: SocketAddr) {
        if self.conns.len() >= self.limits.max_connections {
            self.evict_oldest();
        }
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1) % LISTENER;
        if let Err(e) = self
            .epoll
            .add(stream.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))
        {
            debug!("cannot watch a health connection: {e}");
            return;
        }
        let now = Instant::now();
        self.conns.insert(
            token,
            Conn {
                stream,
                peer: peer.ip(),
                input: Vec::new(),
                scanned: 0,
                output: Vec::new(),
                written: 0,
                deadline: now + self.limits.head_timeout,
                last_active: now,
                close_after_write: false,
                wants_write: false,
            },
        );
    }

    /// Drops the connection that has been quiet longest. Returns false when
    /// there was none.
    fn evict_oldest(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .min_by_key(|(_, c)| c.last_active)
            .map(|(t, _)| *t);
        match oldest {
            Some(token) => {
                debug!(
                    "health server at {} connections: dropping the least active",
                    self.conns.len()
                );
                self.close(token);
                true
            }
            None => false,
        }
    }

    fn close(&mut self, token: u64) {
        if let Some(conn) = self.conns.remove(&token) {
            let _ = self.epoll.delete(conn.stream.as_fd());
        }
    }

    fn service(&mut self, token: u64, flags: EpollFlags, handler: &dyn Fn(&Request) -> Reply) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let was_writing = conn.wants_write;
        if !conn.on_event(flags, &self.limits, handler) {
            self.close(token);
            return;
        }
        // The interest set changes only when a write stalls or completes;
        // most requests are answered in one write and need no epoll_ctl.
        if conn.wants_write != was_writing {
            let interest = if conn.wants_write {
                EpollFlags::EPOLLOUT
            } else {
                EpollFlags::EPOLLIN
            };
            let _ = self
                .epoll
                .modify(conn.stream.as_fd(), &mut EpollEvent::new(interest, token));
        }
    }

    /// Closes connections past their deadline.
    fn sweep(&mut self) {
        let now = Instant::now();
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        let expired: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| now >= c.deadline)
            .map(|(t, _)| *t)
            .collect();
        for token in expired {
            self.close(token);
        }
    }
}

/// What reading left the connection as.
#[derive(PartialEq, Eq)]
enum Input {
    Open,
    /// The peer shut down its side; buffered requests are still answered.
    Ended,
    Broken,
}

impl Conn {
    /// Reads, answers and writes what it can. Returns false to close.
    fn on_event(
        &mut self,
        flags: EpollFlags,
        limits: &Limits,
        handler: &dyn Fn(&Request) -> Reply,
    ) -> bool {
        if flags.intersects(EpollFlags::EPOLLERR) || !self.flush() {
            return false;
        }
        if self.wants_write {
            return true;
        }
        if self.close_after_write {
            return false;
        }
        let input = self.fill(limits);
        if input == Input::Broken {
            return false;
        }
        // Pipelined requests are answered one at a time, each written out
        // before the next is parsed, so output never piles up.
        while self.answer_one(limits, handler) {
            if !self.flush() {
                return false;
            }
            if self.wants_write {
                return true;
            }
            if self.close_after_write {
                return false;
            }
        }
        input == Input::Open
    }

    /// Reads what is available, up to the head and body limits.
    fn fill(&mut self, limits: &Limits) -> Input {
        let cap = limits.max_head + limits.max_body;
        let mut buf = [0u8; 4096];
        while self.input.len() < cap {
            match self.stream.read(&mut buf) {
                Ok(0) => return Input::Ended,
                Ok(n) => {
                    let now = Instant::now();
                    if self.input.is_empty() {
                        // A new request starts its own clock; trickling
                        // bytes after that do not extend it.
                        self.deadline = now + limits.head_timeout;
                    }
                    self.last_active = now;
                    let take = n.min(cap - self.input.len());
                    // Never more than `cap`: doubling reserved 16 KiB for a
                    // 9 KiB request, and 1,024 such connections took PID 1
                    // past 16 MiB.
                    let need = self.input.len() + take;
                    if need > self.input.capacity() {
                        let grow = need.max(self.input.capacity() * 2).min(cap);
                        self.input.reserve_exact(grow - self.input.len());
                    }
                    self.input.extend_from_slice(&buf[..take]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Input::Open,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Input::Broken,
            }
        }
        Input::Open
    }

    /// Queues the answer to the first complete request in the buffer.
    /// Returns false when there is none yet.
    fn answer_one(&mut self, limits: &Limits, handler: &dyn Fn(&Request) -> Reply) -> bool {
        if !self.head_may_be_complete(limits) {
            return false;
        }
        match parse(&self.input, limits) {
            Parsed::Incomplete => false,
            Parsed::Bad(code, why) => {
                debug!("bad request from {}: {why}", self.peer);
                self.queue_error(code, why);
                true
            }
            Parsed::Done(head) => {
                let request = Request {
                    method: &head.method,
                    url: &head.target,
                    peer: Some(self.peer),
                    authorization: head.authorization.as_deref(),
                };
                let reply = handler(&request);
                self.close_after_write = !head.keep_alive;
                self.output = encode(&reply, head.method == "HEAD", !head.keep_alive);
                self.input.drain(..head.consumed);
                self.scanned = 0;
                if self.input.is_empty() {
                    // An idle keep-alive connection holds no buffer.
                    self.input = Vec::new();
                }
                self.deadline = Instant::now() + limits.idle_timeout;
                true
            }
        }
    }

    /// Whether `parse` could find more than Incomplete. A head that is
    /// still arriving is searched only in its new bytes: parsing the whole
    /// buffer again on every read made a head trickled byte by byte cost
    /// O(n²), up to 8 KiB of scanning per byte received.
    fn head_may_be_complete(&mut self, limits: &Limits) -> bool {
        if self.input.len() >= limits.max_head || self.input.starts_with(b"PRI * HTTP/2") {
            return true;
        }
        let from = self.scanned.saturating_sub(3);
        if self.input[from..].windows(4).any(|w| w == b"\r\n\r\n") {
            return true;
        }
        self.scanned = self.input.len();
        false
    }

    fn queue_error(&mut self, code: u16, why: &str) {
        let reply = Reply {
            code,
            content_type: "application/json",
            body: format!("{{\"error\":\"{why}\"}}\n"),
            allow: None,
        };
        self.output = encode(&reply, false, true);
        self.close_after_write = true;
        self.input = Vec::new();
        self.scanned = 0;
    }

    /// Writes pending output. Returns false on a broken connection.
    fn flush(&mut self) -> bool {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => return false,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.wants_write = true;
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        self.output = Vec::new();
        self.written = 0;
        self.wants_write = false;
        true
    }
}

/// A request head, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub authorization: Option<String>,
    pub keep_alive: bool,
    /// Bytes of head and body to drop from the buffer.
    pub consumed: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Incomplete,
    Bad(u16, &'static str),
    Done(Head),
}

/// Parses one request from the front of `buf`. Strict on purpose: a
/// health endpoint has no reason to guess what an odd request meant, and
/// guessing is what request smuggling exploits.
pub fn parse(buf: &[u8], limits: &Limits) -> Parsed {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() >= limits.max_head {
            return Parsed::Bad(431, "request head too large");
        }
        if buf.starts_with(b"PRI * HTTP/2") {
            return Parsed::Bad(505, "HTTP/2 is not supported");
        }
        return Parsed::Incomplete;
    };
    if end + 4 > limits.max_head {
        return Parsed::Bad(431, "request head too large");
    }
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Bad(400, "request head is not UTF-8");
    };
    let mut lines = head.split("\r\n");
    let (method, target, version) = match parse_request_line(lines.next().unwrap_or("")) {
        Ok(parts) => parts,
        Err(bad) => return bad,
    };
    let mut fields = Fields::default();
    for (i, line) in lines.enumerate() {
        if i >= limits.max_headers {
            return Parsed::Bad(431, "too many headers");
        }
        if let Err(bad) = fields.add(line) {
            return bad;
        }
    }
    let body = fields.content_length.unwrap_or(0);
    if body > limits.max_body {
        return Parsed::Bad(413, "request body too large");
    }
    if buf.len() < end + 4 + body {
        return Parsed::Incomplete;
    }
    let keep_alive = match (version, fields.connection.as_deref()) {
        (_, Some(c)) if c.eq_ignore_ascii_case("close") => false,
        ("HTTP/1.0", Some(c)) => c.eq_ignore_ascii_case("keep-alive"),
        ("HTTP/1.0", None) => false,
        _ => true,
    };
    Parsed::Done(Head {
        method: method.to_string(),
        target: target.to_string(),
        authorization: fields.authorization,
        keep_alive,
        consumed: end + 4 + body,
    })
}

fn parse_request_line(line: &str) -> Result<(&str, &str, &str), Parsed> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Parsed::Bad(400, "malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(Parsed::Bad(400, "malformed method"));
    }
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Parsed::Bad(400, "malformed target"));
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => Ok((method, target, version)),
        v if v.starts_with("HTTP/") => Err(Parsed::Bad(505, "HTTP version not supported")),
        _ => Err(Parsed::Bad(400, "malformed version")),
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[derive(Default)]
struct Fields {
    content_length: Option<usize>,
    connection: Option<String>,
    authorization: Option<String>,
}

impl Fields {
    fn add(&mut self, line: &str) -> Result<(), Parsed> {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Parsed::Bad(400, "malformed header"));
        };
        // No space before the colon and no folded lines: both are classic
        // ways to make two parsers disagree about a request.
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(Parsed::Bad(400, "malformed header name"));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(Parsed::Bad(400, "control character in header"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| Parsed::Bad(400, "bad Content-Length"))?;
            if !value.bytes().all(|b| b.is_ascii_digit()) || self.content_length.is_some() {
                return Err(Parsed::Bad(400, "bad Content-Length"));
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Parsed::Bad(501, "Transfer-Encoding is not supported"));
        } else if name.eq_ignore_ascii_case("connection") {
            self.connection = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("authorization") {
            if self.authorization.is_some() {
                return Err(Parsed::Bad(400, "repeated Authorization"));
            }
            self.authorization = Some(value.to_string());
        }
        Ok(())
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// The response bytes; HEAD gets the headers of the GET without its body.
pub fn encode(reply: &Reply, head_only: bool, close: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
        reply.code,
        reason(reply.code),
        reply.content_type,
        reply.body.len()
    );
    if let Some(allow) = reply.allow {
        out.push_str(&format!("Allow: {allow}\r\n"));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(reply.body.as_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &str) -> Parsed {
        parse(raw.as_bytes(), &Limits::default())
    }

    fn code(raw: &str) -> u16 {
        match p(raw) {
            Parsed::Bad(code, _) => code,
            other => panic!("{raw:?} gave {other:?}"),
        }
    }

    #[test]
    fn good_requests() {
        let Parsed::Done(h) = p("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\nGET /") else {
            panic!()
        };
        assert_eq!(
            (
                h.method.as_str(),
                h.target.as_str(),
                h.keep_alive,
                h.consumed
            ),
            ("GET", "/readyz", true, 33)
        );
        let Parsed::Done(h) = p("GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!h.keep_alive);
        let Parsed::Done(h) = p(
            "POST /sethealth/ko HTTP/1.1\r\nContent-Length: 2\r\nAuthorization: Bearer t\r\n\r\nhi",
        ) else {
            panic!()
        };
        assert_eq!(
            (h.consumed, h.authorization.as_deref()),
            (77, Some("Bearer t"))
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nh"),
            Parsed::Incomplete
        );
        assert_eq!(p("GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Incomplete);
    }

    #[test]
    fn hostile_requests() {
        assert_eq!(code("GET /\r\n\r\n"), 400, "HTTP/0.9");
        assert_eq!(code("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 400);
        assert_eq!(code("PRI * HTTP/2.0\r\n"), 505);
        assert_eq!(code("GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(code("GET  / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(code("GET http://x/ HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            code("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            400
        );
        assert_eq!(code("GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n"), 400);
        assert_eq!(code("GET / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n"), 413);
        assert_eq!(
            code("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
        assert_eq!(code("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), 400);
        assert_eq!(code("GET / HTTP/1.1\r\n folded\r\n\r\n"), 400);
        assert_eq!(code("GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n"), 400);
        assert_eq!(
            parse(b"GET /\xff HTTP/1.1\r\n\r\n", &Limits::default()),
            Parsed::Bad(400, "request head is not UTF-8")
        );
        assert_eq!(
            code(&format!(
                "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
                "a".repeat(9000)
            )),
            431
        );
        assert_eq!(
            code(&format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(100))),
            431
        );
        assert_eq!(code(&"a".repeat(9000)), 431);
    }

    #[test]
    fn head_has_no_body() {
        let reply = Reply {
            code: 200,
            content_type: "application/json",
            body: "{}".into(),
            allow: None,
        };
        let text = String::from_utf8(encode(&reply, true, false)).unwrap();
        assert!(
            text.ends_with("Content-Length: 2\r\nCache-Control: no-store\r\n\r\n"),
            "{text}"
        );
    }
}
