//! A minimal HTTP/1.1 client over std's TcpStream, for readiness checks and
//! `drainit probe`. Plain HTTP only: the apps it probes sit behind a
//! TLS-terminating proxy, and TLS would triple the binary.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Most redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;
/// Largest response read; health answers are tiny.
const MAX_RESPONSE: u64 = 64 * 1024;

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

/// What a GET saw.
#[derive(Debug)]
pub struct Response {
    pub code: u16,
    pub body: String,
    /// The URL that finally answered, after same-host redirects.
    pub url: Url,
}

/// GETs `url`, following redirects that stay on the same host, all within
/// `timeout`.
pub fn get(url: &Url, headers: &[(String, String)], timeout: Duration) -> Result<Response, String> {
    let deadline = Instant::now() + timeout;
    let mut current = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let (code, location, body) = get_once(&current, headers, deadline)?;
        let Some(location) = location.filter(|_| matches!(code, 301 | 302 | 303 | 307 | 308))
        else {
            return Ok(Response {
                code,
                body,
                url: current,
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

fn get_once(
    url: &Url,
    headers: &[(String, String)],
    deadline: Instant,
) -> Result<(u16, Option<String>, String), String> {
    let addrs = url.socket_addrs()?;
    remaining(deadline, "connecting")?;
    let mut stream = connect_any(&addrs, deadline)
        .map_err(|e| format!("cannot connect to {}: {e}", url.authority()))?;
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: drainit\r\nAccept: */*\r\nConnection: close\r\n",
        url.path,
        url.authority()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .set_write_timeout(Some(remaining(deadline, "sending")?))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| format!("cannot send to {}: {e}", url.authority()))?;
    let mut raw = Vec::new();
    let mut limited = (&mut stream).take(MAX_RESPONSE);
    let mut buf = [0u8; 4096];
    loop {
        limited
            .get_mut()
            .set_read_timeout(Some(remaining(deadline, "waiting for the answer")?))
            .map_err(|e| e.to_string())?;
        match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("timed out waiting for {url}"))
            }
            Err(e) if raw.is_empty() => return Err(format!("{url}: {e}")),
            Err(_) => break,
        }
        if response_complete(&raw) {
            break;
        }
    }
    parse_response(&raw).ok_or_else(|| format!("{url} sent no valid HTTP response"))
}

/// Whether a Content-Length response is fully read (so a server that
/// keeps the connection open anyway does not cost us the timeout).
fn response_complete(raw: &[u8]) -> bool {
    let Some(end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| raw.len() >= end + 4 + len)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Status code, Location, and body (dechunked if needed).
pub fn parse_response(raw: &[u8]) -> Option<(u16, Option<String>, String)> {
    let end = find(raw, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.lines().next()?;
    let mut parts = status.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code: u16 = parts
        .next()?
        .parse()
        .ok()
        .filter(|c| (100..600).contains(c))?;
    let location = header(&head, "location").map(str::to_string);
    let body = &raw[end + 4..];
    let chunked =
        header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some((code, location, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
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

    #[test]
    fn responses() {
        let (code, loc, body) =
            parse_response(b"HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n").unwrap();
        assert_eq!((code, loc.as_deref(), body.as_str()), (301, Some("/x"), ""));
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap().2, "{\"a\":1}");
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_none());
    }
}
