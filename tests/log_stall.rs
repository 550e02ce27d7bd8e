//! PID 1 never waits on its log. drainit's stdout and stderr are a pipe
//! that the test does not read and that the child has filled, as Docker's
//! blocking log mode leaves them when a log driver stalls. drainit must
//! still answer probes, log (by queueing), forward the stop and exit.
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use common::*;

/// Bytes waiting in the pipe.
fn pipe_bytes(fd: &OwnedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    usize::try_from(n).unwrap_or(0)
}

/// /readyz answers, and within a second.
fn assert_ready_fast(addr: SocketAddr, when: &str) {
    let asked = Instant::now();
    let r = try_request("GET", addr, "/readyz", &[])
        .unwrap_or_else(|e| panic!("{when}: /readyz failed: {e}"));
    assert_eq!(r.code, 200, "{when}: {r:?}");
    assert!(
        asked.elapsed() < secs(1.0),
        "{when}: took {:?}",
        asked.elapsed()
    );
}

/// A request the health server answers 400 and logs (at debug level).
fn send_malformed(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(secs(5.0))).unwrap();
    s.write_all(b"BROKEN\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
}

#[test]
fn a_stalled_log_pipe_delays_nothing() {
    if !require("PID namespaces", can_unshare(), "drainit must run as PID 1") {
        return;
    }
    let (reader, writer) = nix::unistd::pipe().unwrap();
    let files = TempDir::new("stall");
    let (out, ready) = (files.arg("signals"), files.arg("ready"));
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let health = addr.to_string();
    let sigrec = sigrec_arg();
    // A job of the child fills the pipe and stays blocked writing to it.
    let script = "head -c 70000 /dev/zero & exec \"$0\" \"$@\"";
    let mut init = Init::new(&[
        "-vv",
        "--health-addr",
        &health,
        "--drain-delay",
        "1",
        "--",
        "sh",
        "-c",
        script,
        &sigrec,
        "--out",
        &out,
        "--ready",
        &ready,
    ])
    .log_to(writer)
    .start();
    wait_for_file(&files.path("ready"), secs(10.0));
    // Full means the job is blocked in pipe_write with most of it written.
    wait_for(secs(10.0), "the child to fill the pipe", || {
        init.descendants().iter().any(|(pid, _)| {
            std::fs::read_to_string(format!("/proc/{pid}/wchan"))
                .is_ok_and(|w| w.ends_with("pipe_write"))
        }) && pipe_bytes(&reader) > 60_000
    });
    wait_for_health(addr);
    assert_ready_fast(addr, "with the log pipe full");
    for _ in 0..20 {
        send_malformed(addr);
    }
    assert_ready_fast(addr, "after 20 logged bad requests");

    let sent = Instant::now();
    init.signal(libc::SIGTERM);
    let seen = wait_for_signal(&files.path("signals"), libc::SIGTERM, secs(10.0));
    let waited = seen - sent;
    assert!(
        waited >= secs(0.9) && waited < secs(5.0),
        "SIGTERM reached the child after {waited:?}, want the 1 s drain delay"
    );

    // Once somebody reads the pipe again, drainit's queued lines come out
    // whole and it exits with the child's status.
    let drained = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = std::fs::File::from(reader).read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    });
    assert_eq!(init.code(secs(15.0)), 0);
    let log = drained.join().unwrap();
    for line in [
        "drainit: info: state ready -> draining: SIGTERM received",
        "drainit: info: state draining -> stopping: drain wait over",
        "drainit: debug: bad request from 127.0.0.1",
    ] {
        assert!(log.contains(line), "the log lacks {line:?}");
    }
    assert!(
        !log.contains("log lines dropped"),
        "nothing needed dropping"
    );
}
