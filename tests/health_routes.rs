//! The health endpoint's paths, codes, bodies and headers in every state
//! of the drain machine, asked over real HTTP of drainit running as PID 1.
mod common;

use std::net::SocketAddr;

use common::*;

const JSON_PATHS: [&str; 4] = ["/livez", "/readyz", "/health", "/healthz"];

/// GETs `path`, checks the code, the JSON Content-Type and the "status"
/// member, and returns the document.
fn expect(addr: SocketAddr, path: &str, code: u16, status: &str) -> Value {
    let r = request("GET", addr, path, &[]);
    assert_eq!(r.code, code, "GET {path}: {r:?}");
    let doc = r.json();
    assert_eq!(doc["status"].as_str(), Some(status), "GET {path}: {r:?}");
    assert_eq!(
        r.header("Cache-Control"),
        Some("no-store"),
        "health answers must not be cached: {r:?}"
    );
    doc
}

/// The state every probe path reports (readyz/livez/health carry "state").
fn expect_state(addr: SocketAddr, path: &str, code: u16, status: &str, state: &str) {
    let doc = expect(addr, path, code, status);
    assert_eq!(doc["state"].as_str(), Some(state), "GET {path}: {doc:?}");
}

#[test]
fn every_path_while_ready() {
    let sup = start_sigrec(&["--drain-delay", "30"], &[]);
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));

    expect_state(addr, "/livez", 200, "healthy", "ready");
    expect_state(addr, "/readyz", 200, "healthy", "ready");
    expect_state(addr, "/health", 200, "healthy", "ready");
    let healthz = expect(addr, "/healthz", 200, "healthy");
    assert_eq!(healthz["checks"], Value::Array(vec![]), "{healthz:?}");
    // A query string does not change the path.
    expect_state(addr, "/readyz?verbose=1", 200, "healthy", "ready");

    let status = status_doc(addr);
    assert_eq!(status["state"].as_str(), Some("ready"));
    let child = status["child_pid"].as_f64().expect("child_pid is a number");
    assert!(child >= 2.0, "child pid {child}");
    assert!(status["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(status["drains"].as_f64(), Some(0.0));
    assert!(
        status.get("drain").is_some() && status["drain"] == Value::Null,
        "{status:?}"
    );
    assert_eq!(status["checks"], Value::Array(vec![]));

    let metrics = request("GET", addr, "/metrics", &[]);
    assert_eq!(metrics.code, 200);
    assert!(
        metrics
            .header("Content-Type")
            .is_some_and(|t| t.starts_with("text/plain") && t.contains("version=0.0.4")),
        "{metrics:?}"
    );

    // HEAD: same status and headers as GET, no body.
    for path in JSON_PATHS.iter().chain(&["/status", "/metrics"]) {
        let get = request("GET", addr, path, &[]);
        let head = request("HEAD", addr, path, &[]);
        assert_eq!(head.code, get.code, "HEAD {path}: {head:?}");
        assert_eq!(head.body, "", "HEAD {path} must have no body: {head:?}");
        assert_eq!(
            head.header("Content-Type"),
            get.header("Content-Type"),
            "HEAD {path}"
        );
        if JSON_PATHS.contains(path) {
            assert_eq!(
                head.header("Content-Length"),
                Some(get.body.len().to_string().as_str()),
                "HEAD {path} announces the GET body's length"
            );
        }
    }

    // Unknown paths: 404 with a JSON body; no normalisation.
    for path in [
        "/",
        "/nope",
        "/readyz/",
        "/READYZ",
        "//readyz",
        "/sethealth",
        "/sethealth/maybe",
        "//sethealth/ko",
        "/sethealth/ok/../ko",
    ] {
        let r = request("GET", addr, path, &[]);
        assert_eq!(r.code, 404, "GET {path}: {r:?}");
        assert!(r.json().get("error").is_some(), "{r:?}");
    }

    // Wrong methods: 405 with Allow.
    for path in JSON_PATHS.iter().chain(&["/status", "/metrics"]) {
        for method in ["POST", "PUT", "DELETE"] {
            let r = request(method, addr, path, &[]);
            assert_eq!(r.code, 405, "{method} {path}: {r:?}");
            assert_eq!(r.header("Allow"), Some("GET, HEAD"), "{method} {path}");
            assert!(r.json().get("error").is_some());
        }
    }
    for path in ["/sethealth/ko", "/sethealth/ok"] {
        for method in ["HEAD", "PUT", "DELETE"] {
            let r = request(method, addr, path, &[]);
            assert_eq!(r.code, 405, "{method} {path}: {r:?}");
            assert_eq!(r.header("Allow"), Some("GET, POST"), "{method} {path}");
        }
    }
    // None of that changed anything.
    assert_eq!(state_of(addr), "ready");
    expect_state(addr, "/readyz", 200, "healthy", "ready");
    assert!(recorded(&sup.out).is_empty(), "the child was signalled");
}

#[test]
fn starting_and_unready_states() {
    let files = TempDir::new("ready-file");
    let flag = files.arg("app-ready");
    let sup = start_sigrec(&["--ready-file", &flag, "--check-interval", "0.1"], &[]);
    let addr = sup.addr;

    // starting: alive but not routable, every check reported.
    assert_eq!(state_of(addr), "starting");
    expect_state(addr, "/livez", 200, "healthy", "starting");
    expect_state(addr, "/readyz", 503, "unhealthy", "starting");
    expect_state(addr, "/health", 503, "unhealthy", "starting");
    wait_for(secs(10.0), "the ready-file check to report", || {
        status_doc(addr)["checks"] != Value::Array(vec![])
    });
    let healthz = expect(addr, "/healthz", 503, "unhealthy");
    let Value::Array(checks) = &healthz["checks"] else {
        panic!("checks is not an array: {healthz:?}")
    };
    assert_eq!(checks.len(), 1, "{healthz:?}");
    assert_eq!(metric(addr, "drainit_state{state=\"starting\"}"), Some(1.0));
    assert_eq!(metric(addr, "drainit_state{state=\"ready\"}"), Some(0.0));

    // The check passes: ready.
    std::fs::write(files.path("app-ready"), "").unwrap();
    wait_for_state(addr, "ready", secs(10.0));
    expect_state(addr, "/readyz", 200, "healthy", "ready");
    expect_state(addr, "/health", 200, "healthy", "ready");
    expect(addr, "/healthz", 200, "healthy");

    // It fails again (3 times in a row by default): unready.
    std::fs::remove_file(files.path("app-ready")).unwrap();
    wait_for_state(addr, "unready", secs(10.0));
    expect_state(addr, "/livez", 200, "healthy", "unready");
    expect_state(addr, "/readyz", 503, "unhealthy", "unready");
    expect_state(addr, "/health", 503, "unhealthy", "unready");
    expect(addr, "/healthz", 503, "unhealthy");
    assert_eq!(metric(addr, "drainit_state{state=\"unready\"}"), Some(1.0));
    assert!(recorded(&sup.out).is_empty(), "the child was signalled");
}

#[test]
fn draining_stopping_and_exited_states() {
    let files = TempDir::new("daemon");
    let daemon = files.arg("daemon-signals");
    // The child and an adopted daemon both ignore SIGTERM, so each state
    // lasts until the test moves on: draining (30 s wait), stopping (30 s
    // grace), exited (drainit waits the rest of the grace for the daemon).
    let sup = start_sigrec(
        &["--drain-delay", "30", "--grace", "30"],
        &["--ignore-term", "--daemon", &daemon, "--daemon-ignore-term"],
    );
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    let child_ns_pid = status_doc(addr)["child_pid"].as_f64().unwrap() as i32;

    // draining
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    sup.init.signal(libc::SIGTERM);
    wait_for_state(addr, "draining", secs(10.0));
    expect_state(addr, "/livez", 200, "healthy", "draining");
    expect_state(addr, "/readyz", 503, "draining", "draining");
    expect_state(addr, "/health", 503, "draining", "draining");
    expect(addr, "/healthz", 503, "unhealthy");
    let head = request("HEAD", addr, "/readyz", &[]);
    assert_eq!((head.code, head.body.as_str()), (503, ""), "{head:?}");
    let status = status_doc(addr);
    let drain = &status["drain"];
    assert_eq!(drain["reason"].as_str(), Some("SIGTERM"), "{status:?}");
    let started = drain["started_unix"].as_f64().unwrap();
    assert!(
        started >= before - 1.0 && started <= before + 10.0,
        "drain started at {started}, signal sent at {before}"
    );
    // /readyz, /health and HEAD /readyz were the probes answered so far.
    assert_eq!(drain["probes_answered"].as_f64(), Some(3.0), "{status:?}");
    assert_eq!(drain["waited_seconds"], Value::Null);
    assert_eq!(status["drains"].as_f64(), Some(1.0));
    assert_eq!(metric(addr, "drainit_state{state=\"draining\"}"), Some(1.0));
    assert_eq!(metric(addr, "drainit_drains_total"), Some(1.0));
    assert!(recorded(&sup.out).is_empty(), "SIGTERM must be held");

    // stopping: a second SIGTERM forwards the held one.
    sup.init.signal(libc::SIGTERM);
    wait_for_state(addr, "stopping", secs(10.0));
    wait_for_signal(&sup.out, libc::SIGTERM, secs(10.0));
    expect_state(addr, "/livez", 200, "healthy", "stopping");
    expect_state(addr, "/readyz", 503, "draining", "stopping");
    expect_state(addr, "/health", 503, "draining", "stopping");
    expect(addr, "/healthz", 503, "unhealthy");
    let status = status_doc(addr);
    assert_eq!(
        status["stop_signal"].as_str(),
        Some("SIGTERM"),
        "{status:?}"
    );
    let waited = status["drain"]["waited_seconds"].as_f64().unwrap();
    assert!((0.0..30.0).contains(&waited), "waited {waited}");
    assert_eq!(metric(addr, "drainit_state{state=\"stopping\"}"), Some(1.0));
    assert_eq!(
        metric(addr, "drainit_signals_forwarded_total{signal=\"SIGTERM\"}"),
        Some(1.0)
    );
    assert_eq!(metric(addr, "drainit_child_up"), Some(1.0));

    // exited: the child is killed; the adopted daemon keeps drainit (and
    // its endpoint) alive for the rest of the grace period.
    let child = host_pid(&sup.init, child_ns_pid).expect("the child's host pid");
    // SAFETY: kill has no memory preconditions; `child` is our test's child.
    assert_eq!(unsafe { libc::kill(child, libc::SIGKILL) }, 0);
    wait_for_state(addr, "exited", secs(10.0));
    expect_state(addr, "/livez", 503, "unhealthy", "exited");
    expect_state(addr, "/readyz", 503, "unhealthy", "exited");
    expect(addr, "/healthz", 503, "unhealthy");
    let status = status_doc(addr);
    assert_eq!(status["exit_code"].as_f64(), Some(137.0), "{status:?}");
    assert_eq!(status["child_pid"], Value::Null, "{status:?}");
    assert_eq!(metric(addr, "drainit_child_up"), Some(0.0));
    assert_eq!(metric(addr, "drainit_state{state=\"exited\"}"), Some(1.0));
}

#[test]
fn metrics_are_prometheus_text_with_every_listed_metric() {
    let sup = start_sigrec(
        &["--drain-delay", "0.3", "--grace", "30"],
        &["--orphans", "3", "--ignore-term"],
    );
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));

    // Zombies: sigrec's three orphans are reaped by drainit.
    wait_for(secs(10.0), "3 orphans to be reaped", || {
        metric(addr, "drainit_zombies_reaped_total") == Some(3.0)
    });
    // Signals forwarded, by signal.
    sup.init.signal(libc::SIGUSR1);
    wait_for_signal(&sup.out, libc::SIGUSR1, secs(10.0));
    wait_for(secs(10.0), "SIGUSR1 to be counted", || {
        metric(addr, "drainit_signals_forwarded_total{signal=\"SIGUSR1\"}") == Some(1.0)
    });
    // Health answers, by path and code.
    for _ in 0..2 {
        assert_eq!(get(addr, "/readyz").0, 200);
    }
    assert_eq!(get(addr, "/health").0, 200);
    assert_eq!(
        metric(
            addr,
            "drainit_health_responses_total{path=\"/readyz\",code=\"200\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            addr,
            "drainit_health_responses_total{path=\"/health\",code=\"200\"}"
        ),
        Some(1.0)
    );
    assert_eq!(metric(addr, "drainit_drain_duration_seconds"), Some(0.0));

    // A drain: readiness answers 503, the drain is counted and timed.
    sup.init.signal(libc::SIGTERM);
    wait_for_state(addr, "draining", secs(10.0));
    assert_eq!(get(addr, "/readyz").0, 503);
    wait_for_state(addr, "stopping", secs(10.0));
    assert_eq!(
        metric(
            addr,
            "drainit_health_responses_total{path=\"/readyz\",code=\"503\"}"
        ),
        Some(1.0)
    );
    assert_eq!(metric(addr, "drainit_drains_total"), Some(1.0));
    let took = metric(addr, "drainit_drain_duration_seconds").unwrap();
    assert!((0.25..5.0).contains(&took), "drain took {took}");
    assert_eq!(
        metric(addr, "drainit_signals_forwarded_total{signal=\"SIGTERM\"}"),
        Some(1.0)
    );

    // The whole document is well-formed exposition format: every sample
    // belongs to a family declared by HELP and TYPE, values are numbers,
    // and every state has a sample with exactly one set to 1.
    let body = request("GET", addr, "/metrics", &[]).body;
    let mut typed = std::collections::HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut states = 0.0;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').expect("HELP has a text");
            assert!(!text.is_empty(), "{line}");
            helped.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert!(matches!(kind, "gauge" | "counter"), "{line}");
            typed.insert(name.to_string(), kind.to_string());
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').expect("label is k=v");
                    assert!(
                        !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                        "{line}"
                    );
                }
            }
            assert!(typed.contains_key(name) && helped.contains(name), "{line}");
            if typed[name] == "counter" {
                assert!(value >= 0.0, "{line}");
            }
            if name == "drainit_state" {
                states += value;
            }
        }
    }
    assert_eq!(states, 1.0, "exactly one current state:\n{body}");
    for family in [
        "drainit_state",
        "drainit_child_up",
        "drainit_signals_forwarded_total",
        "drainit_zombies_reaped_total",
        "drainit_drains_total",
        "drainit_health_responses_total",
        "drainit_drain_duration_seconds",
    ] {
        assert!(typed.contains_key(family), "{family} missing:\n{body}");
    }
    for state in [
        "starting", "ready", "unready", "draining", "stopping", "exited",
    ] {
        assert!(
            body.contains(&format!("drainit_state{{state=\"{state}\"}} ")),
            "{state} missing:\n{body}"
        );
    }
}
