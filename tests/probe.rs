//! `drainit probe` (issue 4): the HEALTHCHECK command for images without
//! curl. Exit 0 healthy, 1 unhealthy, 2 usage error; one stdout line
//! saying what it saw.
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(10);

fn probe(args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut all = vec!["probe"];
    all.extend_from_slice(args);
    run_drainit(&all, env, Duration::from_secs(20))
}

/// The one line a probe printed, after checking it printed exactly one.
fn line(r: &Ran) -> &str {
    assert_eq!(r.stdout.lines().count(), 1, "not one line: {r:?}");
    r.stdout.trim_end()
}

fn assert_healthy(r: &Ran) -> &str {
    assert_eq!(r.code, 0, "{r:?}");
    let l = line(r);
    assert!(l.starts_with("healthy: "), "{r:?}");
    l
}

fn assert_unhealthy<'a>(r: &'a Ran, why: &str) -> &'a str {
    assert_eq!(r.code, 1, "{r:?}");
    let l = line(r);
    assert!(
        l.starts_with("unhealthy: ") && l.contains(why),
        "expected '{why}': {r:?}"
    );
    l
}

/// A loopback HTTP server on a test thread: answers 503 to the first
/// `fails` requests and 200 after, and keeps every request head.
struct Scripted {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Scripted {
    fn start(fails: usize) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, st) = (Arc::clone(&heads), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((mut conn, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut raw = Vec::new();
                let mut buf = [0u8; 1024];
                while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                    }
                }
                let n = {
                    let mut heads = h.lock().unwrap();
                    heads.push(String::from_utf8_lossy(&raw).into_owned());
                    heads.len()
                };
                let (code, body) = if n <= fails {
                    (503, "{\"status\":\"unhealthy\"}")
                } else {
                    (200, "{\"status\":\"healthy\"}")
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Scripted {
            addr,
            heads,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn closed_port() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[test]
fn probe_without_url_asks_the_local_readyz() {
    let s = start_sigrec(&[], &[]); // no checks: ready once the child runs
    assert_eq!(wait_for_readyz(s.addr, 200, T), "ready");
    let (addr, port) = (s.addr.to_string(), s.addr.port());
    let unspecified = format!(":{port}"); // asked on loopback
    let elsewhere = closed_port();
    for (args, env) in [
        (vec![], vec![("DRAINIT_HEALTH_ADDR", addr.as_str())]),
        (vec![], vec![("DRAINIT_HEALTH_ADDR", unspecified.as_str())]),
        (vec!["--addr", addr.as_str()], vec![]),
        (
            vec!["--addr", addr.as_str()],
            vec![("DRAINIT_HEALTH_ADDR", elsewhere.as_str())],
        ),
    ] {
        let r = probe(&args, &env);
        let l = assert_healthy(&r);
        let want = format!("healthy: 200 from http://127.0.0.1:{port}/readyz in ");
        assert!(
            l.starts_with(&want) && l.ends_with(" ms"),
            "{args:?} {env:?}: {l}"
        );
        assert_eq!(r.stderr, "", "{r:?}");
    }
}

#[test]
fn probe_follows_readiness_not_liveness() {
    let s = start_sigrec(&[], &[]);
    assert_eq!(wait_for_readyz(s.addr, 200, T), "ready");
    let addr = s.addr.to_string();
    let env = [("DRAINIT_HEALTH_ADDR", addr.as_str())];
    assert_healthy(&probe(&[], &env));
    assert_eq!(request("GET", s.addr, "/sethealth/ko", &[]).code, 200);
    let r = probe(&[], &env);
    assert_unhealthy(&r, &format!("503 from http://{addr}/readyz in "));
    assert!(line(&r).ends_with(" ms"), "{r:?}");
    // drainit is alive all along: the probe asks readiness.
    assert_eq!(request("GET", s.addr, "/livez", &[]).code, 200);
    assert_eq!(request("GET", s.addr, "/sethealth/ok", &[]).code, 200);
    assert_healthy(&probe(&[], &env));
}

#[test]
fn probe_of_a_closed_port_says_why() {
    let closed = closed_port();
    let r = probe(&[&format!("http://{closed}/ready")], &[]);
    assert_unhealthy(
        &r,
        &format!("cannot connect to {closed}: Connection refused"),
    );
    let r = probe(&["--addr", &closed], &[]);
    assert_unhealthy(&r, "Connection refused");
}

#[test]
fn probe_timeout_bounds_a_hung_endpoint() {
    let app = App::start(&[]);
    let r = probe(&[&app.url("/hang"), "--timeout", "0.5"], &[]);
    assert_unhealthy(&r, "timed out");
    assert!(
        r.took >= secs(0.45) && r.took < secs(2.5),
        "a 0.5 s timeout took {:?}",
        r.took
    );
}

#[test]
fn probe_attempts_retry_until_healthy_or_exhausted() {
    let server = Scripted::start(2);
    let r = probe(
        &[&server.url(), "--attempts", "5", "--interval", "0.1"],
        &[],
    );
    assert_healthy(&r);
    assert_eq!(server.heads().len(), 3, "two 503s, then 200");

    let server = Scripted::start(100);
    let r = probe(
        &[&server.url(), "--attempts", "3", "--interval", "0.2"],
        &[],
    );
    assert_unhealthy(&r, "503 from");
    assert!(line(&r).ends_with("(after 3 attempts)"), "{r:?}");
    assert_eq!(server.heads().len(), 3);
    assert!(
        r.took >= secs(0.4),
        "two intervals of 0.2 s took {:?}",
        r.took
    );

    // SiteHost's pattern: the app becomes ready while the probe retries.
    let app = App::start(&["--start-delay", "2000"]);
    assert_eq!(app.ready_code(), 503);
    let r = probe(
        &[&app.url("/ready"), "--attempts", "100", "--interval", "0.1"],
        &[],
    );
    assert_healthy(&r);
    assert!(r.took >= secs(0.1), "the first attempt cannot have passed");
}

#[test]
fn probe_sends_headers() {
    let app = App::start(&[]);
    let r = probe(&[&app.url("/tls-only")], &[]);
    assert_unhealthy(&r, "X-Forwarded-Proto");
    let r = probe(
        &[
            &app.url("/tls-only"),
            "--header",
            "X-Forwarded-Proto: https",
        ],
        &[],
    );
    assert!(assert_healthy(&r).starts_with("healthy: 200 "), "{r:?}");

    let server = Scripted::start(0);
    let r = probe(&[&server.url(), "--header", "X-Probe-Test: yes"], &[]);
    assert_healthy(&r);
    let heads = server.heads();
    assert!(heads[0].contains("\r\nX-Probe-Test: yes\r\n"), "{heads:?}");
    // How drainit's own probes can be told from others'.
    let agent = format!(
        "\r\nUser-Agent: drainit-probe/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(heads[0].contains(&agent), "{heads:?}");
}

/// Many frameworks answer their health route chunked; an answer cut short
/// is never healthy, whatever its status.
#[test]
fn probe_reads_whole_answers_only() {
    let Some(py) = PyHttp::start() else { return };
    for te in ["chunked", "length", "eof"] {
        let up = py.url("{\"status\":\"UP\"}", te);
        assert_healthy(&probe(&[&up, "--expect-json"], &[]));
        // The status is read from the decoded body, not found in the bytes.
        let down = py.url("{\"status\":\"DOWN\"}", te);
        assert_unhealthy(&probe(&[&down, "--expect-json"], &[]), "\"DOWN\"");
    }
    for te in ["short", "chunked-short"] {
        let cut = py.url("{\"status\":\"UP\"}", te);
        assert_unhealthy(&probe(&[&cut], &[]), "cut short");
    }
}

#[test]
fn probe_expect_json() {
    let app = App::start(&[]);
    assert_healthy(&probe(&[&app.url("/ready"), "--expect-json"], &[]));
    let r = probe(&[&app.url("/"), "--expect-json"], &[]);
    assert_unhealthy(&r, "200 from");
    assert!(line(&r).contains("body is not JSON"), "{r:?}");
    assert_healthy(&probe(&[&app.url("/")], &[]));
}

/// Only the top-level `status` decides, read as JSON: a nested healthy
/// status once made an unhealthy answer pass.
#[test]
fn probe_expect_json_reads_the_top_level_status() {
    let Some(py) = PyHttp::start() else { return };
    for (body, healthy) in JSON_VERDICTS {
        let url = py.url(body, "length");
        let r = probe(&[&url, "--expect-json"], &[]);
        if healthy {
            assert_healthy(&r);
        } else {
            assert_unhealthy(&r, "200 from");
        }
        // Without --expect-json any complete 2xx answer is healthy.
        assert_healthy(&probe(&[&url], &[]));
    }
}

#[test]
fn probe_tcp() {
    let app = App::start(&[]);
    let open = app.addr.to_string();
    let r = probe(&["--tcp", &open], &[]);
    assert!(
        assert_healthy(&r).contains(&format!("{open} accepted a connection")),
        "{r:?}"
    );
    let closed = closed_port();
    assert_unhealthy(
        &probe(&["--tcp", &closed], &[]),
        &format!("cannot connect to {closed}"),
    );
}

#[test]
fn probe_file_age() {
    let dir = TempDir::new("probefile");
    let file = dir.arg("alive");
    std::fs::write(&file, "").unwrap();
    let r = probe(&["--file", &file, "--max-age", "60"], &[]);
    assert!(assert_healthy(&r).contains("modified"), "{r:?}");
    let touched = Command::new("touch")
        .args(["-d", "1 hour ago", &file])
        .status()
        .unwrap();
    assert!(touched.success());
    let r = probe(&["--file", &file, "--max-age", "60"], &[]);
    assert_unhealthy(&r, "(max 60.0s)");
    assert_unhealthy(
        &probe(&["--file", &dir.arg("missing"), "--max-age", "60"], &[]),
        "No such file",
    );
}

#[test]
fn probe_usage_errors_exit_2() {
    for args in [
        &["ftp://x"][..],
        &["localhost:80"],
        &["--bogus"],
        &["--attempts", "0"],
        &["--timeout", "0"],
        &["--interval", "soon"],
        &["--header", "no colon"],
        &["--tcp", "nohostport"],
        &["http://127.0.0.1:1/", "--tcp", "127.0.0.1:1"],
        &["http://127.0.0.1:1/", "http://127.0.0.1:2/"],
    ] {
        let r = probe(args, &[]);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert_eq!(r.stdout, "", "{args:?}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {r:?}");
        assert!(r.stderr.starts_with("drainit probe: "), "{args:?}: {r:?}");
    }
}

#[test]
fn probe_localhost_falls_back_from_ipv6_to_ipv4() {
    let dir = TempDir::new("hosts");
    std::fs::write(dir.path("hosts"), DOCKER_HOSTS).unwrap();
    let Some(prefix) = with_hosts(&dir.path("hosts")) else {
        return;
    };
    let app = App::start(&[]); // 127.0.0.1 only, as an app on 0.0.0.0 is
    let port = app.addr.port();
    let (url, tcp) = (
        format!("http://localhost:{port}/ready"),
        format!("localhost:{port}"),
    );
    for args in [vec![url.as_str()], vec!["--tcp", tcp.as_str()]] {
        let mut argv: Vec<&str> = prefix.iter().map(String::as_str).collect();
        argv.extend([DRAINIT, "probe"]);
        argv.extend_from_slice(&args);
        let r = run_argv(&argv, &[], Duration::from_secs(20));
        assert_healthy(&r);
    }
}
