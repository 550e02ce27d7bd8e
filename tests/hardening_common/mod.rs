//! Helpers shared by the hardening tests (tests/hardening_*.rs): raw
//! sockets for hostile HTTP, drainit's own threads and memory from /proc,
//! drainit started through a wrapper, and a network namespace for clients
//! that are not on loopback. Built on tests/common.
#![allow(dead_code)]

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::*;

/// What came back for some bytes sent on a fresh connection.
#[derive(Debug)]
pub struct Exchange {
    /// Every byte read before the end.
    pub bytes: Vec<u8>,
    /// The server closed (EOF or reset) before `timeout`.
    pub closed: bool,
    /// The server reset the connection (it closed with our bytes unread).
    pub reset: bool,
}

impl Exchange {
    /// Status codes of the responses read, in order.
    pub fn codes(&self) -> Vec<u16> {
        responses(&self.bytes).iter().map(|r| r.0).collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Sends `payload` on a new connection, optionally shuts down our side,
/// and reads until the server closes or `timeout` passes. Write errors are
/// expected (the server may close before reading everything) and end the
/// sending, never the test.
pub fn exchange(addr: SocketAddr, payload: &[u8], half_close: bool, timeout: Duration) -> Exchange {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut sent_all = true;
    for chunk in payload.chunks(16 * 1024) {
        if s.write_all(chunk).is_err() {
            sent_all = false;
            break;
        }
    }
    if half_close && sent_all {
        let _ = s.shutdown(Shutdown::Write);
    }
    read_until_close(&mut s, timeout)
}

/// Reads from `s` until EOF, a reset, or `timeout`.
pub fn read_until_close(s: &mut TcpStream, timeout: Duration) -> Exchange {
    let deadline = Instant::now() + timeout;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Exchange {
                bytes,
                closed: false,
                reset: false,
            };
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => {
                return Exchange {
                    bytes,
                    closed: true,
                    reset: false,
                }
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                return Exchange {
                    bytes,
                    closed: true,
                    reset: true,
                }
            }
        }
    }
}

/// Splits raw HTTP/1.1 responses (framed by Content-Length) into
/// (status, body). Stops at the first thing that is not a whole response.
pub fn responses(mut raw: &[u8]) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let Some(code) = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
        else {
            break;
        };
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let body_end = (end + 4 + length).min(raw.len());
        out.push((
            code,
            String::from_utf8_lossy(&raw[end + 4..body_end]).into_owned(),
        ));
        raw = &raw[body_end..];
    }
    out
}

/// A numeric field of /proc/PID/status ("Threads", "VmRSS" in kB...).
pub fn proc_status(pid: i32, name: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field(&text, name)?.split_whitespace().next()?.parse().ok()
}

pub fn threads(pid: i32) -> u64 {
    proc_status(pid, "Threads").expect("drainit's thread count")
}

/// Resident memory in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    proc_status(pid, "VmRSS").expect("drainit's VmRSS")
}

/// Like `start_sigrec`, with drainit exec'd by `wrapper` (see
/// `Builder::start_through`) so it inherits what the wrapper sets up.
pub fn start_sigrec_through(wrapper: &[&str], opts: &[&str], sigrec_opts: &[&str]) -> Sup {
    let bind: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut program = wrapper.to_vec();
    program.push(DRAINIT);
    start_sigrec_with(
        bind,
        opts,
        sigrec_opts,
        &[],
        &program,
        Duration::from_secs(20),
    )
}

/// The main child's host pid, from drainit's /status.
pub fn child_host_pid(sup: &Sup) -> i32 {
    let ns_pid = status_doc(sup.addr)["child_pid"]
        .as_f64()
        .expect("child_pid in /status") as i32;
    host_pid(&sup.init, ns_pid).expect("the child's host pid")
}

/// Answers to /sethealth/* counted in /metrics (any code).
pub fn control_answers(addr: SocketAddr) -> Vec<String> {
    request("GET", addr, "/metrics", &[])
        .body
        .lines()
        .filter(|l| l.starts_with("drainit_health_responses_total{path=\"/sethealth/"))
        .map(str::to_string)
        .collect()
}

/// drainit is alive, /readyz answers 200, the state is still `ready`, no
/// drain ever started and no control request was ever honoured.
pub fn assert_untouched(sup: &mut Sup, after: &str) {
    assert!(
        sup.init.alive(),
        "drainit died after {after}; log:\n{}",
        sup.init.stderr()
    );
    let r = request("GET", sup.addr, "/readyz", &[]);
    assert_eq!(r.code, 200, "/readyz after {after}: {r:?}");
    let status = status_doc(sup.addr);
    assert_eq!(
        (status["state"].as_str(), status["drains"].as_f64()),
        (Some("ready"), Some(0.0)),
        "state after {after}: {status:?}"
    );
    let honoured: Vec<String> = control_answers(sup.addr)
        .into_iter()
        .filter(|l| l.contains("code=\"200\"") || l.contains("code=\"409\""))
        .collect();
    assert!(
        honoured.is_empty(),
        "control requests were honoured after {after}: {honoured:?}"
    );
}

// ---------------------------------------------------------------------------
// A client that is not on loopback: a network namespace (see
// `common::NetNs`) with its own name prefix and its own 10.214.0.0/16
// block, apart from health_remote.rs's.

impl NetNs {
    /// A namespace `drainit-hard-PID-N` with a veth pair in 10.214.0.0/16.
    pub fn hardening() -> NetNs {
        NetNs::create("drainit-hard", "dh", 214)
    }

    /// Raw bytes sent from inside the namespace (see [`exchange`]).
    pub fn exchange(&self, port: u16, payload: &[u8]) -> Exchange {
        let addr = self.target(port);
        self.run(|| exchange(addr, payload, true, Duration::from_secs(5)))
    }
}
