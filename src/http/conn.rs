//! One server-side HTTP/1.1 connection as a state machine without I/O:
//! bytes in, answers out, and when to close.
//!
//! Where a request ends, what closes a connection and when it times out
//! are decided here and nowhere else, from the bytes and the time the
//! caller passes in. So a property test can feed it any chunking of any
//! stream, and the epoll loop around it (`server`) does nothing but I/O.
//! Request heads are parsed by httparse (hyper's parser), under our limits
//! and stricter rules: a health endpoint has no reason to guess what an odd
//! request meant, and guessing is what request smuggling exploits.

use std::io::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::json;

/// Limits that keep one hostile client from costing PID 1 anything.
#[derive(Clone, Debug)]
pub struct Limits {
    /// From the first byte of a request to the end of its body.
    pub head_timeout: Duration,
    /// Between keep-alive requests.
    pub idle_timeout: Duration,
    /// Request line plus headers.
    pub max_head: usize,
    /// Header fields per request; at most [`MAX_HEADERS`].
    pub max_headers: usize,
    /// Largest request body read and discarded (control POSTs may carry one).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            head_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            max_head: 8 * 1024,
            max_headers: MAX_HEADERS,
            max_body: 1024,
        }
    }
}

impl Limits {
    /// The most a connection buffers: one whole request of the largest size.
    fn buffer(&self) -> usize {
        self.max_head + self.max_body
    }
}

/// Header fields a request may have; room for them is on the stack.
pub const MAX_HEADERS: usize = 64;

/// A header field: name and value.
pub type Field<'a> = (&'a str, &'a str);

/// Where [`parse`] puts a request's header fields.
pub type HeaderSlots<'b> = [Field<'b>; MAX_HEADERS];

/// Empty [`HeaderSlots`].
pub const NO_HEADERS: HeaderSlots<'static> = [("", ""); MAX_HEADERS];

/// Who sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client at this address.
    Tcp(IpAddr),
    /// A process of drainit's own user (or root) on its control socket.
    ControlSocket,
}

/// A request as far as routing cares, borrowed from the connection's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target: path and query.
    pub url: &'a str,
    /// `None` only where no connection is known (parsing alone).
    pub peer: Option<Peer>,
    /// Header fields as sent: names in their case, values trimmed.
    pub headers: &'a [Field<'a>],
}

impl<'a> Request<'a> {
    /// The first header field called `name`, ignoring case.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// An answer: status, content type and body.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub content_type: &'static str,
    pub body: String,
    pub allow: Option<&'static str>,
}

impl Reply {
    pub fn json(code: u16, body: String) -> Reply {
        Reply {
            code,
            content_type: "application/json",
            body,
            allow: None,
        }
    }

    /// `{"error":"why"}`.
    pub fn error(code: u16, why: &str) -> Reply {
        Reply::json(code, format!("{{\"error\":\"{}\"}}\n", json::escape(why)))
    }
}

/// What the front of a connection's buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a whole request yet. Once the head is complete, the length of
    /// head and body: nothing changes until that many bytes are there.
    Partial(Option<usize>),
    /// Refused with this status and reason; the connection closes after it.
    Bad(u16, &'static str),
    Done(Head<'a>),
}

/// A whole request at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
    /// Without its peer, which the buffer does not know.
    pub request: Request<'a>,
    pub keep_alive: bool,
    /// Bytes of head and body.
    pub len: usize,
}

/// Parses the request at the front of `buf`, its header fields into `slots`.
pub fn parse<'b: 'h, 'h>(
    buf: &'b [u8],
    limits: &Limits,
    slots: &'h mut HeaderSlots<'b>,
) -> Parsed<'h> {
    // httparse skips empty lines before a request, as RFC 9112 allows;
    // a strict server need not, and a stray line end is how framing
    // disagreements start.
    if buf.first().is_some_and(|b| matches!(b, b'\r' | b'\n')) {
        return Parsed::Bad(400, "empty line before the request line");
    }
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let count = limits.max_headers.min(MAX_HEADERS);
    let mut req = httparse::Request::new(&mut raw[..count]);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return partial(buf, limits),
        Err(e) => return refused(e, &req, buf),
    };
    // httparse takes a bare LF for a line end; so do some proxies and not
    // others, which is the disagreement smuggling needs.
    if buf.get(..head_len).is_some_and(has_bare_lf) {
        return Parsed::Bad(400, "bare LF in the request head");
    }
    if head_len > limits.max_head {
        return Parsed::Bad(431, "request head too large");
    }
    let (Some(method), Some(url)) = (req.method, req.path) else {
        return Parsed::Bad(400, "malformed request line");
    };
    if !url.starts_with('/') || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Parsed::Bad(400, "malformed target");
    }
    let (fields, filled) = match Fields::read(req.headers, slots) {
        Ok(read) => read,
        Err(bad) => return bad,
    };
    let body = fields.content_length.unwrap_or(0);
    if body > limits.max_body {
        return Parsed::Bad(413, "request body too large");
    }
    let len = head_len + body;
    if buf.len() < len {
        return Parsed::Partial(Some(len));
    }
    Parsed::Done(Head {
        request: Request {
            method,
            url,
            peer: None,
            headers: filled,
        },
        keep_alive: !fields.close && (req.version == Some(1) || fields.keep_alive),
        len,
    })
}

/// An incomplete head: refused already if it can never be a valid one.
fn partial(buf: &[u8], limits: &Limits) -> Parsed<'static> {
    if has_bare_lf(buf) {
        return Parsed::Bad(400, "bare LF in the request head");
    }
    if buf.len() >= limits.max_head {
        return Parsed::Bad(431, "request head too large");
    }
    Parsed::Partial(None)
}

fn has_bare_lf(head: &[u8]) -> bool {
    head.first() == Some(&b'\n') || head.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r')
}

fn refused(error: httparse::Error, req: &httparse::Request, buf: &[u8]) -> Parsed<'static> {
    let why = match error {
        httparse::Error::TooManyHeaders => return Parsed::Bad(431, "too many headers"),
        httparse::Error::Version if names_http(req, buf) => {
            return Parsed::Bad(505, "HTTP version not supported")
        }
        httparse::Error::Version => "malformed version",
        httparse::Error::HeaderName => "malformed header name",
        httparse::Error::HeaderValue => "malformed header value",
        httparse::Error::NewLine => "malformed line end",
        _ => "malformed request line",
    };
    Parsed::Bad(400, why)
}

/// Whether the version httparse refused is an HTTP version (HTTP/2.0,
/// HTTP/1.2) rather than something else (FOO/1.1, http/1.1).
fn names_http(req: &httparse::Request, buf: &[u8]) -> bool {
    let at = req.method.map_or(0, str::len) + req.path.map_or(0, str::len) + 2;
    buf.get(at..).is_some_and(|v| v.starts_with(b"HTTP/"))
}

/// What the header fields say about framing and the connection.
#[derive(Default)]
struct Fields {
    content_length: Option<usize>,
    close: bool,
    keep_alive: bool,
    authorization: bool,
}

impl Fields {
    /// Checks each field, copying it into `slots`; returns the fields used.
    fn read<'b, 'h>(
        headers: &[httparse::Header<'b>],
        slots: &'h mut HeaderSlots<'b>,
    ) -> Result<(Fields, &'h [Field<'b>]), Parsed<'static>> {
        let mut fields = Fields::default();
        let mut filled = 0;
        for (slot, header) in slots.iter_mut().zip(headers) {
            let Ok(value) = std::str::from_utf8(header.value) else {
                return Err(Parsed::Bad(400, "request head is not UTF-8"));
            };
            let value = value.trim_matches([' ', '\t']);
            fields.add(header.name, value)?;
            *slot = (header.name, value);
            filled += 1;
        }
        Ok((fields, &slots[..filled]))
    }

    fn add(&mut self, name: &str, value: &str) -> Result<(), Parsed<'static>> {
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()));
            if n.is_none() || self.content_length.is_some() {
                return Err(Parsed::Bad(400, "bad Content-Length"));
            }
            self.content_length = n;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Parsed::Bad(501, "Transfer-Encoding is not supported"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(|t| t.trim_matches([' ', '\t'])) {
                self.close |= token.eq_ignore_ascii_case("close");
                self.keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            if self.authorization {
                return Err(Parsed::Bad(400, "repeated Authorization"));
            }
            self.authorization = true;
        }
        Ok(())
    }
}

/// Answers are queued until this much output waits; the rest of a
/// pipeline waits in the input for the output to be sent.
const OUTPUT_BATCH: usize = 16 * 1024;

/// One connection: its buffers, its deadline, and what it has been told.
#[derive(Debug)]
pub struct Conn {
    peer: Option<Peer>,
    /// Bytes received and not yet answered; at most `Limits::buffer()`.
    input: Vec<u8>,
    /// Leading bytes of `input` already parsed without success: a head is
    /// parsed again only once a line ends after them, so one trickled in
    /// byte by byte costs one parse per line, not one per byte.
    scanned: usize,
    /// Bytes the request at the front of `input` needs, once its head is known.
    need: usize,
    /// Answers for the caller to send, from `sent` on.
    output: Vec<u8>,
    sent: usize,
    deadline: Instant,
    last_active: Instant,
    /// The last answer closes the connection: nothing more is read.
    closing: bool,
    /// The peer shut down its side.
    ended: bool,
    /// Complete requests wait in `input` for the output to be sent.
    backlog: bool,
}

impl Conn {
    /// A connection just accepted: it has the head timeout to send a request.
    pub fn new(peer: Option<Peer>, now: Instant, limits: &Limits) -> Conn {
        Conn {
            peer,
            input: Vec::new(),
            scanned: 0,
            need: 0,
            output: Vec::new(),
            sent: 0,
            deadline: now + limits.head_timeout,
            last_active: now,
            closing: false,
            ended: false,
            backlog: false,
        }
    }

    /// When the connection is to be closed unless something happens first.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// When bytes last came in.
    pub fn last_active(&self) -> Instant {
        self.last_active
    }

    /// How many bytes to read now: none while answers wait to be sent (the
    /// peer's unread bytes then stay in the kernel and push back on it),
    /// none once the connection is closing.
    pub fn room(&self, limits: &Limits) -> usize {
        if self.closing || self.ended || !self.output().is_empty() {
            return 0;
        }
        limits.buffer().saturating_sub(self.input.len())
    }

    /// Takes as much of `bytes` as [`Conn::room`] allows; returns how many.
    pub fn receive(&mut self, bytes: &[u8], now: Instant, limits: &Limits) -> usize {
        let take = bytes.len().min(self.room(limits));
        if take == 0 {
            return 0;
        }
        if self.input.is_empty() {
            // A new request starts its own clock; bytes trickling in after
            // that do not extend it.
            self.deadline = now + limits.head_timeout;
        }
        self.last_active = now;
        let need = self.input.len() + take;
        if need > self.input.capacity() {
            // Never past the buffer limit: doubling reserved 16 KiB for a
            // 9 KiB request, and 1,024 such connections took PID 1 past
            // 16 MiB.
            let grow = need.max(self.input.capacity() * 2).min(limits.buffer());
            self.input.reserve_exact(grow - self.input.len());
        }
        self.input.extend_from_slice(&bytes[..take]);
        take
    }

    /// The peer shut down its side: what is buffered is still answered.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// Answers the complete requests in the input, in order, through
    /// `handler`, until the output holds a batch. Returns why a request
    /// was refused, if one was, for the caller's log.
    pub fn answer(
        &mut self,
        now: Instant,
        limits: &Limits,
        handler: &dyn Fn(&Request) -> Reply,
    ) -> Option<&'static str> {
        let mut done = 0;
        let mut refused = None;
        self.backlog = false;
        while !self.closing {
            if self.output().len() >= OUTPUT_BATCH {
                self.backlog = true;
                break;
            }
            let rest = self.input.get(done..).unwrap_or_default();
            if !self.worth_parsing(rest.len(), limits) {
                break;
            }
            let mut slots = NO_HEADERS;
            match parse(rest, limits, &mut slots) {
                Parsed::Partial(need) => {
                    self.need = need.unwrap_or(0);
                    self.scanned = self.input.len();
                    break;
                }
                Parsed::Bad(code, why) => {
                    let reply = Reply::error(code, why);
                    encode(&mut self.output, &reply, false, true);
                    self.closing = true;
                    refused = Some(why);
                }
                Parsed::Done(head) => {
                    let request = Request {
                        peer: self.peer,
                        ..head.request
                    };
                    let reply = handler(&request);
                    let head_only = request.method == "HEAD";
                    encode(&mut self.output, &reply, head_only, !head.keep_alive);
                    self.closing = !head.keep_alive;
                    done += head.len;
                    self.need = 0;
                    self.scanned = done;
                    self.deadline = now + limits.idle_timeout;
                }
            }
        }
        self.consume(done, now, limits);
        refused
    }

    /// Whether parsing `len` unanswered bytes could tell more than last time.
    fn worth_parsing(&self, len: usize, limits: &Limits) -> bool {
        if len == 0 {
            return false;
        }
        if self.need > 0 {
            return len >= self.need;
        }
        let unscanned = self.input.get(self.scanned..).unwrap_or_default();
        len >= limits.max_head || unscanned.contains(&b'\n')
    }

    /// Drops the `done` bytes of answered requests from the input.
    fn consume(&mut self, done: usize, now: Instant, limits: &Limits) {
        if self.closing {
            self.input = Vec::new();
            self.scanned = 0;
            return;
        }
        if done == 0 {
            return;
        }
        self.input.drain(..done.min(self.input.len()));
        self.scanned = self.scanned.saturating_sub(done);
        if self.input.is_empty() {
            // An idle keep-alive connection holds no buffer.
            self.input = Vec::new();
        } else {
            // The next request has begun: its own head deadline.
            self.deadline = now + limits.head_timeout;
        }
    }

    /// Answers waiting to be sent.
    pub fn output(&self) -> &[u8] {
        self.output.get(self.sent..).unwrap_or_default()
    }

    /// `n` bytes of [`Conn::output`] were sent.
    pub fn sent(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.output.len());
        if self.sent == self.output.len() {
            self.output = Vec::new();
            self.sent = 0;
        }
    }

    /// Whether the connection has nothing more to do: it is closing or the
    /// peer has ended, and every answer has been sent.
    pub fn finished(&self) -> bool {
        (self.closing || self.ended) && !self.backlog && self.output().is_empty()
    }
}

/// Every status drainit sends, with its reason phrase (RFC 9110).
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
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        // Not sent today; the class's name keeps a status line whole.
        _ => match code / 100 {
            1 => "Informational",
            2 => "Successful",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// Appends the response; HEAD gets the headers of the GET without its body.
fn encode(out: &mut Vec<u8>, reply: &Reply, head_only: bool, close: bool) {
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
        reply.code,
        reason(reply.code),
        reply.content_type,
        reply.body.len()
    );
    if let Some(allow) = reply.allow {
        let _ = write!(out, "Allow: {allow}\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(reply.body.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Method, target, keep-alive and length of a whole request.
    type Whole = (String, String, bool, usize);

    /// What parsing `raw` gives, with the borrowed parts copied out.
    fn p(raw: &str) -> Result<Option<Whole>, (u16, &'static str)> {
        let mut slots = NO_HEADERS;
        match parse(raw.as_bytes(), &Limits::default(), &mut slots) {
            Parsed::Partial(_) => Ok(None),
            Parsed::Bad(code, why) => Err((code, why)),
            Parsed::Done(h) => Ok(Some((
                h.request.method.into(),
                h.request.url.into(),
                h.keep_alive,
                h.len,
            ))),
        }
    }

    fn code(raw: &str) -> u16 {
        match p(raw) {
            Err((code, _)) => code,
            other => panic!("{raw:?} gave {other:?}"),
        }
    }

    #[test]
    fn good_requests() {
        assert_eq!(
            p("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\nGET /"),
            Ok(Some(("GET".into(), "/readyz".into(), true, 33)))
        );
        assert_eq!(
            p("GET / HTTP/1.0\r\n\r\n"),
            Ok(Some(("GET".into(), "/".into(), false, 18)))
        );
        let raw = "POST /sethealth/ko HTTP/1.1\r\nContent-Length: 2\r\nAuthorization:  Bearer t \r\n\r\nhi";
        let mut slots = NO_HEADERS;
        let Parsed::Done(h) = parse(raw.as_bytes(), &Limits::default(), &mut slots) else {
            panic!("{raw:?}")
        };
        assert_eq!(h.len, 79);
        assert_eq!(h.request.header("AUTHORIZATION"), Some("Bearer t"));
        assert_eq!(h.request.headers.len(), 2);
        assert_eq!(
            p("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nh"),
            Ok(None),
            "the body is not all there"
        );
        assert_eq!(p("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    }

    #[test]
    fn connection_is_a_token_list() {
        let keep = |raw: &str| p(raw).unwrap().unwrap().2;
        assert!(!keep(
            "GET / HTTP/1.1\r\nConnection: close, keep-alive\r\n\r\n"
        ));
        assert!(!keep(
            "GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: upgrade,CLOSE\r\n\r\n"
        ));
        assert!(keep(
            "GET / HTTP/1.1\r\nConnection: keep-alive, closed\r\n\r\n"
        ));
        assert!(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
    }

    #[test]
    fn hostile_requests() {
        let huge_field = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
        let many_fields = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(100));
        let huge_target = format!("GET /{}", "a".repeat(9000));
        for (raw, want) in [
            ("GET /\r\n\r\n", 400),
            ("\r\nGET / HTTP/1.1\r\n\r\n", 400),
            ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
            ("PRI * HTTP/2.0\r\n", 505),
            ("GET / HTTP/2.0\r\n\r\n", 505),
            ("GET / HTTP/1.2", 505),
            ("GET / FOO/1.1\r\n\r\n", 400),
            ("GET  / HTTP/1.1\r\n\r\n", 400),
            ("GET http://x/ HTTP/1.1\r\n\r\n", 400),
            ("OPTIONS * HTTP/1.1\r\n\r\n", 400),
            (
                "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                400,
            ),
            ("GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n", 413),
            ("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
            ("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400),
            (
                "GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
                400,
            ),
            (&huge_field, 431),
            (&many_fields, 431),
            (&huge_target, 431),
        ] {
            assert_eq!(code(raw), want, "{raw:?}");
        }
        for (raw, why) in [
            (&b"GET /\xff HTTP/1.1\r\n\r\n"[..], "malformed request line"),
            (
                b"GET / HTTP/1.1\r\nX: \xc3\x28\r\n\r\n",
                "request head is not UTF-8",
            ),
        ] {
            let mut slots = NO_HEADERS;
            let parsed = parse(raw, &Limits::default(), &mut slots);
            assert_eq!(parsed, Parsed::Bad(400, why), "{raw:?}");
        }
    }

    #[test]
    fn a_bare_lf_is_refused_before_the_head_ends() {
        assert_eq!(code("GET / HTTP/1.1\nHost: x\n\n"), 400);
        assert_eq!(code("GET / HTTP/1.1\r\nHost: x\n"), 400, "incomplete");
        assert_eq!(
            code("GET / HTTP/1.1\r\nX: a\nGET /sethealth/ko HTTP/1.1\r\n\r\n"),
            400
        );
        // A body may hold anything.
        assert!(p("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n\n\n")
            .unwrap()
            .is_some());
    }

    fn ok(_: &Request) -> Reply {
        Reply::json(200, "{}".into())
    }

    #[test]
    fn head_has_no_body_and_500_has_its_reason() {
        let mut out = Vec::new();
        encode(&mut out, &Reply::json(200, "{}".into()), true, false);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n")
                && text.ends_with("Content-Length: 2\r\nCache-Control: no-store\r\n\r\n"),
            "{text}"
        );
        for code in [200, 400, 403, 404, 405, 409, 413, 431, 500, 501, 503, 505] {
            assert!(!reason(code).is_empty(), "{code}");
        }
        assert_eq!(reason(500), "Internal Server Error");
    }

    #[test]
    fn deadlines_follow_the_requests() {
        let limits = Limits::default();
        let t0 = Instant::now();
        let mut conn = Conn::new(None, t0, &limits);
        assert_eq!(conn.deadline(), t0 + limits.head_timeout);
        let t1 = t0 + Duration::from_secs(1);
        conn.receive(b"GET / HTTP/1.1\r\n", t1, &limits);
        assert_eq!(conn.deadline(), t1 + limits.head_timeout);
        let t2 = t0 + Duration::from_secs(2);
        conn.receive(b"X: trickled\r\n", t2, &limits);
        assert_eq!(
            conn.deadline(),
            t1 + limits.head_timeout,
            "trickling does not extend it"
        );
        conn.receive(b"\r\n", t2, &limits);
        conn.answer(t2, &limits, &ok);
        assert_eq!(
            conn.deadline(),
            t2 + limits.idle_timeout,
            "idle after the answer"
        );
        assert_eq!(conn.room(&limits), 0, "nothing is read while answers wait");
        conn.sent(conn.output().len());
        assert_eq!(conn.room(&limits), limits.max_head + limits.max_body);
    }
}
