//! The health endpoint's HTTP/1.1 over real sockets, against the real
//! binary (issue 9): a pipeline is answered whole and in order however its
//! bytes are cut, a body never runs as a request, and the protocol details
//! a proxy relies on hold (Connection as a token list, bare LF, reason
//! phrases).
mod common;
mod hardening_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use hardening_common::*;

const SMUGGLED: &str = "GET /sethealth/ko HTTP/1.1\r\nHost: x\r\n\r\n";

/// Writes `pieces` (one write each, Nagle off) while another thread reads,
/// so that neither side's buffers fill up with nobody draining them; the
/// reading stops after `answers` responses, at the server's close, or
/// after 10 s. Returns (status, body) of each response.
fn converse(addr: SocketAddr, pieces: &[&[u8]], answers: usize) -> Vec<(u16, String)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut reader = s.try_clone().unwrap();
    let read = thread::spawn(move || {
        let deadline = Instant::now() + secs(10.0);
        let mut raw = Vec::new();
        let mut buf = [0u8; 16384];
        while responses(&raw).len() < answers && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            reader.set_read_timeout(Some(left.max(secs(0.01)))).unwrap();
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        responses(&raw)
    });
    for piece in pieces {
        s.write_all(piece).unwrap();
    }
    read.join().unwrap()
}

/// A fixed-seed xorshift for reproducible request mixes and cuts.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// 300 pipelined requests: GETs, and POSTs (405, the connection stays
/// open) whose bodies hold a control request, alone or after a blank line;
/// the last one closes the connection.
fn stream() -> (Vec<u8>, usize) {
    let mut rng = Rng(0x5eed_1234_abcd);
    let mut bytes = Vec::new();
    let count = 300;
    for i in 0..count {
        let close = if i + 1 == count {
            "Connection: close\r\n"
        } else {
            ""
        };
        let req = match rng.below(5) {
            0 => format!("GET /readyz HTTP/1.1\r\nHost: x\r\n{close}\r\n"),
            1 => format!("GET /livez HTTP/1.1\r\n{close}\r\n"),
            2 => format!("GET /health?n={i} HTTP/1.1\r\nHost: x\r\n{close}\r\n"),
            3 => format!(
                "POST /readyz HTTP/1.1\r\nContent-Length: {}\r\n{close}\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
            _ => {
                let body = format!("\r\n\r\n{SMUGGLED}");
                format!(
                    "POST /livez HTTP/1.1\r\nContent-Length: {}\r\n{close}\r\n{body}",
                    body.len()
                )
            }
        };
        bytes.extend_from_slice(req.as_bytes());
    }
    (bytes, count)
}

/// `bytes` cut at random points, pieces of 1 to `max` bytes.
fn cut(bytes: &[u8], max: usize, seed: u64) -> Vec<&[u8]> {
    let mut rng = Rng(seed);
    let mut pieces = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at((1 + rng.below(max)).min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

#[test]
fn any_chunking_gives_the_answers_of_one_write() {
    let mut sup = start_sigrec(&["--drain-delay", "30"], &[]);
    wait_for_state(sup.addr, "ready", secs(10.0));
    let (bytes, count) = stream();
    let whole = converse(sup.addr, &[&bytes], count);
    assert_eq!(whole.len(), count, "answers to one write");
    assert!(
        whole.iter().all(|(code, _)| [200, 405].contains(code)),
        "{whole:?}"
    );
    for (max, seed) in [(1, 1), (7, 2), (100, 3), (3000, 4)] {
        let pieces = cut(&bytes, max, seed);
        let got = converse(sup.addr, &pieces, count);
        assert!(
            got == whole,
            "pieces of up to {max} bytes: {} answers, first difference at {:?}",
            got.len(),
            got.iter().zip(&whole).position(|(a, b)| a != b)
        );
    }
    // The control requests inside the bodies never ran.
    assert_untouched(&mut sup, "pipelines with control requests in bodies");
}

#[test]
fn three_hundred_pipelined_requests_get_three_hundred_answers() {
    let sup = start_sigrec(&[], &[]);
    let one = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n";
    let got = converse(sup.addr, &[&one.repeat(300)], 300);
    assert_eq!(got.len(), 300);
    assert!(got.iter().all(|(code, _)| *code == 200), "{got:?}");
}

/// Sends `request` without closing our side; returns what came back and
/// how long until the server closed (3 s at most: the head deadline is 5 s
/// and the idle one 15 s, so a close before means the request did it).
fn closes(addr: SocketAddr, request: &str) -> (Exchange, Duration) {
    let started = Instant::now();
    let got = exchange(addr, request.as_bytes(), false, secs(3.0));
    (got, started.elapsed())
}

#[test]
fn a_bare_lf_head_gets_400_at_once() {
    let sup = start_sigrec(&[], &[]);
    for head in [
        "GET /readyz HTTP/1.1\nHost: x\n\n",
        "GET /readyz HTTP/1.1\r\nHost: x\n",
    ] {
        let (got, took) = closes(sup.addr, head);
        assert!(got.closed, "{head:?} still open after {took:?}");
        assert_eq!(got.codes(), [400], "{head:?}: {}", got.text());
    }
}

#[test]
fn any_close_in_connection_closes() {
    let sup = start_sigrec(&[], &[]);
    for headers in [
        "Connection: close, keep-alive\r\n",
        "Connection: keep-alive\r\nConnection: Upgrade, CLOSE\r\n",
    ] {
        let (got, took) = closes(
            sup.addr,
            &format!("GET /readyz HTTP/1.1\r\nHost: x\r\n{headers}\r\n"),
        );
        assert!(got.closed, "{headers:?}: still open after {took:?}");
        assert_eq!(got.codes(), [200], "{headers:?}: {}", got.text());
    }
    // The positive control: keep-alive alone keeps it open.
    let (got, _) = closes(
        sup.addr,
        "GET /readyz HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
    );
    assert!(!got.closed && got.codes() == [200], "{got:?}");
}

#[test]
fn every_status_has_its_reason_phrase() {
    let sup = start_sigrec(&[], &[]);
    let cases = [
        ("GET /readyz HTTP/1.1", "200 OK"),
        ("GET /nope HTTP/1.1", "404 Not Found"),
        ("POST /readyz HTTP/1.1", "405 Method Not Allowed"),
        ("GET /debug/panic HTTP/1.1", "500 Internal Server Error"),
        (
            "GET /readyz HTTP/1.1\r\nTransfer-Encoding: chunked",
            "501 Not Implemented",
        ),
        ("GET /readyz HTTP/2.0", "505 HTTP Version Not Supported"),
    ];
    for (head, status) in cases {
        let got = exchange(
            sup.addr,
            format!("{head}\r\n\r\n").as_bytes(),
            true,
            secs(5.0),
        );
        assert!(
            got.text().starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{head:?}: {}",
            got.text()
        );
    }
}
