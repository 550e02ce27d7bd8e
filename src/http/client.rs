//! A minimal HTTP/1.1 client over std's TcpStream, for readiness checks and
//! `drainit probe`, and over drainit's Unix control socket for `drainit
//! drain`. Plain HTTP only: the apps it probes sit behind a
//! TLS-terminating proxy, and TLS would triple the binary.
//!
//! An answer counts only when it is whole: its head parsed by httparse and
//! its body complete as the head frames it (Content-Length, chunked, or up
//! to the close). A health check that passes on half an answer reports an
//! app as healthy while it is dying mid-response.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Most redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;
/// Largest response read; health answers are tiny.
const MAX_RESPONSE: usize = 64 * 1024;
/// Header fields read in a response (or in a chunked body's trailer).
const MAX_FIELDS: usize = 64;

/// An `http://host[:port][/path]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let bad = |why: &str| format!("'{text}' is not a usable URL: {why}");
        let rest = match text.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(bad("https is not supported; probe the app over plain HTTP"))
            }
            Some(_) => return Err(bad("expected http://HOST[:PORT]/PATH")),
            None => return Err(bad("expected http://HOST[:PORT]/PATH")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
        if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(bad("the path has spaces or control characters"));
        }
        Ok(Url {
            host,
            port,
            path: path.to_string(),
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Resolves the host; an unresolvable host is an error worth reporting.
    pub fn socket_addrs(&self) -> Result<Vec<SocketAddr>, String> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("cannot resolve {}", self.host));
        }
        Ok(addrs)
    }
}

/// Connects to the first of `addrs` (in resolver order) that accepts before
/// `deadline`. Trying only the first is not enough: with Docker's
/// /etc/hosts, `localhost` resolves to ::1 first, and an app listening on
/// 0.0.0.0 refuses it; curl falls back to 127.0.0.1, so must we.
pub fn connect_any(addrs: &[SocketAddr], deadline: Instant) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to");
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out connecting",
            ));
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

fn split_host_port(authority: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        (host, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok().filter(|p| *p != 0)?,
        None => 80,
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || ".-_:".contains(c);
    if host.is_empty() || !host.chars().all(valid) {
        return None;
    }
    Some((host.to_string(), port))
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

/// What a GET saw.
#[derive(Debug)]
pub struct Response {
    pub code: u16,
    pub body: String,
    /// What answered: the URL, after same-host redirects, or the socket.
    pub from: String,
}

/// GETs `url`, following redirects that stay on the same host, all within
/// `timeout`.
pub fn get(url: &Url, headers: &[(String, String)], timeout: Duration) -> Result<Response, String> {
    let deadline = Instant::now() + timeout;
    let mut current = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let answer = get_once(&current, headers, deadline)?;
        let redirect = matches!(answer.code, 301 | 302 | 303 | 307 | 308);
        let Some(location) = answer.location.filter(|_| redirect) else {
            return Ok(Response {
                code: answer.code,
                body: String::from_utf8_lossy(&answer.body).into_owned(),
                from: current.to_string(),
            });
        };
        current = follow(&current, &location)?;
    }
    Err(format!("more than {MAX_REDIRECTS} redirects from {url}"))
}

/// Resolves a Location header, refusing to leave the host: a redirect to
/// another host means the app is not the one answering.
fn follow(from: &Url, location: &str) -> Result<Url, String> {
    if location.starts_with('/') {
        return Ok(Url {
            path: location.to_string(),
            ..from.clone()
        });
    }
    if location.starts_with("https://") {
        return Err(format!(
            "{from} redirects to {location}; the app forces TLS (send 'X-Forwarded-Proto: https' with --ready-header or --header)"
        ));
    }
    let next = Url::parse(location).map_err(|e| format!("{from} redirects to {location}: {e}"))?;
    if next.host != from.host || next.port != from.port {
        return Err(format!("{from} redirects to another host: {location}"));
    }
    Ok(next)
}

fn remaining(deadline: Instant, what: &str) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(format!("timed out {what}"));
    }
    Ok(left)
}

/// One whole response: status, Location, body.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    code: u16,
    location: Option<String>,
    body: Vec<u8>,
}

fn get_once(url: &Url, headers: &[(String, String)], deadline: Instant) -> Result<Answer, String> {
    let addrs = url.socket_addrs()?;
    remaining(deadline, "connecting")?;
    let mut stream = connect_any(&addrs, deadline)
        .map_err(|e| format!("cannot connect to {}: {e}", url.authority()))?;
    let request = request(&url.path, &url.authority(), headers);
    send(&mut stream, &request, deadline)
        .map_err(|e| format!("cannot send to {}: {e}", url.authority()))?;
    read_answer(&mut stream, deadline).map_err(|e| format!("{url}: {e}"))
}

/// GETs `path` from the drainit listening on the Unix socket `socket`.
pub fn get_local(
    socket: &Path,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<Response, String> {
    let deadline = Instant::now() + timeout;
    let from = socket.display().to_string();
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("cannot connect to {from}: {e}"))?;
    let request = request(path, "localhost", headers);
    send(&mut stream, &request, deadline).map_err(|e| format!("cannot send to {from}: {e}"))?;
    let answer = read_answer(&mut stream, deadline).map_err(|e| format!("{from}: {e}"))?;
    Ok(Response {
        code: answer.code,
        body: String::from_utf8_lossy(&answer.body).into_owned(),
        from,
    })
}

/// A GET's head. The User-Agent names drainit's own probes, which a
/// drain waiting for the load balancers' probes does not count.
fn request(path: &str, host: &str, headers: &[(String, String)]) -> String {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

/// drainit's own User-Agent.
pub const USER_AGENT: &str = concat!("drainit-probe/", env!("CARGO_PKG_VERSION"));

/// A connected socket the client can put deadlines on.
trait Timed: Read + Write {
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> std::io::Result<()>;
}

impl Timed for TcpStream {
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(read)?;
        self.set_write_timeout(write)
    }
}

impl Timed for UnixStream {
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(read)?;
        self.set_write_timeout(write)
    }
}

fn send(stream: &mut impl Timed, request: &str, deadline: Instant) -> Result<(), String> {
    let left = remaining(deadline, "sending")?;
    stream
        .set_timeouts(None, Some(left))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| e.to_string())
}

/// Reads until the answer is whole (a server that keeps the connection
/// open after it does not cost the timeout), or fails.
fn read_answer(stream: &mut impl Timed, deadline: Instant) -> Result<Answer, String> {
    let mut reader = Reader::default();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(answer) = reader.answer()? {
            return Ok(answer);
        }
        stream
            .set_timeouts(Some(remaining(deadline, "waiting for the answer")?), None)
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => return reader.closed(),
            Ok(n) => reader.push(&buf[..n])?,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err("timed out waiting for the answer".into())
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// How the body of a response ends.
#[derive(Debug)]
enum Framing {
    Length(usize),
    /// Chunks decoded so far, and where the next one starts in the body.
    Chunked {
        body: Vec<u8>,
        at: usize,
    },
    /// At the close: no length and not chunked.
    Close,
}

/// A response's head: status, Location, its length, how its body ends.
#[derive(Debug)]
struct Head {
    code: u16,
    location: Option<String>,
    len: usize,
    framing: Framing,
}

/// One response, read as its bytes arrive.
#[derive(Default)]
struct Reader {
    raw: Vec<u8>,
    head: Option<Head>,
}

impl Reader {
    fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.raw.len() + bytes.len() > MAX_RESPONSE {
            return Err(format!("answer larger than {} KiB", MAX_RESPONSE / 1024));
        }
        self.raw.extend_from_slice(bytes);
        Ok(())
    }

    /// The answer once it is whole; an error as soon as it cannot be one.
    fn answer(&mut self) -> Result<Option<Answer>, String> {
        while self.head.is_none() {
            let Some(head) = parse_head(&self.raw)? else {
                return Ok(None);
            };
            if (100..200).contains(&head.code) {
                // An interim answer (100 Continue, 103 Early Hints): the
                // real one follows.
                self.raw.drain(..head.len);
            } else {
                self.head = Some(head);
            }
        }
        let Some(head) = self.head.as_mut() else {
            return Ok(None);
        };
        let body = self.raw.get(head.len..).unwrap_or_default();
        let whole = match &mut head.framing {
            Framing::Length(n) => body.get(..*n).map(<[u8]>::to_vec),
            Framing::Chunked { body: decoded, at } => {
                dechunk(body, at, decoded)?.then(|| std::mem::take(decoded))
            }
            Framing::Close => None,
        };
        Ok(whole.map(|body| Answer {
            code: head.code,
            location: head.location.clone(),
            body,
        }))
    }

    /// The server closed the connection: whole only if the body ends there.
    fn closed(self) -> Result<Answer, String> {
        match self.head {
            Some(Head {
                code,
                location,
                len,
                framing: Framing::Close,
            }) => Ok(Answer {
                code,
                location,
                body: self.raw.get(len..).unwrap_or_default().to_vec(),
            }),
            Some(Head {
                len,
                framing: Framing::Length(n),
                ..
            }) => Err(format!(
                "answer cut short: {} of {n} body bytes",
                self.raw.len() - len
            )),
            Some(_) => Err("chunked answer cut short".into()),
            None if self.raw.is_empty() => Err("closed the connection without answering".into()),
            None => Err("answer cut short in its head".into()),
        }
    }
}

/// The response head at the front of `raw`, once it is all there.
fn parse_head(raw: &[u8]) -> Result<Option<Head>, String> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(raw) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("sent no valid HTTP response ({e})")),
    };
    let code = response.code.unwrap_or_default();
    let value = |name: &str| {
        response
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value))
            .collect::<Vec<_>>()
    };
    Ok(Some(Head {
        code,
        location: value("location").first().map(|l| l.to_string()),
        len,
        framing: framing(code, &value("transfer-encoding"), &value("content-length"))?,
    }))
}

/// How a response's body ends, from its status and framing fields.
fn framing<S: AsRef<str>>(code: u16, codings: &[S], lengths: &[S]) -> Result<Framing, String> {
    if code == 204 || code == 304 {
        return Ok(Framing::Length(0));
    }
    // With Transfer-Encoding, Content-Length is ignored (RFC 9112 6.3);
    // chunked must be the last coding, or the body runs to the close.
    if let Some(last) = codings.last() {
        let chunked = last
            .as_ref()
            .rsplit(',')
            .next()
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        return Ok(if chunked {
            Framing::Chunked {
                body: Vec::new(),
                at: 0,
            }
        } else {
            Framing::Close
        });
    }
    let Some(first) = lengths.first() else {
        return Ok(Framing::Close);
    };
    let first = first.as_ref().trim();
    let n = first
        .parse::<usize>()
        .ok()
        .filter(|_| first.bytes().all(|b| b.is_ascii_digit()));
    match n {
        Some(n) if lengths.iter().all(|l| l.as_ref().trim() == first) => Ok(Framing::Length(n)),
        _ => Err("sent a bad Content-Length".into()),
    }
}

/// Decodes the chunks that are whole in `body` from `at` on into
/// `decoded`; true once the last chunk and its trailer section are in.
fn dechunk(body: &[u8], at: &mut usize, decoded: &mut Vec<u8>) -> Result<bool, String> {
    let bad = || "sent a malformed chunked body".to_string();
    loop {
        let rest = body.get(*at..).unwrap_or_default();
        let (line, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(_) => return Err(bad()),
        };
        let rest = rest.get(line..).unwrap_or_default();
        if size == 0 {
            let mut trailer = [httparse::EMPTY_HEADER; MAX_FIELDS];
            return match httparse::parse_headers(rest, &mut trailer) {
                Ok(httparse::Status::Complete(_)) => Ok(true),
                Ok(httparse::Status::Partial) => Ok(false),
                Err(_) => Err(bad()),
            };
        }
        // A chunk larger than the whole answer may be can never arrive.
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_RESPONSE)
            .ok_or_else(bad)?;
        let (Some(chunk), Some(end)) = (rest.get(..size), rest.get(size..size + 2)) else {
            return Ok(false);
        };
        if end != b"\r\n" {
            return Err(bad());
        }
        decoded.extend_from_slice(chunk);
        *at += line + size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:8080/ready?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/ready?x=1")
        );
        assert_eq!(
            Url::parse("http://[::1]:9/").unwrap().authority(),
            "[::1]:9"
        );
        assert_eq!(Url::parse("http://localhost").unwrap().port, 80);
        for bad in [
            "ftp://x/",
            "localhost:80",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "https://h/",
            "http://h/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirects_stay_on_the_host() {
        let from = Url::parse("http://app:80/ready").unwrap();
        assert_eq!(follow(&from, "/other").unwrap().path, "/other");
        assert!(follow(&from, "http://evil:80/")
            .unwrap_err()
            .contains("another host"));
        assert!(follow(&from, "https://app/ready")
            .unwrap_err()
            .contains("X-Forwarded-Proto"));
    }

    /// What a response fed in `piece`-byte pieces reads as, the server
    /// closing after the last one when `close`.
    fn read(raw: &[u8], piece: usize, close: bool) -> Result<Answer, String> {
        let mut reader = Reader::default();
        for bytes in raw.chunks(piece) {
            if let Some(answer) = reader.answer()? {
                return Ok(answer);
            }
            reader.push(bytes)?;
        }
        match reader.answer()? {
            Some(answer) => Ok(answer),
            None if close => reader.closed(),
            None => Err("incomplete".into()),
        }
    }

    fn body(raw: &[u8], close: bool) -> Result<String, String> {
        let mut bodies = (1..=raw.len().max(1))
            .map(|piece| read(raw, piece, close).map(|a| String::from_utf8(a.body).unwrap()));
        let first = bodies.next().unwrap_or_else(|| Err("empty".into()));
        assert!(bodies.all(|b| b == first), "pieces change the answer");
        first
    }

    #[test]
    fn bodies_end_as_the_head_says() {
        let length = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nUP!!trailing";
        assert_eq!(body(length, false).as_deref(), Ok("UP!!"));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4;x=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nX-T: 1\r\n\r\n";
        assert_eq!(body(chunked, false).as_deref(), Ok("{\"a\":1}"));
        let close = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert_eq!(body(close, true).as_deref(), Ok("all of it"));
        let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(body(interim, false).as_deref(), Ok(""));
        let moved = read(
            b"HTTP/1.1 301 Moved\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
            9,
            false,
        );
        assert_eq!(moved.unwrap().location.as_deref(), Some("/x"));
    }

    #[test]
    fn a_truncated_or_malformed_answer_is_an_error() {
        for (raw, why) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nUP"[..],
                "cut short: 2 of 10",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nUP\r\n",
                "chunked answer cut short",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nUP\r\n0\r\n",
                "chunked answer cut short",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nUP\r\n0\r\n\r\n",
                "malformed chunked",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nUPS\r\n0\r\n\r\n",
                "malformed chunked",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nUP",
                "bad Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nUP",
                "bad Content-Length",
            ),
            (b"HTTP/1.1 200 OK\r\nContent", "cut short in its head"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "no valid HTTP response"),
            (b"", "without answering"),
        ] {
            let got = read(raw, 5, true);
            assert!(
                got.as_ref().is_err_and(|e| e.contains(why)),
                "{raw:?}: {got:?}"
            );
        }
        let mut reader = Reader::default();
        assert!(reader.push(&[b'x'; MAX_RESPONSE + 1]).is_err());
    }
}
