//! Control from a non-loopback address: /sethealth/* is refused (403)
//! unless the peer sends the control token; nothing else bypasses that.
//!
//! Another 127.x source address would still be loopback, so the client
//! runs in a network namespace of its own, joined to the root namespace by
//! a veth pair with a private /30; drainit listens on 0.0.0.0 in the root
//! namespace and sees the client's 10.213.x.y address.
mod common;

use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use common::*;

const TOKEN: &str = "s3cret-Token-42";

/// Whether this machine lets the test build network namespaces.
fn can_netns() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    root && ip
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

/// A network namespace linked to the root namespace by a veth pair;
/// dropping it removes both (also when the test panics).
struct NetNs {
    name: String,
    host_if: String,
    /// drainit's address as the namespace sees it (root side of the veth).
    host_ip: String,
    /// The client's address inside the namespace.
    ns_ip: String,
}

impl NetNs {
    fn create() -> NetNs {
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
        // A /30 of 10.213.0.0/16 that depends on pid and counter, skipping
        // any block already in use here.
        let (host_ip, ns_ip) = (0..16384u32)
            .map(|k| ((pid.wrapping_mul(8) + n * 2 + k * 97) % 16384) * 4)
            .map(|base| {
                let at = |o: u32| format!("10.213.{}.{}", (base + o) >> 8, (base + o) & 255);
                (at(1), at(2))
            })
            .find(|(h, c)| !taken.contains(&format!("{h}/")) && !taken.contains(&format!("{c}/")))
            .expect("a free /30 in 10.213.0.0/16");
        let ns = NetNs {
            name: format!("drainit-test-{pid}-{n}"),
            host_if: format!("dt{pid}x{n}h"),
            host_ip,
            ns_ip,
        };
        let ns_if = format!("dt{pid}x{n}n");
        assert!(ns.host_if.len() <= 15 && ns_if.len() <= 15);
        // The guard exists before anything is created, so a failure half
        // way still cleans up.
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

    /// Runs `f` on a thread that has joined the namespace (a network
    /// namespace belongs to a thread, so the rest of the test is untouched).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = File::open(format!("/run/netns/{}", self.name)).expect("open the netns");
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid namespace fd; it changes only
                // this thread's network namespace, and the thread ends
                // with the scope.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        })
    }

    /// One request from inside the namespace to drainit's port.
    fn request(&self, method: &str, port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
        let addr: SocketAddr = format!("{}:{port}", self.host_ip).parse().unwrap();
        self.run(|| request(method, addr, path, headers))
    }

    /// `drainit ARGS` run inside the namespace: (exit code, stdout, stderr).
    fn drainit(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, DRAINIT])
            .args(args)
            .env_remove("DRAINIT_HEALTH_ADDR")
            .env_remove("DRAINIT_CONTROL_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ip netns exec drainit");
        let deadline = Instant::now() + secs(20.0);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("drainit {args:?} in the netns did not finish in 20 s");
            }
            std::thread::sleep(secs(0.01));
        };
        let (mut out, mut err) = (String::new(), String::new());
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.code().unwrap_or(-1), out, err)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys its end of the veth and with it
        // the pair; the explicit delete covers a half-built setup.
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
    if !require(
        "ip and root",
        can_netns(),
        "network namespaces for a non-loopback client",
    ) {
        return;
    }
    let ns = NetNs::create();
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
        assert!(r.json().has("error"), "{r:?}");
        unchanged(&sup, &ns, port, 0.0);
    }
    let log = sup.init.stderr();
    assert!(
        log.contains(&format!("refused GET /sethealth/ko from {}", ns.ns_ip)),
        "refusals must be logged with the peer: {log}"
    );
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
    if !require(
        "ip and root",
        can_netns(),
        "network namespaces for a non-loopback client",
    ) {
        return;
    }
    let ns = NetNs::create();
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
    if !require(
        "ip and root",
        can_netns(),
        "network namespaces for a non-loopback client",
    ) {
        return;
    }
    let ns = NetNs::create();
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
    if !require(
        "ip and root",
        can_netns(),
        "network namespaces for a non-loopback client",
    ) {
        return;
    }
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok()
        && std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only").is_ok_and(|v| v.trim() == "0");
    if !v6 {
        eprintln!("SKIPPED: no dual-stack IPv6 here");
        return;
    }
    let ns = NetNs::create();
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
