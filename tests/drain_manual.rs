//! Manual drain (/sethealth/ko, /sethealth/ok) for scale-down scripts, and
//! how a stop signal joins it; --drain-status 404.
mod common;

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::*;

fn control(method: &str, addr: SocketAddr, path: &str) -> Value {
    let r = request(method, addr, path, &[]);
    assert_eq!(r.code, 200, "{method} {path}: {r:?}");
    let doc = r.json();
    assert_eq!(doc["status"].as_str(), Some("ok"), "{r:?}");
    doc
}

fn readyz(addr: SocketAddr) -> u16 {
    get(addr, "/readyz").0
}

#[test]
fn ko_and_ok_flip_readiness_by_get_and_post_without_signalling() {
    let sup = start_sigrec(&["--drain-delay", "0.2"], &[]);
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));

    for method in ["GET", "POST"] {
        let doc = control(method, addr, "/sethealth/ko");
        assert_eq!(doc["state"].as_str(), Some("draining"), "{method}");
        assert_eq!(readyz(addr), 503, "{method} /sethealth/ko");
        assert_eq!(get(addr, "/health").0, 503);
        assert_eq!(get(addr, "/livez").0, 200, "the child is still alive");
        let status = status_doc(addr);
        assert_eq!(status["drain"]["reason"].as_str(), Some("manual"));
        // ko again is harmless.
        control(method, addr, "/sethealth/ko");
        assert_eq!(state_of(addr), "draining");

        let doc = control(method, addr, "/sethealth/ok");
        assert_eq!(doc["state"].as_str(), Some("ready"), "{method}");
        assert_eq!(readyz(addr), 200, "{method} /sethealth/ok");
        assert_eq!(status_doc(addr)["drain"], Value::Null);
        // ok when not drained is harmless too.
        control(method, addr, "/sethealth/ok");
        assert_eq!(readyz(addr), 200);
    }
    assert_eq!(status_doc(addr)["drains"].as_f64(), Some(2.0));

    // A manual drain holds no signal: past its 0.2 s "wait" nothing is
    // sent, and the child never hears of it.
    control("GET", addr, "/sethealth/ko");
    std::thread::sleep(secs(0.6));
    assert_eq!(state_of(addr), "draining");
    assert!(
        recorded(&sup.out).is_empty(),
        "a manual drain signalled the child: {:?}",
        recorded(&sup.out)
    );
}

#[test]
fn sigterm_after_a_manual_drain_past_the_wait_forwards_at_once() {
    let mut sup = start_sigrec(&["--drain-delay", "3"], &["--term-exit", "5"]);
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    control("POST", addr, "/sethealth/ko");
    // Wait until the manual drain is older than the 3 s drain delay, by
    // drainit's own account of when it began.
    let started = status_doc(addr)["drain"]["started_unix"].as_f64().unwrap();
    wait_for(secs(10.0), "the manual drain to outlast the delay", || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            > started + 3.3
    });
    assert!(recorded(&sup.out).is_empty());

    let sent = Instant::now();
    sup.init.signal(libc::SIGTERM);
    let seen = wait_for_signal(&sup.out, libc::SIGTERM, secs(10.0));
    assert!(
        seen - sent < secs(2.0),
        "SIGTERM took {:?}: the proxy stopped routing long ago, a fresh 3 s wait is wrong",
        seen - sent
    );
    assert_eq!(sup.init.code(secs(10.0)), 5, "{}", sup.init.stderr());
}

#[test]
fn sigterm_early_in_a_manual_drain_waits_for_the_rest_of_it() {
    let mut sup = start_sigrec(&["--drain-delay", "1.5"], &[]);
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    let ko = Instant::now();
    control("GET", addr, "/sethealth/ko");
    sup.init.signal(libc::SIGTERM);
    // The signal is held; the drain can no longer be cancelled.
    wait_for(
        secs(5.0),
        "the held SIGTERM to refuse /sethealth/ok",
        || request("GET", addr, "/sethealth/ok", &[]).code == 409,
    );
    let refused = request("POST", addr, "/sethealth/ok", &[]);
    assert_eq!(refused.code, 409, "{refused:?}");
    assert!(refused.json().get("error").is_some());
    assert_eq!(readyz(addr), 503);

    let seen = wait_for_signal(&sup.out, libc::SIGTERM, secs(10.0));
    let since_ko = seen - ko;
    assert!(
        since_ko >= secs(1.4) && since_ko <= secs(6.0),
        "SIGTERM reached the child {since_ko:?} after the manual drain began; expected its 1.5 s wait"
    );
    assert_eq!(sup.init.code(secs(10.0)), 0, "{}", sup.init.stderr());
}

#[test]
fn control_is_refused_once_stopping() {
    let sup = start_sigrec(
        &["--drain-delay", "30", "--grace", "30"],
        &["--ignore-term"],
    );
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    sup.init.signal(libc::SIGINT);
    wait_for_state(addr, "stopping", secs(10.0));
    for path in ["/sethealth/ko", "/sethealth/ok"] {
        let r = request("GET", addr, path, &[]);
        assert_eq!(r.code, 409, "{path}: {r:?}");
        assert_eq!(r.json()["state"].as_str(), Some("stopping"));
    }
    assert_eq!(state_of(addr), "stopping");
}

#[test]
fn drain_status_404_for_haproxy_soft_drain() {
    let sup = start_sigrec(
        &["--drain-status", "404", "--drain-delay", "30"],
        &["--ignore-term"],
    );
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    assert_eq!(readyz(addr), 200);

    // Manual drain answers 404...
    control("GET", addr, "/sethealth/ko");
    for path in ["/readyz", "/health"] {
        let r = request("GET", addr, path, &[]);
        assert_eq!(r.code, 404, "{path}: {r:?}");
        assert_eq!(r.json()["status"].as_str(), Some("draining"));
    }
    assert_eq!(get(addr, "/livez").0, 200);
    assert_eq!(get(addr, "/healthz").0, 503);
    control("GET", addr, "/sethealth/ok");
    assert_eq!(readyz(addr), 200);

    // ...and so does a signal drain, and the stop after it.
    sup.init.signal(libc::SIGTERM);
    wait_for_state(addr, "draining", secs(10.0));
    assert_eq!(readyz(addr), 404);
    let head = request("HEAD", addr, "/readyz", &[]);
    assert_eq!((head.code, head.body.as_str()), (404, ""));
    sup.init.signal(libc::SIGTERM);
    wait_for_state(addr, "stopping", secs(10.0));
    assert_eq!(readyz(addr), 404);
    // Unknown paths are still plain 404s, not "draining".
    let r = request("GET", addr, "/nope", &[]);
    assert_eq!(r.code, 404);
    assert!(r.json().get("error").is_some());
}

#[test]
fn drain_status_503_is_the_default() {
    let sup = start_sigrec(&["--drain-delay", "30"], &[]);
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    control("GET", addr, "/sethealth/ko");
    assert_eq!(readyz(addr), 503);
}
