//! Hostile HTTP against the real binary (issue 6): every malformed,
//! oversized, smuggling or foreign-protocol request gets a 4xx/5xx or a
//! closed connection, never a crash, and never changes the drain state.
//! Each request is sent on its own connection from loopback, where control
//! requests would be honoured: so a smuggled `/sethealth/ko` that drainit
//! parsed as a request would drain it, and `assert_untouched` would see it.
mod common;
mod hardening_common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use hardening_common::*;

/// What drainit must do with one hostile request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Exactly this error status, then the connection is closed.
    Code(u16),
    /// Some 4xx/5xx then a close, or a close (or reset) with no answer.
    Refused,
    /// A close without any answer (the request never completed).
    Silent,
}

struct Case {
    kind: &'static str,
    what: String,
    bytes: Vec<u8>,
    expect: Expect,
}

fn case(kind: &'static str, what: &str, bytes: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        kind,
        what: what.to_string(),
        bytes: bytes.into(),
        expect,
    }
}

const SMUGGLED: &str = "GET /sethealth/ko HTTP/1.1\r\nHost: x\r\n\r\n";

/// A fixed-seed xorshift, so the garbage is the same on every run.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let mut c = vec![
        // Malformed request lines.
        case("request line", "empty request line", "\r\n\r\n", Code(400)),
        case("request line", "method only", "GET\r\n\r\n", Code(400)),
        case(
            "request line",
            "two spaces",
            "GET  /readyz HTTP/1.1\r\n\r\n",
            Code(400),
        ),
        case(
            "request line",
            "extra word",
            "GET /readyz HTTP/1.1 x\r\n\r\n",
            Code(400),
        ),
        case(
            "request line",
            "tab separators",
            "GET\t/readyz\tHTTP/1.1\r\n\r\n",
            Code(400),
        ),
        case(
            "request line",
            "leading empty line",
            "\r\nGET /readyz HTTP/1.1\r\n\r\n",
            Code(400),
        ),
        case(
            "request line",
            "target without slash",
            "GET readyz HTTP/1.1\r\n\r\n",
            Code(400),
        ),
        case(
            "request line",
            "absolute-form target",
            "GET http://127.0.0.1/sethealth/ko HTTP/1.1\r\n\r\n",
            Code(400),
        ),
        case(
            "request line",
            "asterisk-form target",
            "OPTIONS * HTTP/1.1\r\n\r\n",
            Code(400),
        ),
        case(
            "request line",
            "control byte in method",
            "GE\x01T /readyz HTTP/1.1\r\n\r\n",
            Code(400),
        ),
        case(
            "request line",
            "NUL in target",
            "GET /sethealth/ko\x00 HTTP/1.1\r\n\r\n",
            Code(400),
        ),
        case(
            "request line",
            "bare LF inside the request line",
            "GET /readyz\nHTTP/1.1\r\n\r\n",
            Code(400),
        ),
        case(
            "request line",
            "unknown version word",
            "GET /readyz FOO/1.1\r\n\r\n",
            Code(400),
        ),
        case(
            "request line",
            "HTTP/1.2",
            "GET /readyz HTTP/1.2\r\n\r\n",
            Code(505),
        ),
        case(
            "request line",
            "HTTP/9.9",
            "GET /readyz HTTP/9.9\r\n\r\n",
            Code(505),
        ),
        case(
            "request line",
            "lowercase version",
            "GET /readyz http/1.1\r\n\r\n",
            Code(400),
        ),
        case(
            "request line",
            "unknown method on a control path",
            "BREW /sethealth/ko HTTP/1.1\r\n\r\n",
            Code(405),
        ),
        // HTTP/0.9 and HTTP/2.
        // Refused as soon as its line ends, not when the head deadline passes.
        case("HTTP/0.9", "simple request", "GET /readyz\r\n", Code(400)),
        case(
            "HTTP/0.9",
            "simple request, blank line",
            "GET /sethealth/ko\r\n\r\n",
            Code(400),
        ),
        // The version is refused before the target: whole or cut short,
        // the preface gets the same answer.
        case(
            "HTTP/2",
            "prior-knowledge preface",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            Code(505),
        ),
        case(
            "HTTP/2",
            "preface start only",
            "PRI * HTTP/2.0\r\n",
            Code(505),
        ),
        case(
            "HTTP/2",
            "HTTP/2.0 request line",
            "GET /readyz HTTP/2.0\r\n\r\n",
            Code(505),
        ),
        // Headers.
        case(
            "header",
            "space before colon",
            "GET /readyz HTTP/1.1\r\nHost : x\r\n\r\n",
            Code(400),
        ),
        case(
            "header",
            "obs-fold continuation line",
            "GET /readyz HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
            Code(400),
        ),
        case(
            "header",
            "no colon",
            "GET /readyz HTTP/1.1\r\nHost x\r\n\r\n",
            Code(400),
        ),
        case(
            "header",
            "empty name",
            "GET /readyz HTTP/1.1\r\n: x\r\n\r\n",
            Code(400),
        ),
        case(
            "header",
            "NUL in value",
            "GET /readyz HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            Code(400),
        ),
        case(
            "header",
            "bare CR in value",
            "GET /readyz HTTP/1.1\r\nX: a\rb\r\n\r\n",
            Code(400),
        ),
        case(
            "header",
            "bare LF hides a second request",
            format!("GET /readyz HTTP/1.1\r\nX: a\n{SMUGGLED}"),
            Code(400),
        ),
        case(
            "header",
            "two Authorization headers",
            "GET /readyz HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
            Code(400),
        ),
        // Invalid UTF-8.
        case(
            "invalid UTF-8",
            "in the target",
            &b"GET /\xff\xfe HTTP/1.1\r\n\r\n"[..],
            Code(400),
        ),
        case(
            "invalid UTF-8",
            "in a header value",
            &b"GET /readyz HTTP/1.1\r\nX: \xc3\x28\r\n\r\n"[..],
            Code(400),
        ),
        case(
            "invalid UTF-8",
            "overlong slash in the target",
            &b"GET /sethealth\xc0\xafko HTTP/1.1\r\n\r\n"[..],
            Code(400),
        ),
        // Bogus Content-Length.
        case(
            "Content-Length",
            "negative",
            "POST /readyz HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            Code(400),
        ),
        case(
            "Content-Length",
            "plus sign",
            "POST /readyz HTTP/1.1\r\nContent-Length: +4\r\n\r\nabcd",
            Code(400),
        ),
        case(
            "Content-Length",
            "hex",
            "POST /readyz HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
            Code(400),
        ),
        case(
            "Content-Length",
            "not a number",
            "POST /readyz HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            Code(400),
        ),
        case(
            "Content-Length",
            "empty",
            "POST /readyz HTTP/1.1\r\nContent-Length:\r\n\r\n",
            Code(400),
        ),
        case(
            "Content-Length",
            "list",
            "POST /readyz HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx",
            Code(400),
        ),
        case(
            "Content-Length",
            "overflows 64 bits",
            "POST /readyz HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            Code(400),
        ),
        case(
            "Content-Length",
            "larger than the body limit",
            "POST /readyz HTTP/1.1\r\nContent-Length: 4294967296\r\n\r\n",
            Code(413),
        ),
        case(
            "Content-Length",
            "body never arrives",
            "POST /sethealth/ko HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
            Silent,
        ),
        // Chunked bodies.
        case(
            "chunked",
            "chunked body",
            format!(
                "POST /readyz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n",
                SMUGGLED.len()
            ),
            Code(501),
        ),
        case(
            "chunked",
            "chunked last in a list",
            "POST /readyz HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            Code(501),
        ),
        case(
            "chunked",
            "lowercase name, tab before value",
            "POST /readyz HTTP/1.1\r\ntransfer-encoding:\tchunked\r\n\r\n0\r\n\r\n",
            Code(501),
        ),
        case(
            "chunked",
            "identity",
            "POST /readyz HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            Code(501),
        ),
        // Request smuggling: each hides SMUGGLED where some parser would
        // see a second request.
        case(
            "smuggling",
            "CL.TE",
            format!(
                "POST /readyz HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
            Code(501),
        ),
        case(
            "smuggling",
            "TE.CL",
            format!(
                "POST /readyz HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n{SMUGGLED}\r\n0\r\n\r\n"
            ),
            Code(501),
        ),
        case(
            "smuggling",
            "TE with space before colon",
            format!(
                "POST /readyz HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding : chunked\r\n\r\n{SMUGGLED}"
            ),
            Code(400),
        ),
        case(
            "smuggling",
            "TE hidden in a folded line",
            format!(
                "POST /readyz HTTP/1.1\r\nContent-Length: 0\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n{SMUGGLED}"
            ),
            Code(400),
        ),
        // The fold makes the whole head malformed before any field counts.
        case(
            "smuggling",
            "empty TE value, chunked folded onto the next line",
            format!(
                "POST /readyz HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding:\r\n chunked\r\n\r\n{SMUGGLED}"
            ),
            Code(400),
        ),
        case(
            "smuggling",
            "duplicate Content-Length, different values",
            format!(
                "POST /readyz HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
            Code(400),
        ),
        case(
            "smuggling",
            "duplicate Content-Length, same value",
            format!(
                "POST /readyz HTTP/1.1\r\nContent-Length: {0}\r\nContent-Length: {0}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
            Code(400),
        ),
        case(
            "smuggling",
            "Content-Length with space before colon",
            format!(
                "POST /readyz HTTP/1.1\r\nContent-Length : {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
            Code(400),
        ),
        case(
            "smuggling",
            "oversized body hiding a request",
            format!(
                "POST /readyz HTTP/1.1\r\nContent-Length: 5000\r\n\r\n{SMUGGLED}{}",
                "x".repeat(4000)
            ),
            Code(413),
        ),
    ];
    // Huge and endless heads.
    c.push(case(
        "huge head",
        "one 9 KiB header",
        format!("GET /readyz HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000)),
        Code(431),
    ));
    c.push(case(
        "huge head",
        "100 headers",
        format!("GET /readyz HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(100)),
        Code(431),
    ));
    c.push(case(
        "huge head",
        "9 KiB target",
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000)),
        Code(431),
    ));
    c.push(case(
        "huge head",
        "endless header (1 MiB, never terminated)",
        format!("GET /readyz HTTP/1.1\r\nX: {}", "a".repeat(1 << 20)),
        Refused,
    ));
    c.push(case(
        "huge head",
        "endless stream of headers (1 MiB)",
        format!("GET /readyz HTTP/1.1\r\n{}", "X-A: b\r\n".repeat(1 << 17)),
        Refused,
    ));
    // Binary garbage: never a head, a head of garbage, and every byte.
    for (i, len) in [1usize, 17, 300, 4096, 20000].into_iter().enumerate() {
        c.push(case(
            "binary garbage",
            &format!("{len} random bytes"),
            garbage(0x9e37_79b9_7f4a_7c15 ^ i as u64, len),
            Refused,
        ));
        let mut framed = garbage(0x1234_5678 ^ i as u64, len.min(4000));
        framed.extend_from_slice(b"\r\n\r\n");
        c.push(case(
            "binary garbage",
            &format!("{} random bytes then CRLFCRLF", len.min(4000)),
            framed,
            Refused,
        ));
    }
    let mut every: Vec<u8> = (0..=255u8).collect();
    every.extend_from_slice(b"\r\n\r\n");
    c.push(case(
        "binary garbage",
        "all 256 byte values",
        every,
        Refused,
    ));
    c.push(case(
        "binary garbage",
        "TLS ClientHello start",
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        Silent,
    ));
    c
}

#[test]
fn malformed_requests_are_refused_and_change_nothing() {
    let mut sup = start_sigrec(&["--drain-delay", "30"], &[]);
    wait_for_state(sup.addr, "ready", secs(10.0));
    let cases = cases();
    let mut kinds: Vec<&str> = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let got = exchange(sup.addr, &c.bytes, true, Duration::from_secs(5));
        let codes = got.codes();
        let label = format!("[{}] {}: {}", c.kind, c.what, got.text().escape_debug());
        assert!(got.closed, "{label}: still open after 5 s");
        assert!(
            codes.iter().all(|c| (400..600).contains(c)),
            "{label}: answered {codes:?}"
        );
        match c.expect {
            Expect::Code(code) => assert_eq!(codes, [code], "{label}"),
            Expect::Refused => assert!(codes.len() <= 1, "{label}"),
            Expect::Silent => assert!(codes.is_empty(), "{label}"),
        }
        if !kinds.contains(&c.kind) {
            kinds.push(c.kind);
        }
        // Cheap enough to check after every few cases; a failure names
        // the request that did it.
        if i % 8 == 7 || i + 1 == cases.len() {
            assert_untouched(&mut sup, &label);
        }
    }
    eprintln!(
        "figures: {} malformed requests of {} kinds ({}) refused",
        cases.len(),
        kinds.len(),
        kinds.join(", ")
    );
    // The child saw nothing of it.
    assert_eq!(recorded(&sup.out), Vec::<i32>::new());
}

/// Framing stays exact: a body is skipped by its Content-Length, even when
/// it holds a whole request, and the next request on the connection is the
/// one after the body. A proper pipelined pair is the positive control.
#[test]
fn bodies_are_skipped_never_parsed_as_requests() {
    let mut sup = start_sigrec(&["--drain-delay", "30"], &[]);
    wait_for_state(sup.addr, "ready", secs(10.0));

    let pair = "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nHost: x\r\n\r\n";
    let got = exchange(sup.addr, pair.as_bytes(), true, secs(5.0));
    assert_eq!(got.codes(), [200, 200], "{}", got.text());

    // POST /readyz is 405 (and keeps the connection): its body, a control
    // request, is skipped; the request after it is /status.
    let smuggle = format!(
        "POST /readyz HTTP/1.1\r\nContent-Length: {}\r\n\r\n{SMUGGLED}GET /status HTTP/1.1\r\n\r\n",
        SMUGGLED.len()
    );
    let got = exchange(sup.addr, smuggle.as_bytes(), true, secs(5.0));
    let replies = responses(&got.bytes);
    assert_eq!(
        replies.iter().map(|r| r.0).collect::<Vec<_>>(),
        [405, 200],
        "{}",
        got.text()
    );
    assert!(
        replies[1].1.contains("\"state\":\"ready\""),
        "the second answer must be /status: {replies:?}"
    );
    // The same with the body on a GET and in a separate write.
    let mut s = TcpStream::connect(sup.addr).unwrap();
    let head = format!(
        "GET /readyz HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        SMUGGLED.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(SMUGGLED.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let got = read_until_close(&mut s, secs(5.0));
    assert_eq!(got.codes(), [200], "{}", got.text());
    // An h2c upgrade is answered as plain HTTP/1.1 and never switches.
    let upgrade = "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let got = exchange(sup.addr, upgrade.as_bytes(), true, secs(5.0));
    assert_eq!(got.codes(), [200], "{}", got.text());
    assert!(!got.text().contains("101"), "{}", got.text());
    assert_untouched(&mut sup, "smuggled bodies");
}

/// A request that never completes is cut at the head deadline (5 s from
/// its first byte), however slowly it trickles; a connection that never
/// sends anything is cut at the same deadline.
#[test]
fn incomplete_requests_are_cut_at_the_head_deadline() {
    let mut sup = start_sigrec(&[], &[]);
    let silent = TcpStream::connect(sup.addr).unwrap();
    let mut trickle = TcpStream::connect(sup.addr).unwrap();
    let start = Instant::now();
    trickle.write_all(b"GET /readyz HTTP/1.1\r\n").unwrap();
    // One byte every 200 ms: it never looks idle, but never finishes.
    let mut cut = None;
    while start.elapsed() < secs(9.0) {
        std::thread::sleep(secs(0.2));
        if trickle.write_all(b"X").is_err() {
            cut = Some(start.elapsed());
            break;
        }
        let mut probe = [0u8; 1];
        trickle.set_nonblocking(true).unwrap();
        let r = std::io::Read::read(&mut trickle, &mut probe);
        trickle.set_nonblocking(false).unwrap();
        if matches!(r, Ok(0))
            || r.as_ref()
                .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock)
        {
            cut = Some(start.elapsed());
            break;
        }
    }
    let cut = cut.expect("a trickling request was still open after 9 s");
    assert!(
        cut >= secs(4.9) && cut <= secs(6.5),
        "cut after {cut:?}, expected the 5 s head deadline"
    );
    let mut silent = silent;
    let got = read_until_close(&mut silent, secs(2.0));
    assert!(got.closed && got.bytes.is_empty(), "{got:?}");
    assert_untouched(&mut sup, "trickling requests");
}
