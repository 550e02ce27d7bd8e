//! `--drain-until-quiet`: the drain waits until the app's sockets go quiet
//! (no new connection, no byte received) for the window, then forwards
//! the stop. The traffic comes from a network namespace the test makes,
//! as a balancer's would from another host: loopback peers never count.
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn netns() -> Option<NetNs> {
    if !require(
        "network namespaces (root and iproute2)",
        can_netns(),
        "the app's traffic must come from a non-loopback peer",
    ) {
        return None;
    }
    Some(NetNs::create("drainit-quiet", "dq", 215))
}

/// Requests to `to` every `every` over one keep-alive connection, from
/// inside `ns`, until stopped; the connection stays open (idle) after.
/// The thread ends with `None` when the app stopped answering first.
struct Client {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Option<TcpStream>>>,
}

impl Client {
    fn start(ns: &NetNs, to: SocketAddr, every: Duration) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let netns = std::fs::File::open(format!("/run/netns/{}", ns.name)).unwrap();
        let s = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            // SAFETY: setns on a valid namespace fd changes this thread's
            // network namespace only; the thread ends with the client.
            let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let mut conn = TcpStream::connect_timeout(&to, secs(5.0)).unwrap();
            conn.set_read_timeout(Some(secs(5.0))).unwrap();
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                conn.write_all(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
                    .ok()?;
                if conn.read(&mut buf).ok()? == 0 {
                    return None;
                }
                thread::sleep(every);
            }
            Some(conn)
        });
        Client {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops sending; the connection is kept open. `None` when the app
    /// had stopped answering before.
    fn halt(&mut self) -> Option<TcpStream> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().unwrap())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.halt();
    }
}

/// drainit -v with `opts` over `program`, which must make the app listen
/// on `port`; returned once both answer, with drainit's health address.
fn drainit_over(opts: &[&str], program: &[&str], port: u16) -> (Init, SocketAddr) {
    let health: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let health_arg = health.to_string();
    let mut args = vec!["-v", "--health-addr", health_arg.as_str()];
    args.extend_from_slice(opts);
    args.push("--");
    args.extend_from_slice(program);
    let init = Init::new(&args).start();
    wait_for_health(health);
    wait_for(secs(10.0), "the app to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (init, health)
}

/// drainit with `opts` over the app listening on all addresses (reached
/// from the namespace at `ns.host_ip`); returns drainit, the app's address
/// as the namespace sees it, and its port.
fn app_under_drainit(ns: &NetNs, opts: &[&str]) -> (Init, SocketAddr, u16) {
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let app = example("app").to_string_lossy().into_owned();
    let (init, _) = drainit_over(opts, &[&app, "--listen", &listen], port);
    (init, ns.target(port), port)
}

#[test]
fn quiet_ends_the_wait_once_the_traffic_stops() {
    let Some(ns) = netns() else { return };
    let opts = [
        "--drain-until-quiet",
        "0.5",
        "--drain-delay",
        "0",
        "--drain-timeout",
        "20",
    ];
    let (mut init, app, port) = app_under_drainit(&ns, &opts);
    let mut client = Client::start(&ns, app, secs(0.1));
    thread::sleep(secs(0.5));
    let sent = Instant::now();
    init.signal(libc::SIGTERM);
    // The balancer keeps sending for 2 s, as if it learned late.
    thread::sleep(secs(2.0));
    let open = client.halt();
    assert!(
        open.is_some(),
        "the app stopped while the balancer still sent"
    );
    let stopped = Instant::now();
    let code = init.code(secs(20.0));
    let exited = Instant::now();
    assert_eq!(code, 0, "{}", init.stderr());
    assert!(
        exited - sent >= secs(2.0),
        "the stop went out while the traffic still flowed"
    );
    let after = exited - stopped;
    assert!(
        after >= secs(0.4) && after < secs(4.0),
        "exited {after:?} after the traffic stopped, want about the 0.5 s window"
    );
    let log = init.stderr();
    let quiet = format!("quiet: no new connection and no byte received on port(s) {port}");
    assert!(log.contains(&quiet), "{log}");
}

#[test]
fn a_steady_trickle_keeps_the_wait_until_its_timeout() {
    let Some(ns) = netns() else { return };
    let opts = [
        "--drain-until-quiet",
        "0.5",
        "--drain-delay",
        "0",
        "--drain-timeout",
        "3",
    ];
    let (mut init, app, _) = app_under_drainit(&ns, &opts);
    let _client = Client::start(&ns, app, secs(0.2));
    thread::sleep(secs(0.5));
    let sent = Instant::now();
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(secs(20.0)), 0);
    let took = sent.elapsed();
    assert!(took >= secs(2.9) && took < secs(8.0), "took {took:?}");
    assert!(
        init.stderr()
            .contains("drain wait over (drain timeout of 3s)"),
        "{}",
        init.stderr()
    );
}

/// drainit's own readiness checks of the app and a probe from inside the
/// container reach the app over loopback: they are not traffic.
#[test]
fn loopback_probes_do_not_count() {
    let port = free_port();
    let ready = format!("http://127.0.0.1:{port}/ready");
    let opts = [
        "--drain-until-quiet",
        "0.5",
        "--drain-delay",
        "0",
        "--drain-timeout",
        "20",
        "--ready-http",
        &ready,
        "--check-interval",
        "0.1",
    ];
    let listen = format!("0.0.0.0:{port}");
    let app = example("app").to_string_lossy().into_owned();
    let (mut init, health) = drainit_over(&opts, &[&app, "--listen", &listen], port);
    wait_for_state(health, "ready", secs(10.0));
    let stop = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stop);
    let local = thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let _ = try_http(
                "GET",
                format!("127.0.0.1:{port}").parse().unwrap(),
                "/",
                &[],
            );
            thread::sleep(secs(0.05));
        }
    });
    let sent = Instant::now();
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(secs(20.0)), 0);
    stop.store(true, Ordering::Relaxed);
    local.join().unwrap();
    let took = sent.elapsed();
    assert!(
        took < secs(5.0),
        "loopback probes held the wait for {took:?}"
    );
}

/// The app's listening ports are found among the child's descendants: here
/// the listener is a grandchild (the shell's background job under the
/// process the shell exec'd), and drainit's own health port is not one.
#[test]
fn the_ports_of_a_grandchild_are_found() {
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let app = example("app").to_string_lossy().into_owned();
    let script = "\"$0\" --listen \"$1\" & exec sleep 60";
    let program = ["sh", "-c", script, &app, &listen];
    let (_init, health) = drainit_over(&["--drain-until-quiet", "5"], &program, port);
    let r = request("GET", health, "/sethealth/ko", &[]);
    assert_eq!(r.code, 200, "{r:?}");
    let mut ports = serde_json::Value::Null;
    wait_for(secs(10.0), "the watcher to report the ports", || {
        ports = status_doc(health)["drain"]["traffic"]["ports"].clone();
        ports.as_array().is_some_and(|p| !p.is_empty())
    });
    assert_eq!(ports, serde_json::json!([port]));
}
