//! Every way to flip the drain state from outside without the token fails
//! (issue 6): other methods, path tricks, spoofed forwarding headers and
//! near-miss tokens, sent over real HTTP from a client in a network
//! namespace of its own (a non-loopback peer), against drainit as PID 1.
//! The same path tricks are also tried from loopback, where control is
//! allowed: there they must simply not be the control paths.
mod common;
mod hardening_common;

use std::net::SocketAddr;

use common::*;
use hardening_common::*;

const TOKEN: &str = "s3cret-Token-42";

/// A request with `Connection: close` and exactly the given header lines.
fn raw(method: &str, path: &str, headers: &[&str]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: drainit\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    if method == "POST" {
        r.push_str("Content-Length: 0\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Path tricks that some router might take for /sethealth/ko (or /ok).
const PATH_TRICKS: &[&str] = &[
    "//sethealth/ko",
    "/sethealth//ko",
    "/./sethealth/ko",
    "/sethealth/./ko",
    "/sethealth/ko/",
    "/sethealth/ko/.",
    "/sethealth/ok/../ko",
    "/sethealth/ko/../ok",
    "/readyz/../sethealth/ko",
    "/sethealth/%6bo",
    "/%73ethealth/ko",
    "/sethealth%2fko",
    "/sethealth/ko%2f",
    "/sethealth/ko%00",
    "/sethealth/ko%20",
    "/SETHEALTH/KO",
    "/SetHealth/ko",
    "/sethealth/ko;x",
    "/sethealth/ko;",
    "/sethealth/ko#",
    "/sethealth/ko\\",
    "/sethealth\\ko",
    "/sethealth/k%6f",
];

/// (what, method, path, header lines, expected code) tried from outside.
fn remote_attempts() -> Vec<(String, &'static str, String, Vec<String>, u16)> {
    let mut v = Vec::new();
    let mut add = |what: &str, method: &'static str, path: &str, headers: Vec<String>, code| {
        v.push((what.to_string(), method, path.to_string(), headers, code));
    };
    for path in ["/sethealth/ko", "/sethealth/ok"] {
        add("no token", "GET", path, vec![], 403);
        add("no token", "POST", path, vec![], 403);
        for method in [
            "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT",
        ] {
            let right = format!("Authorization: Bearer {TOKEN}");
            // Other methods are refused before the token is even looked at.
            add("other method", method, path, vec![], 405);
            add(
                "other method with the token",
                method,
                path,
                vec![right],
                405,
            );
        }
    }
    for path in PATH_TRICKS {
        add("path trick", "GET", path, vec![], 404);
        add("path trick", "POST", path, vec![], 404);
    }
    add(
        "absolute-form target",
        "GET",
        "http://127.0.0.1/sethealth/ko",
        vec![],
        400,
    );
    add(
        "token in the query",
        "GET",
        &format!("/sethealth/ko?token={TOKEN}"),
        vec![],
        403,
    );
    add(
        "token in the query",
        "GET",
        &format!("/sethealth/ko?access_token={TOKEN}&Authorization=Bearer+{TOKEN}"),
        vec![],
        403,
    );
    for spoof in [
        "X-Forwarded-For: 127.0.0.1",
        "X-Forwarded-For: 127.0.0.1, 127.0.0.1",
        "X-Real-IP: 127.0.0.1",
        "Forwarded: for=127.0.0.1",
        "Forwarded: for=\"[::1]\";proto=http",
        "X-Client-IP: 127.0.0.1",
        "True-Client-IP: 127.0.0.1",
        "CF-Connecting-IP: 127.0.0.1",
        "X-Originating-IP: 127.0.0.1",
        "X-Remote-Addr: 127.0.0.1",
        "X-Forwarded-Host: localhost",
        "X-Original-URL: /readyz",
        "X-Rewrite-URL: /readyz",
    ] {
        add(
            "spoofed header",
            "GET",
            "/sethealth/ko",
            vec![spoof.into()],
            403,
        );
    }
    let mut wrong_same_length = TOKEN.to_string().into_bytes();
    wrong_same_length[0] ^= 1;
    let wrong_same_length = String::from_utf8(wrong_same_length).unwrap();
    let mut last_wrong = TOKEN.to_string();
    last_wrong.pop();
    last_wrong.push('3');
    for auth in [
        format!("Bearer {wrong_same_length}"),
        format!("Bearer {last_wrong}"),
        format!("Bearer {}", TOKEN.to_uppercase()),
        format!("Bearer {}", TOKEN.to_lowercase()),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Bearer {TOKEN}x"),
        format!("Bearer {TOKEN} x"),
        format!("Bearer x{TOKEN}"),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        "Bearer  ".to_string(),
        format!("Bearer:{TOKEN}"),
        format!("Bearer\t{TOKEN}"),
        format!("Token {TOKEN}"),
        format!("Basic {TOKEN}"),
        TOKEN.to_string(),
        String::new(),
    ] {
        add(
            "wrong Authorization",
            "GET",
            "/sethealth/ko",
            vec![format!("Authorization: {auth}")],
            403,
        );
    }
    for header in [
        format!("Proxy-Authorization: Bearer {TOKEN}"),
        format!("X-Authorization: Bearer {TOKEN}"),
        format!("Cookie: token={TOKEN}"),
        format!("X-Control-Token: {TOKEN}"),
    ] {
        add(
            "token in another header",
            "GET",
            "/sethealth/ko",
            vec![header],
            403,
        );
    }
    let right = format!("Authorization: Bearer {TOKEN}");
    add(
        "two Authorization headers",
        "GET",
        "/sethealth/ko",
        vec![right.clone(), "Authorization: Bearer nope".into()],
        400,
    );
    add(
        "two Authorization headers",
        "GET",
        "/sethealth/ko",
        vec!["Authorization: Bearer nope".into(), right.clone()],
        400,
    );
    add(
        "two Authorization headers",
        "GET",
        "/sethealth/ko",
        vec![right.clone(), right],
        400,
    );
    add("fault injection", "GET", "/debug/panic", vec![], 404);
    v
}

/// A client in a network namespace of its own, and a health port on all
/// interfaces for drainit: its address from here and its --health-addr.
struct Remote {
    ns: NetNs,
    port: u16,
    addr: SocketAddr,
    health: String,
}

/// `None` (test skipped) where namespaces cannot be made outside CI.
fn remote() -> Option<Remote> {
    if !require(
        "network namespaces (root and iproute2)",
        can_netns(),
        "a non-loopback client needs its own network namespace",
    ) {
        return None;
    }
    let port = free_port();
    Some(Remote {
        ns: NetNs::hardening(),
        port,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        health: format!("0.0.0.0:{port}"),
    })
}

#[test]
fn control_from_outside_needs_the_token() {
    let Some(Remote {
        ns,
        port,
        addr,
        health,
    }) = remote()
    else {
        return;
    };
    let files = TempDir::new("control");
    let ready = files.arg("ready");
    let mut init = Init::new(&[
        "--health-addr",
        &health,
        "--control-token",
        TOKEN,
        "--drain-delay",
        "30",
        "--",
        &sigrec_arg(),
        "--ready",
        &ready,
    ])
    .start();
    wait_for_file(&files.path("ready"), secs(10.0));
    wait_for_health(addr);
    wait_for_state(addr, "ready", secs(10.0));

    let attempts = remote_attempts();
    let mut kinds: Vec<&str> = Vec::new();
    for (what, method, path, headers, code) in &attempts {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let got = ns.exchange(port, &raw(method, path, &headers));
        let label = format!("{what}: {method} {path} {headers:?}");
        assert_eq!(got.codes(), [*code], "{label}: {}", got.text());
        let state = state_of(addr);
        assert_eq!(state, "ready", "{label} changed the state");
        if !kinds.contains(&what.as_str()) {
            kinds.push(what);
        }
    }
    let doc = status_doc(addr);
    assert_eq!(doc["drains"].as_f64(), Some(0.0), "{doc:?}");
    assert!(
        control_answers(addr)
            .iter()
            .all(|l| l.contains("code=\"403\"")),
        "only refusals were counted: {:?}",
        control_answers(addr)
    );
    let refused = format!(
        "refused GET /sethealth/ko from {}: control needs loopback or the bearer token",
        ns.ns_ip
    );
    init.log_when("the refusals to be logged with the peer", |l| {
        l.contains(&refused)
    });
    eprintln!(
        "figures: {} control attempts from a non-loopback peer without the token ({} kinds) refused",
        attempts.len(),
        kinds.len()
    );

    // The positive control: the same path from the same peer with the
    // token works, so the refusals above were the token's doing.
    let right = format!("Authorization: Bearer {TOKEN}");
    let got = ns.exchange(port, &raw("POST", "/sethealth/ko", &[&right]));
    assert_eq!(got.codes(), [200], "{}", got.text());
    assert_eq!(state_of(addr), "draining");
    let got = ns.exchange(port, &raw("GET", "/sethealth/ok", &[&right]));
    assert_eq!(got.codes(), [200], "{}", got.text());
    assert_eq!(state_of(addr), "ready");
    assert!(init.alive(), "{}", init.stderr());
    init.signal(libc::SIGKILL);
}

/// From loopback control is allowed, so a trick that reached the control
/// code would flip the state there: every one must be a 404 or 405.
#[test]
fn path_tricks_and_methods_are_not_control_paths_even_on_loopback() {
    let mut sup = start_sigrec(&["--drain-delay", "30"], &[]);
    wait_for_state(sup.addr, "ready", secs(10.0));
    for path in PATH_TRICKS {
        for method in ["GET", "POST"] {
            let got = exchange(sup.addr, &raw(method, path, &[]), true, secs(5.0));
            assert_eq!(got.codes(), [404], "{method} {path}: {}", got.text());
        }
    }
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"] {
        for path in ["/sethealth/ko", "/sethealth/ok"] {
            let got = exchange(sup.addr, &raw(method, path, &[]), true, secs(5.0));
            assert_eq!(got.codes(), [405], "{method} {path}: {}", got.text());
            let allow = String::from_utf8_lossy(&got.bytes).contains("Allow: GET, POST");
            assert!(allow, "{method} {path}: {}", got.text());
        }
    }
    assert_untouched(&mut sup, "path tricks from loopback");
    // And the real path works from loopback (the positive control).
    let r = request("POST", sup.addr, "/sethealth/ko", &[]);
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(state_of(sup.addr), "draining");
}

/// An outsider must not decide how long drainit's log grows: refusals are
/// logged at most once a second, and the next line says how many were not.
#[test]
fn refusals_are_logged_at_most_once_a_second() {
    let Some(Remote {
        ns,
        port,
        addr,
        health,
    }) = remote()
    else {
        return;
    };
    let mut init = Init::new(&["--health-addr", &health, "--", "sleep", "60"]).start();
    wait_for_health(addr);
    let refused_lines = |init: &Init| -> Vec<String> {
        init.stderr()
            .lines()
            .filter(|l| l.contains("refused GET /sethealth/ko"))
            .map(str::to_string)
            .collect()
    };
    let started = std::time::Instant::now();
    for _ in 0..40 {
        let got = ns.exchange(port, &raw("GET", "/sethealth/ko", &[]));
        assert_eq!(got.codes(), [403], "{}", got.text());
    }
    let burst = started.elapsed().as_secs_f64();
    // The log is written by its own thread: wait for the first line.
    wait_for(secs(5.0), "the first refusal line", || {
        !refused_lines(&init).is_empty()
    });
    let lines = refused_lines(&init);
    assert!(
        lines.len() as f64 <= burst + 1.0,
        "40 refusals in {burst:.2}s gave {} log lines, the first: {:?}",
        lines.len(),
        lines.first()
    );
    std::thread::sleep(secs(1.1));
    let got = ns.exchange(port, &raw("GET", "/sethealth/ko", &[]));
    assert_eq!(got.codes(), [403], "{}", got.text());
    wait_for(secs(5.0), "the next refusal line", || {
        refused_lines(&init).len() > lines.len()
    });
    let last = refused_lines(&init).pop().unwrap();
    assert!(last.contains("more since the last line"), "{last}");
    assert!(init.alive());
}
