//! Property tests (proptest, stable Rust) over drainit's own request
//! handling: `http::conn` (the parser and the connection's framing) and
//! `health::route`, the only code that sees bytes from the network.
//! Bounded for CI: PROPTEST_CASES cases per property (2,000 unless set),
//! the whole file in a few seconds; each property prints how many cases it
//! ran. Inputs that ever failed are kept below as plain regression tests.
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use drainit::control::ControlSettings;
use drainit::drain::{DrainPolicy, Machine, StopPolicy};
use drainit::health::{route, HealthSettings};
use drainit::http::conn::{parse, Conn, Limits, Parsed, NO_HEADERS};
use drainit::http::{Peer, Reply, Request};
use drainit::shared::Shared;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const TOKEN: &str = "s3cret-Token-42";

fn limits() -> Limits {
    Limits::default()
}

/// Runs `test` over `strategy` for PROPTEST_CASES cases (2,000 by default),
/// without failure files, and reports the count for docs/hardening.md.
fn check<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let ran = AtomicU64::new(0);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |v| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(v)
    });
    eprintln!(
        "figures: {name}: {} cases run (shrinking included)",
        ran.load(Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

/// The invariants of `parse` on any input.
fn parse_invariants(buf: &[u8]) -> Result<(), TestCaseError> {
    let limits = limits();
    let mut slots = NO_HEADERS;
    // A panic fails the test anyway; caught, it names the input.
    panic::catch_unwind(|| {
        let mut slots = NO_HEADERS;
        matches!(parse(buf, &limits, &mut slots), Parsed::Done(_))
    })
    .map_err(|_| TestCaseError::fail(format!("parse panicked on {buf:?}")))?;
    let parsed = parse(buf, &limits, &mut slots);
    match parsed {
        Parsed::Partial(None) => {
            // An incomplete head is never longer than the limit.
            prop_assert!(buf.len() < limits.max_head);
        }
        Parsed::Partial(Some(len)) => {
            prop_assert!(buf.len() < len && len <= limits.max_head + limits.max_body);
        }
        Parsed::Bad(code, why) => {
            prop_assert!((400..600).contains(&code), "code {code} ({why})");
        }
        Parsed::Done(head) => done_invariants(buf, &head)?,
    }
    Ok(())
}

fn done_invariants(buf: &[u8], head: &drainit::http::conn::Head) -> Result<(), TestCaseError> {
    let limits = limits();
    prop_assert!(head.len <= buf.len(), "len {} of {}", head.len, buf.len());
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("Done without a blank line");
    prop_assert!(end + 4 <= head.len);
    prop_assert!(head.len - (end + 4) <= limits.max_body);
    prop_assert!(end + 4 <= limits.max_head);
    // No bare LF anywhere in the head.
    prop_assert!(!buf[..end + 4]
        .windows(2)
        .any(|w| w[1] == b'\n' && w[0] != b'\r'));
    let req = &head.request;
    prop_assert!(!req.method.is_empty());
    prop_assert!(req
        .method
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)));
    prop_assert!(req.url.starts_with('/'));
    prop_assert!(req.url.bytes().all(|b| b.is_ascii_graphic()));
    for (name, value) in req.headers {
        prop_assert!(!value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0));
        // No request with a Transfer-Encoding ever gets through.
        prop_assert!(!name.eq_ignore_ascii_case("transfer-encoding"));
    }
    // Where a request ends does not depend on what follows it (what
    // request smuggling needs), and no prefix of it is already a
    // different request.
    let mut longer = buf[..head.len].to_vec();
    longer.extend_from_slice(b"GET /sethealth/ko HTTP/1.1\r\n\r\n");
    let mut slots = NO_HEADERS;
    match parse(&longer, &limits, &mut slots) {
        Parsed::Done(again) => prop_assert_eq!(&again, head),
        other => prop_assert!(false, "{other:?} once a request follows"),
    }
    Ok(())
}

#[test]
fn parse_survives_arbitrary_bytes() {
    check(
        "parse, arbitrary bytes",
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            // Biased to the bytes that matter to an HTTP parser.
            proptest::collection::vec(any::<u8>(), 0..600).prop_map(|v| v
                .into_iter()
                .map(|b| match b % 16 {
                    0..=2 => b'\r',
                    3..=5 => b'\n',
                    6 => b' ',
                    7 => b':',
                    8 => b'/',
                    9 => b'\t',
                    10..=12 => b'A' + b % 26,
                    _ => b,
                })
                .collect()),
            // Anything that ends like a head (most real requests do).
            proptest::collection::vec(any::<u8>(), 0..600).prop_map(|mut v| {
                v.extend_from_slice(b"\r\n\r\n");
                v
            }),
            // Around the head limit; filled from a seed (cheap to make).
            (any::<u64>(), 8000..9400usize, any::<bool>()).prop_map(|(seed, len, crlf)| {
                let mut x = seed | 1;
                let mut buf: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                if crlf {
                    let at = (seed as usize) % len;
                    buf.splice(at..at, *b"\r\n\r\n");
                }
                buf
            }),
        ],
        |buf| parse_invariants(&buf),
    );
}

/// A valid request and what parsing it must give.
#[derive(Clone, Debug)]
struct Valid {
    bytes: Vec<u8>,
    method: String,
    target: String,
    authorization: Option<String>,
    keep_alive: bool,
    len: usize,
}

fn valid_request() -> impl Strategy<Value = Valid> {
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("HEAD".to_string()),
        Just("POST".to_string()),
        "[A-Z]{1,8}",
    ];
    let target = prop_oneof![
        Just("/readyz".to_string()),
        Just("/sethealth/ko".to_string()),
        Just("/sethealth/ok".to_string()),
        Just("/metrics".to_string()),
        "/[!-~]{0,40}",
    ];
    let version = prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0")];
    let connection = prop_oneof![
        Just(None),
        Just(Some("close")),
        Just(Some("keep-alive")),
        Just(Some("Close")),
        Just(Some("keep-alive, close")),
        Just(Some("Upgrade,keep-alive")),
    ];
    let auth = proptest::option::of("Bearer [!-~]{0,20}");
    let extra = proptest::collection::vec(("X-[A-Za-z0-9-]{1,12}", "[ -~]{0,30}"), 0..6);
    let body = proptest::collection::vec(any::<u8>(), 0..64);
    let trailing = proptest::collection::vec(any::<u8>(), 0..64);
    (
        method, target, version, connection, auth, extra, body, trailing,
    )
        .prop_map(
            |(method, target, version, connection, auth, extra, body, trailing)| {
                let mut head = format!("{method} {target} {version}\r\nHost: x\r\n");
                for (k, v) in &extra {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                if let Some(c) = connection {
                    head.push_str(&format!("Connection: {c}\r\n"));
                }
                if let Some(a) = &auth {
                    head.push_str(&format!("Authorization: {a}\r\n"));
                }
                if !body.is_empty() {
                    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                head.push_str("\r\n");
                let mut bytes = head.into_bytes();
                bytes.extend_from_slice(&body);
                let len = bytes.len();
                bytes.extend_from_slice(&trailing);
                let keep_alive = match connection {
                    Some(c) if c.to_ascii_lowercase().contains("close") => false,
                    Some(c) if c.contains("keep-alive") => true,
                    _ => version == "HTTP/1.1",
                };
                Valid {
                    bytes,
                    method,
                    target,
                    authorization: auth.map(|a| a.trim_end().to_string()),
                    keep_alive,
                    len,
                }
            },
        )
}

#[test]
fn parse_reads_valid_requests_exactly() {
    check("parse, valid requests", valid_request(), |v| {
        let mut slots = NO_HEADERS;
        match parse(&v.bytes, &limits(), &mut slots) {
            Parsed::Done(h) => {
                prop_assert_eq!(h.request.method, &v.method);
                prop_assert_eq!(h.request.url, &v.target);
                prop_assert_eq!(
                    h.request.header("authorization"),
                    v.authorization.as_deref()
                );
                prop_assert_eq!(h.keep_alive, v.keep_alive);
                prop_assert_eq!(h.len, v.len);
            }
            other => prop_assert!(
                false,
                "{other:?} for {:?}",
                String::from_utf8_lossy(&v.bytes)
            ),
        }
        // Every strict prefix is incomplete: nothing is answered early.
        for cut in [0, 1, v.len / 2, v.len.saturating_sub(1)] {
            if cut < v.len {
                let mut slots = NO_HEADERS;
                let parsed = parse(&v.bytes[..cut], &limits(), &mut slots);
                prop_assert!(matches!(parsed, Parsed::Partial(_)), "{parsed:?}");
            }
        }
        Ok(())
    });
}

/// One edit to a valid request.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\x00".to_vec()),
        Just(b"\xff".to_vec()),
        Just(b"\r\n ".to_vec()),
        Just(b"\r\nContent-Length: 5".to_vec()),
        Just(b"\r\nContent-Length: 0".to_vec()),
        Just(b"\r\nTransfer-Encoding: chunked".to_vec()),
        Just(b"\r\nAuthorization: Bearer x".to_vec()),
        Just(b"\r\n\r\nGET /sethealth/ko HTTP/1.1\r\n\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), interesting).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1..8usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1..40usize).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Flip(i, b) if !bytes.is_empty() => {
            let n = bytes.len();
            bytes[i % n] = *b;
        }
        Mutation::Flip(..) => {}
        Mutation::Insert(i, b) => {
            let i = at(*i, bytes.len());
            bytes.splice(i..i, b.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = at(*i, bytes.len());
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Truncate(i) => {
            let i = at(*i, bytes.len());
            bytes.truncate(i);
        }
        Mutation::Duplicate(i, n) => {
            let i = at(*i, bytes.len());
            let end = (i + n).min(bytes.len());
            let copy = bytes[i..end].to_vec();
            bytes.splice(i..i, copy);
        }
    }
}

#[test]
fn parse_survives_mutated_requests() {
    check(
        "parse, mutated valid requests",
        (valid_request(), proptest::collection::vec(mutation(), 1..6)),
        |(v, mutations)| {
            let mut bytes = v.bytes;
            for m in &mutations {
                apply(&mut bytes, m);
            }
            parse_invariants(&bytes)
        },
    );
}

// ---------------------------------------------------------------------------
// Conn: framing across any chunking

/// A control request that a body may hold, and that must never execute.
const SMUGGLED: &[u8] = b"GET /sethealth/ko HTTP/1.1\r\n\r\n";

/// One request of a pipeline: the bytes and the "METHOD URL" the handler
/// must see for it.
fn pipelined_request() -> impl Strategy<Value = (Vec<u8>, String)> {
    let method = prop_oneof![Just("GET"), Just("HEAD"), Just("POST")];
    let target = prop_oneof![
        Just("/readyz"),
        Just("/livez"),
        Just("/metrics"),
        Just("/sethealth/ok"),
        Just("/x?q=GET%20/sethealth/ko"),
    ];
    let body = prop_oneof![
        Just(Vec::new()),
        Just(SMUGGLED.to_vec()),
        proptest::collection::vec(any::<u8>(), 1..40),
        // Looks like the end of this request and the start of another.
        (0..3usize).prop_map(|n| [b"\r\n\r\n".repeat(n), SMUGGLED.to_vec()].concat()),
    ];
    (method, target, body, any::<bool>()).prop_map(|(method, target, body, keep_alive)| {
        let mut bytes = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n").into_bytes();
        if keep_alive {
            bytes.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        if !body.is_empty() {
            bytes.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(&body);
        (bytes, format!("{method} {target}"))
    })
}

/// A stream of pipelined requests, the last one optionally closing, and
/// the requests the handler must see. Mostly short; one in 20 is 900 to
/// 1,000 requests long, the generated ones repeated (cheaper to make).
fn pipeline() -> impl Strategy<Value = (Vec<u8>, Vec<String>)> {
    let long = prop_oneof![19 => Just(None), 1 => (900..=1000usize).prop_map(Some)];
    (
        proptest::collection::vec(pipelined_request(), 1..40),
        long,
        any::<bool>(),
    )
        .prop_map(|(mut requests, long, close)| {
            if let Some(n) = long {
                requests = requests.iter().cycle().take(n).cloned().collect();
            }
            let mut bytes = Vec::new();
            let mut seen = Vec::new();
            let last = requests.len() - 1;
            for (i, (req, line)) in requests.into_iter().enumerate() {
                if i == last && close {
                    // `Connection: close` as the first header of the last request.
                    let at = req.iter().position(|b| *b == b'\n').unwrap() + 1;
                    bytes.extend_from_slice(&req[..at]);
                    bytes.extend_from_slice(b"Connection: close\r\n");
                    bytes.extend_from_slice(&req[at..]);
                } else {
                    bytes.extend_from_slice(&req);
                }
                seen.push(line);
            }
            (bytes, seen)
        })
}

/// Sizes of the pieces the stream arrives in, used in turn.
fn chunking() -> impl Strategy<Value = Vec<usize>> {
    let size = prop_oneof![1..8usize, 1..200usize, 1..20_000usize];
    proptest::collection::vec(size, 1..16)
}

/// What a connection answers to `input` arriving in pieces of `sizes`
/// (cycled): the bytes sent back and the requests the handler saw. A
/// piece the connection has no room for stays in the "socket" and is
/// offered again, as the epoll loop leaves it in the kernel.
fn converse(input: &[u8], sizes: &[usize]) -> (Vec<u8>, Vec<String>) {
    let (limits, now) = (limits(), Instant::now());
    let seen = RefCell::new(Vec::new());
    let handler = |r: &Request| {
        let mut seen = seen.borrow_mut();
        seen.push(format!("{} {}", r.method, r.url));
        Reply::json(200, format!("{} {}\n", seen.len(), r.url))
    };
    let mut conn = Conn::new(Some(Peer::Tcp(Ipv4Addr::LOCALHOST.into())), now, &limits);
    let (mut out, mut rest, mut piece): (Vec<u8>, &[u8], &[u8]) = (Vec::new(), input, &[]);
    let mut sizes = sizes.iter().cycle();
    // Each round takes bytes or answers, so the stream runs out in time.
    for _ in 0..4 * input.len() + 16 {
        conn.answer(now, &limits, &handler);
        out.extend_from_slice(conn.output());
        conn.sent(conn.output().len());
        if conn.finished() {
            break;
        }
        if piece.is_empty() {
            let n = sizes.next().copied().unwrap_or(1).min(rest.len());
            (piece, rest) = rest.split_at(n);
        }
        if piece.is_empty() {
            conn.end();
        }
        let took = conn.receive(piece, now, &limits);
        piece = &piece[took..];
    }
    assert!(conn.finished(), "the conversation did not end");
    (out, seen.into_inner())
}

/// Whether the handler saw the requests sent, said briefly when not (a
/// pipeline can be 1,000 requests long).
fn same_requests(seen: &[String], sent: &[String], how: &str) -> Result<(), TestCaseError> {
    let first = seen.iter().zip(sent).position(|(a, b)| a != b);
    prop_assert!(
        seen.len() == sent.len() && first.is_none(),
        "{how}: the handler saw {} requests of {}, first difference at {first:?}",
        seen.len(),
        sent.len()
    );
    Ok(())
}

#[test]
fn any_chunking_gives_the_answers_of_one_write() {
    check(
        "conn, pipelines in any chunking",
        (pipeline(), chunking()),
        |((input, expected), sizes)| {
            let (whole, seen_whole) = converse(&input, &[input.len()]);
            same_requests(&seen_whole, &expected, "one write")?;
            let (chunked, seen) = converse(&input, &sizes);
            same_requests(&seen, &expected, &format!("chunked as {sizes:?}"))?;
            prop_assert!(
                chunked == whole,
                "different answers when chunked as {sizes:?}"
            );
            let answers = String::from_utf8_lossy(&whole)
                .matches("HTTP/1.1 200 OK")
                .count();
            prop_assert_eq!(answers, expected.len());
            prop_assert!(!seen.iter().any(|s| s.ends_with(" /sethealth/ko")));
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------
// route

fn machine(drained: bool) -> Shared {
    let mut m = Machine::new(DrainPolicy::default(), StopPolicy::default());
    m.checks_changed(true, "fuzz");
    if drained {
        m.manual(true, std::time::Instant::now()).unwrap();
    }
    Shared::new(m)
}

/// State name and drain count.
fn snapshot(shared: &Shared) -> (&'static str, u64) {
    shared.machine(|m| (m.state().name(), m.drains()))
}

fn settings(token: bool) -> HealthSettings {
    HealthSettings {
        control: ControlSettings {
            token: token.then(|| TOKEN.to_string()),
            ..ControlSettings::default()
        },
        drain_status: 503,
    }
}

fn peer() -> impl Strategy<Value = Peer> {
    let ip = prop_oneof![
        Just(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        Just("::ffff:127.0.0.1".parse().unwrap()),
        any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        // Look-alikes of loopback that are not loopback: a mesh sidecar
        // delivers outside traffic from 127.0.0.6.
        Just("127.0.0.6".parse().unwrap()),
        Just("127.1.2.3".parse().unwrap()),
        Just("::ffff:127.0.0.6".parse().unwrap()),
        Just("::127.0.0.1".parse().unwrap()),
        Just("0.0.0.0".parse().unwrap()),
        Just("::".parse().unwrap()),
        Just("fe80::1".parse().unwrap()),
        Just("128.0.0.1".parse().unwrap()),
        Just("::ffff:10.0.0.1".parse().unwrap()),
    ];
    prop_oneof![ip.prop_map(Peer::Tcp), Just(Peer::ControlSocket)]
}

/// A header a browser or a proxy adds (`true`), or one that means nothing
/// for trust (`false`).
fn extra_header() -> impl Strategy<Value = Option<((&'static str, &'static str), bool)>> {
    prop_oneof![
        Just(None),
        Just(Some((("User-Agent", "curl/8"), false))),
        Just(Some((("Sec-Fetch-Site", "none"), false))),
        Just(Some((("Origin", "http://evil.example"), true))),
        Just(Some((("sec-fetch-site", "cross-site"), true))),
        Just(Some((("Sec-Fetch-Site", "same-origin"), true))),
        Just(Some((("X-Forwarded-For", "10.0.0.1"), true))),
        Just(Some((("Forwarded", "for=10.0.0.1"), true))),
        Just(Some((("X-Real-IP", "10.0.0.1"), true))),
        Just(Some((("x-envoy-external-address", "10.0.0.1"), true))),
        Just(Some((("L5d-Client-Id", "web"), true))),
    ]
}

fn url() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/sethealth/ko".to_string()),
        Just("/sethealth/ok".to_string()),
        Just("/sethealth/ko?x=1".to_string()),
        Just("/debug/panic".to_string()),
        Just("/readyz".to_string()),
        Just("/metrics".to_string()),
        Just("/status".to_string()),
        Just("//sethealth/ko".to_string()),
        Just("/sethealth/ko/../ok".to_string()),
        Just("/sethealth/%6bo".to_string()),
        Just("/sethealth/ko%2f".to_string()),
        Just("/SETHEALTH/KO".to_string()),
        Just("/sethealth/ko;x".to_string()),
        Just("/sethealth/ko/".to_string()),
        Just("/sethealth/ko#".to_string()),
        "/sethealth/[!-~]{0,6}",
        "/[!-~]{0,30}",
        any::<String>(),
    ]
}

fn authorization() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(format!("Bearer {TOKEN}"))),
        Just(Some(format!("Bearer  {TOKEN} "))),
        Just(Some(format!("bearer {TOKEN}"))),
        Just(Some(format!("Bearer {}", TOKEN.to_uppercase()))),
        Just(Some(format!("Bearer {}X", &TOKEN[..TOKEN.len() - 1]))),
        Just(Some(format!("Bearer {TOKEN}x"))),
        Just(Some(format!("Bearer {}", &TOKEN[1..]))),
        Just(Some("Bearer".to_string())),
        Just(Some("Bearer ".to_string())),
        Just(Some(format!("Basic {TOKEN}"))),
        Just(Some(TOKEN.to_string())),
        "Bearer [!-~]{0,20}".prop_map(Some),
        any::<String>().prop_map(Some),
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("HEAD".to_string()),
        Just("PUT".to_string()),
        Just("DELETE".to_string()),
        Just("PATCH".to_string()),
        Just("OPTIONS".to_string()),
        Just("get".to_string()),
        any::<String>(),
    ]
}

/// Loopback as drainit trusts it: these three addresses and no others.
fn is_loopback(peer: Peer) -> bool {
    let loopback: [IpAddr; 3] = [
        Ipv4Addr::LOCALHOST.into(),
        Ipv6Addr::LOCALHOST.into(),
        "::ffff:127.0.0.1".parse().unwrap(),
    ];
    matches!(peer, Peer::Tcp(ip) if loopback.contains(&ip))
}

/// The only authorization that may grant control from outside: the
/// bearer scheme, in any case (RFC 7235), and the token.
fn has_token(auth: Option<&str>, token: bool) -> bool {
    token
        && auth
            .and_then(|a| a.split_once(' '))
            .is_some_and(|(scheme, t)| scheme.eq_ignore_ascii_case("bearer") && t.trim() == TOKEN)
}

/// Keeps the expected panics of /debug/panic out of the test output.
fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let injected = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.contains("/debug/panic"));
            if !injected {
                default(info);
            }
        }));
    });
}

#[test]
fn route_never_panics_and_never_lets_outsiders_in() {
    quiet_injected_panics();
    let strategy = (
        method(),
        url(),
        proptest::option::of(peer()),
        authorization(),
        extra_header(),
        any::<bool>(),
        any::<bool>(),
    );
    check(
        "route, arbitrary requests",
        strategy,
        |(method, url, peer, auth, extra, token, drained)| {
            let shared = machine(drained);
            let before = snapshot(&shared);
            let mut headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("Authorization", a.as_str())).collect();
            headers.extend(extra.map(|(header, _)| header));
            let marked = extra.is_some_and(|(_, marks)| marks);
            let req = Request {
                method: &method,
                url: &url,
                peer,
                headers: &headers,
            };
            let path = url.split_once('?').map_or(url.as_str(), |(p, _)| p);
            // Fault injection exists in debug builds only.
            let injected =
                cfg!(debug_assertions) && path == "/debug/panic" && peer.is_some_and(is_loopback);
            let outcome: Result<Reply, _> =
                panic::catch_unwind(AssertUnwindSafe(|| route(&req, &shared, &settings(token))));
            let reply = match outcome {
                // The debug-build fault injection, from loopback only.
                Err(_) if injected => return Ok(()),
                Err(_) => return Err(TestCaseError::fail("route panicked")),
                Ok(_) if injected => return Err(TestCaseError::fail("/debug/panic did not panic")),
                Ok(r) => r,
            };
            prop_assert!(
                [200, 403, 404, 405, 409, 503].contains(&reply.code),
                "code {}",
                reply.code
            );
            let trusted = peer == Some(Peer::ControlSocket)
                || (peer.is_some_and(is_loopback) && !marked)
                || (peer.is_some() && has_token(auth.as_deref(), token));
            let after = snapshot(&shared);
            if !trusted {
                prop_assert_eq!(
                    after,
                    before,
                    "an outsider changed the state: {}",
                    reply.code
                );
                if path.starts_with("/sethealth/") {
                    prop_assert!([403, 404, 405].contains(&reply.code), "{}", reply.code);
                }
            }
            // Only the two exact control paths ever change anything.
            if path != "/sethealth/ko" && path != "/sethealth/ok" {
                prop_assert_eq!(after, before, "{} changed the state", url);
            }
            Ok(())
        },
    );
}
