//! Helpers shared by the hardening tests (tests/hardening_*.rs): raw
//! sockets for hostile HTTP, drainit's own threads and memory from /proc,
//! drainit started through a wrapper, and a network namespace for clients
//! that are not on loopback. Built on tests/common.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
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
    let files = TempDir::new("sigrec");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (out, ready) = (files.arg("signals"), files.arg("ready"));
    let sigrec = sigrec_arg();
    let addr_arg = addr.to_string();
    let mut args = vec!["--health-addr", addr_arg.as_str()];
    args.extend_from_slice(opts);
    args.extend([
        "--",
        sigrec.as_str(),
        "--out",
        out.as_str(),
        "--ready",
        ready.as_str(),
    ]);
    args.extend_from_slice(sigrec_opts);
    let mut init = Init::new(&args).start_through(wrapper);
    let ready_path = files.path("ready");
    wait_for(Duration::from_secs(20), "sigrec to be ready", || {
        ready_path.exists() || !init.alive()
    });
    assert!(
        init.alive(),
        "drainit exited early; log:\n{}",
        init.stderr()
    );
    wait_for_health(addr);
    Sup {
        init,
        addr,
        out: files.path("signals"),
        files,
    }
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
// A client that is not on loopback: a network namespace of our own, joined
// to the root namespace by a veth pair (the approach of health_remote.rs,
// with its own name prefix and its own 10.214.0.0/16 block).

/// Whether this machine lets the test build network namespaces.
pub fn can_netns() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace `drainit-hard-PID-N` with a veth pair; removed
/// (with the pair) when dropped, also when the test panics.
pub struct NetNs {
    pub name: String,
    host_if: String,
    /// drainit's address as the namespace sees it.
    pub host_ip: String,
    /// The client's (non-loopback) address.
    pub ns_ip: String,
}

impl NetNs {
    pub fn create() -> NetNs {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let taken = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-4", "-o", "addr", "show"])
                .output()
                .expect("ip addr show")
                .stdout,
        )
        .into_owned();
        let (host_ip, ns_ip) = (0..16384u32)
            .map(|k| ((pid.wrapping_mul(8) + n * 2 + k * 97) % 16384) * 4)
            .map(|base| {
                let at = |o: u32| format!("10.214.{}.{}", (base + o) >> 8, (base + o) & 255);
                (at(1), at(2))
            })
            .find(|(h, c)| !taken.contains(&format!("{h}/")) && !taken.contains(&format!("{c}/")))
            .expect("a free /30 in 10.214.0.0/16");
        let ns = NetNs {
            name: format!("drainit-hard-{pid}-{n}"),
            host_if: format!("dh{pid}x{n}h"),
            host_ip,
            ns_ip,
        };
        let ns_if = format!("dh{pid}x{n}n");
        assert!(ns.host_if.len() <= 15 && ns_if.len() <= 15);
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{}/30", ns.ns_ip),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &ns.name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread that joined the namespace: sockets it creates
    /// belong to the namespace for good, whichever thread uses them later.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = File::open(format!("/run/netns/{}", self.name)).expect("open the netns");
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid namespace fd changes only this
                // thread's network namespace; the thread ends with the scope.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// drainit's port as reached from inside the namespace.
    pub fn target(&self, port: u16) -> SocketAddr {
        format!("{}:{port}", self.host_ip).parse().unwrap()
    }

    /// Raw bytes sent from inside the namespace (see [`exchange`]).
    pub fn exchange(&self, port: u16, payload: &[u8]) -> Exchange {
        let addr = self.target(port);
        self.run(|| exchange(addr, payload, true, Duration::from_secs(5)))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}
