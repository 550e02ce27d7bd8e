//! Control from a non-loopback address: /sethealth/* is refused (403)
//! unless the peer sends the control token; nothing else bypasses that.
//!
//! Another 127.x source address would still be loopback, so the client
//! runs in a network namespace of its own, joined to the root namespace by
//! a veth pair with a private /30; drainit listens on 0.0.0.0 in the root
//! namespace and sees the client's 10.213.x.y address.
mod common;

use std::net::SocketAddr;

use common::*;

const TOKEN: &str = "s3cret-Token-42";

/// Whether a non-loopback client can be had here (skips the test outside
/// CI when it cannot).
fn netns_possible() -> bool {
    require(
        "ip and root",
        can_netns(),
        "network namespaces for a non-loopback client",
    )
}

/// This file's namespace: `drainit-test-PID-N` in 10.213.0.0/16 (the
/// hardening tests use 10.214.0.0/16).
fn netns() -> NetNs {
    NetNs::create("drainit-test", "dt", 213)
}

/// drainit as PID 1 listening on all interfaces, supervising sigrec.
fn start(opts: &[&str], env: &[(&str, &str)]) -> (Sup, u16) {
    let port = free_port();
    let sup = start_sigrec_bound(format!("0.0.0.0:{port}").parse().unwrap(), opts, &[], env);
    wait_for_state(sup.addr, "ready", secs(10.0));
    (sup, port)
}

/// The state as seen from loopback, plus the readiness seen remotely.
/// `drains` is how many drains legitimate requests have started so far.
fn unchanged(sup: &Sup, ns: &NetNs, port: u16, drains: f64) {
    let status = status_doc(sup.addr);
    assert_eq!(status["state"].as_str(), Some("ready"), "{status:?}");
    assert_eq!(status["drains"].as_f64(), Some(drains), "{status:?}");
    assert_eq!(ns.request("GET", port, "/readyz", &[]).code, 200);
}

/// (method, path, headers) of one request.
type Attempt<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

#[test]
fn remote_control_is_refused_without_a_token() {
    if !netns_possible() {
        return;
    }
    let ns = netns();
    let (sup, port) = start(&["--drain-delay", "30"], &[]);

    // Reads are open to everyone (the proxy and the kubelet are remote).
    let r = ns.request("GET", port, "/readyz", &[]);
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(ns.request("GET", port, "/status", &[]).code, 200);

    let bearer = format!("Bearer {TOKEN}");
    let attempts: Vec<Attempt> = vec![
        ("GET", "/sethealth/ko", vec![]),
        ("POST", "/sethealth/ko", vec![]),
        (
            "GET",
            "/sethealth/ko",
            vec![("X-Forwarded-For", "127.0.0.1")],
        ),
        ("GET", "/sethealth/ko", vec![("X-Real-IP", "127.0.0.1")]),
        ("GET", "/sethealth/ko", vec![("Forwarded", "for=127.0.0.1")]),
        ("GET", "/sethealth/ko", vec![("Host", "localhost")]),
        // No token is configured, so none is valid.
        (
            "GET",
            "/sethealth/ko",
            vec![("Authorization", bearer.as_str())],
        ),
        ("GET", "/sethealth/ok", vec![]),
    ];
    for (method, path, headers) in &attempts {
        let r = ns.request(method, port, path, headers);
        assert_eq!(r.code, 403, "{method} {path} {headers:?}: {r:?}");
        assert!(r.json().get("error").is_some(), "{r:?}");
        unchanged(&sup, &ns, port, 0.0);
    }
    let refused = format!("refused GET /sethealth/ko from {}", ns.ns_ip);
    sup.init
        .log_when("refusals to be logged with the peer", |l| {
            l.contains(&refused)
        });
    assert_eq!(
        metric(
            sup.addr,
            "drainit_health_responses_total{path=\"/sethealth/ko\",code=\"403\"}"
        ),
        Some(7.0)
    );
    // The client subcommand, run remotely, is refused the same way.
    let remote = format!("{}:{port}", ns.host_ip);
    let (code, _, err) = ns.drainit(&["drain", "--addr", &remote], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("403"), "{err}");
    unchanged(&sup, &ns, port, 0.0);

    // Loopback is trusted; the remote client sees its effect but still
    // cannot undo it.
    assert_eq!(get(sup.addr, "/sethealth/ko").0, 200);
    assert_eq!(ns.request("GET", port, "/readyz", &[]).code, 503);
    assert_eq!(ns.request("POST", port, "/sethealth/ok", &[]).code, 403);
    assert_eq!(get(sup.addr, "/readyz").0, 503);
    assert!(recorded(&sup.out).is_empty(), "the child was signalled");
}

#[test]
fn remote_control_with_the_token() {
    if !netns_possible() {
        return;
    }
    let ns = netns();
    let (sup, port) = start(&["--drain-delay", "30", "--control-token", TOKEN], &[]);

    // Wrong credentials: same length but one byte off (first, last),
    // prefix, longer, other schemes, and a forwarding header on top.
    let mut last = TOKEN.to_string();
    last.replace_range(TOKEN.len() - 1.., "3");
    let mut first = TOKEN.to_string();
    first.replace_range(..1, "S");
    assert_eq!((last.len(), first.len()), (TOKEN.len(), TOKEN.len()));
    let wrong = [
        format!("Bearer {last}"),
        format!("Bearer {first}"),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Bearer {TOKEN}x"),
        "Bearer ".to_string(),
        format!("Basic {TOKEN}"),
        TOKEN.to_string(),
    ];
    for auth in &wrong {
        for method in ["GET", "POST"] {
            let r = ns.request(method, port, "/sethealth/ko", &[("Authorization", auth)]);
            assert_eq!(r.code, 403, "{method} with {auth:?}: {r:?}");
            unchanged(&sup, &ns, port, 0.0);
        }
    }
    let wrong_auth = format!("Bearer {last}");
    let r = ns.request(
        "GET",
        port,
        "/sethealth/ko",
        &[
            ("Authorization", &wrong_auth),
            ("X-Forwarded-For", "127.0.0.1"),
        ],
    );
    assert_eq!(r.code, 403, "{r:?}");
    assert_eq!(ns.request("GET", port, "/sethealth/ko", &[]).code, 403);
    unchanged(&sup, &ns, port, 0.0);

    // The right token works, by GET and POST.
    let auth = format!("Bearer {TOKEN}");
    let r = ns.request("GET", port, "/sethealth/ko", &[("Authorization", &auth)]);
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(r.json()["state"].as_str(), Some("draining"));
    assert_eq!(ns.request("GET", port, "/readyz", &[]).code, 503);
    assert_eq!(state_of(sup.addr), "draining");
    // Without it, undoing is still refused.
    assert_eq!(ns.request("POST", port, "/sethealth/ok", &[]).code, 403);
    assert_eq!(state_of(sup.addr), "draining");
    let r = ns.request("POST", port, "/sethealth/ok", &[("Authorization", &auth)]);
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(ns.request("GET", port, "/readyz", &[]).code, 200);

    // The client subcommand sends the token (--token or the environment).
    let remote = format!("{}:{port}", ns.host_ip);
    let (code, out, err) = ns.drainit(&["drain", "--addr", &remote, "--token", TOKEN], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(state_of(sup.addr), "draining");
    let (code, out, err) = ns.drainit(
        &["undrain", "--addr", &remote],
        &[("DRAINIT_CONTROL_TOKEN", TOKEN)],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(state_of(sup.addr), "ready");
    let (code, _, err) = ns.drainit(&["drain", "--addr", &remote, "--token", &last], &[]);
    assert_eq!(code, 1, "{err}");
    unchanged(&sup, &ns, port, 2.0);
    assert!(recorded(&sup.out).is_empty(), "the child was signalled");
}

#[test]
fn control_token_from_the_environment() {
    if !netns_possible() {
        return;
    }
    let ns = netns();
    let (sup, port) = start(
        &["--drain-delay", "30"],
        &[("DRAINIT_CONTROL_TOKEN", TOKEN)],
    );
    assert_eq!(ns.request("GET", port, "/sethealth/ko", &[]).code, 403);
    unchanged(&sup, &ns, port, 0.0);
    let auth = format!("Bearer {TOKEN}");
    let r = ns.request("GET", port, "/sethealth/ko", &[("Authorization", &auth)]);
    assert_eq!(r.code, 200, "{r:?}");
    assert_eq!(state_of(sup.addr), "draining");
}

#[test]
fn dual_stack_listener_tells_mapped_loopback_from_remote() {
    if !netns_possible() {
        return;
    }
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok()
        && std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").is_ok_and(|v| v.trim() == "0");
    if !v6 {
        skip("no dual-stack IPv6 here");
        return;
    }
    let ns = netns();
    let port = free_port();
    let sup = start_sigrec_bound(
        format!("[::]:{port}").parse().unwrap(),
        &["--drain-delay", "30"],
        &[],
        &[],
    );
    wait_for_state(sup.addr, "ready", secs(10.0));
    // An IPv4 client of a [::] socket is ::ffff:10.213.x.y: not loopback.
    assert_eq!(ns.request("GET", port, "/sethealth/ko", &[]).code, 403);
    unchanged(&sup, &ns, port, 0.0);
    // ::ffff:127.0.0.1 and ::1 are.
    assert_eq!(get(sup.addr, "/sethealth/ko").0, 200);
    assert_eq!(state_of(sup.addr), "draining");
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_eq!(get(v6, "/sethealth/ok").0, 200);
    assert_eq!(state_of(sup.addr), "ready");
}
