//! The quiet drain's sensor (src/traffic.rs, issue 15) against real
//! sockets: what a sample sees of new connections, received bytes, idle
//! and closing connections, from a peer that is not on loopback and from
//! loopback peers; and the ports a real process tree listens on.
//!
//! The app's side, its listener and the sampler, lives in a network
//! namespace of the test's own, as an app and drainit share a container's:
//! a sample then shows this test's sockets and nobody else's. A peer that
//! is not on loopback connects from the root namespace through a veth
//! pair (10.215.0.0/16); a loopback peer from inside.
mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use drainit::listeners::listening_ports;
use drainit::traffic::{activity, Activity, Connection, Sampler, Snapshot};

/// A connection to the app's listener, both ends in hand.
struct Pair {
    /// The app's side, whose counters the samples read.
    server: TcpStream,
    client: TcpStream,
}

impl Pair {
    /// The client sends `n` bytes; returns once the server has read them
    /// all, so the kernel has counted them.
    fn send(&mut self, n: usize) {
        self.client.write_all(&vec![b'x'; n]).unwrap();
        self.server.read_exact(&mut vec![0; n]).unwrap();
    }

    /// The app's side closes first (HTTP/1.0, `Connection: close`), the
    /// client sees the end of the stream and closes too: the app's socket
    /// waits in TIME_WAIT.
    fn closed_by_the_app_first(self) {
        let Pair { server, mut client } = self;
        drop(server);
        assert_eq!(client.read(&mut [0; 1]).unwrap(), 0, "the app's FIN");
    }
}

/// The app's network namespace with its listener and sampler.
struct App {
    ns: NetNs,
    listener: TcpListener,
    sampler: Sampler,
}

impl App {
    /// Listens on `addr` (port 0) in a new namespace and takes a first
    /// sample there, which makes the sampler's netlink socket, and so
    /// every later sample, belong to it. `None` (test skipped) where
    /// network namespaces cannot be made.
    fn start(addr: &str) -> Option<(App, Snapshot)> {
        if !require(
            "ip and root",
            can_netns(),
            "a network namespace for the app",
        ) {
            return None;
        }
        let ns = NetNs::create("drainit-traffic", "tr", 215);
        let (listener, sampler, first) = ns.run(|| {
            let listener = TcpListener::bind(addr).unwrap();
            let mut sampler = Sampler::new();
            let first = sampler.sample(&[port_of(&listener)]).unwrap();
            (listener, sampler, first)
        });
        let app = App {
            ns,
            listener,
            sampler,
        };
        Some((app, first))
    }

    fn port(&self) -> u16 {
        port_of(&self.listener)
    }

    fn sample(&mut self) -> Snapshot {
        self.sampler.sample(&[self.port()]).unwrap()
    }

    /// A connection from the root namespace: a peer not on loopback.
    fn connect_remote(&self) -> Pair {
        let to: SocketAddr = format!("{}:{}", self.ns.ns_ip, self.port())
            .parse()
            .unwrap();
        accept(&self.listener, TcpStream::connect(to).unwrap())
    }

    /// A connection from inside the namespace, to `ip`.
    fn connect_loopback(&self, ip: impl Into<std::net::IpAddr>) -> Pair {
        let to = SocketAddr::new(ip.into(), self.port());
        accept(
            &self.listener,
            self.ns.run(|| TcpStream::connect(to).unwrap()),
        )
    }
}

fn accept(listener: &TcpListener, client: TcpStream) -> Pair {
    let (server, peer) = listener.accept().unwrap();
    assert_eq!(
        canonical(peer),
        client.local_addr().unwrap(),
        "another client came in"
    );
    Pair { server, client }
}

/// An IPv4 peer of an IPv6 socket as IPv4, as the samples show it.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn port_of(listener: &TcpListener) -> u16 {
    listener.local_addr().unwrap().port()
}

/// The connection of `pair` in `snapshot`, found by its peer.
fn seen<'a>(snapshot: &'a Snapshot, pair: &Pair) -> &'a Connection {
    let peer = canonical(pair.server.peer_addr().unwrap());
    snapshot
        .connections()
        .iter()
        .find(|c| c.remote == peer)
        .unwrap_or_else(|| panic!("{peer} is not in {snapshot:?}"))
}

#[test]
fn a_new_connection_and_its_bytes_are_seen() {
    let Some((mut app, before)) = App::start("0.0.0.0:0") else {
        return;
    };
    assert_eq!(before.connections(), &[], "nobody has connected yet");

    let mut pair = app.connect_remote();
    let connected = app.sample();
    let new = Activity {
        new: 1,
        ..Activity::default()
    };
    assert_eq!(activity(&before, &connected), new, "{connected:?}");
    let c = seen(&connected, &pair);
    assert_eq!(c.remote.ip().to_string(), app.ns.host_ip);
    assert_eq!(c.local_port, app.port());
    assert!(!c.is_loopback());
    assert_eq!(c.bytes_received, Some(0));

    pair.send(1000);
    let sent = app.sample();
    let receiving = Activity {
        receiving: 1,
        ..Activity::default()
    };
    assert_eq!(activity(&connected, &sent), receiving, "{sent:?}");
    assert_eq!(seen(&sent, &pair).bytes_received, Some(1000));
}

#[test]
fn an_idle_connection_and_one_the_app_only_sends_on_are_quiet() {
    let Some((mut app, _)) = App::start("0.0.0.0:0") else {
        return;
    };
    let mut idle = app.connect_remote();
    idle.send(10);
    let mut answered = app.connect_remote();
    let mut prev = app.sample();
    // The app answers with more than fits in one segment: the peer's
    // ACKs come in (segs_in grows), but no byte does.
    let answer = vec![b'y'; 256 * 1024];
    answered.server.write_all(&answer).unwrap();
    answered
        .client
        .read_exact(&mut vec![0; answer.len()])
        .unwrap();
    // Five samples a drain's 100 ms apart: the quiet window being tested.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(100));
        let next = app.sample();
        assert_eq!(activity(&prev, &next), Activity::default(), "{next:?}");
        prev = next;
    }
    assert_eq!(seen(&prev, &idle).bytes_received, Some(10));
    assert_eq!(prev.connections().len(), 2, "{prev:?}");
}

#[test]
fn a_connection_that_came_and_went_between_samples_is_new() {
    let Some((mut app, before)) = App::start("0.0.0.0:0") else {
        return;
    };
    let mut pair = app.connect_remote();
    let peer = pair.client.local_addr().unwrap();
    pair.send(20);
    pair.closed_by_the_app_first();
    let after = app.sample();
    assert_eq!(activity(&before, &after).new, 1, "{after:?}");
    assert_eq!(after.connections().len(), 1, "{after:?}");
    assert!(after.connections().iter().all(|c| c.remote == peer));
}

#[test]
fn the_app_closing_a_known_connection_is_not_traffic() {
    let Some((mut app, _)) = App::start("0.0.0.0:0") else {
        return;
    };
    let mut pair = app.connect_remote();
    pair.send(20);
    let open = app.sample();
    let cookie = seen(&open, &pair).cookie;
    pair.closed_by_the_app_first();
    let closed = app.sample();
    assert_eq!(activity(&open, &closed), Activity::default(), "{closed:?}");
    assert!(
        closed.connections().iter().any(|c| c.cookie == cookie),
        "the closing socket keeps its cookie: {closed:?}"
    );
}

#[test]
fn loopback_peers_are_counted_apart() {
    let Some((mut app, before)) = App::start("[::]:0") else {
        return;
    };
    let mut pairs = [
        app.connect_loopback(Ipv4Addr::LOCALHOST),
        app.connect_loopback(Ipv6Addr::LOCALHOST),
    ];
    let connected = app.sample();
    let new = Activity {
        loopback_new: 2,
        ..Activity::default()
    };
    assert_eq!(activity(&before, &connected), new, "{connected:?}");
    assert!(!activity(&before, &connected).is_traffic());
    for pair in &pairs {
        assert!(seen(&connected, pair).is_loopback());
    }
    assert_eq!(
        seen(&connected, &pairs[0]).remote.ip(),
        Ipv4Addr::LOCALHOST,
        "an IPv4 peer of a dual-stack socket is shown as IPv4"
    );

    pairs.iter_mut().for_each(|p| p.send(5));
    let sent = app.sample();
    let receiving = Activity {
        loopback_receiving: 2,
        ..Activity::default()
    };
    assert_eq!(activity(&connected, &sent), receiving, "{sent:?}");
}

/// Set in the copy of this test binary that
/// `an_unprivileged_process_sees_the_counters` runs as nobody: the port
/// and the peer of the connection it must see.
const UNPRIVILEGED: &str = "DRAINIT_TEST_TRAFFIC_UNPRIVILEGED";

#[test]
fn an_unprivileged_process_sees_the_counters() {
    if let Ok(which) = std::env::var(UNPRIVILEGED) {
        // The copy, as uid 65534, in the root namespace (where other
        // sockets may share the port): root's connection, with counters.
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 65534);
        let (port, peer) = which.split_once(' ').unwrap();
        let snapshot = Sampler::new().sample(&[port.parse().unwrap()]).unwrap();
        let found = snapshot
            .connections()
            .iter()
            .find(|c| c.remote.to_string() == peer);
        assert_eq!(
            found.map(|c| c.bytes_received),
            Some(Some(7)),
            "{snapshot:?}"
        );
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if !require(
        "root",
        unsafe { libc::geteuid() } == 0,
        "to become uid 65534",
    ) {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut pair = accept(
        &listener,
        TcpStream::connect(listener.local_addr().unwrap()).unwrap(),
    );
    pair.send(7);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "an_unprivileged_process_sees_the_counters",
            "--nocapture",
        ])
        .env(
            UNPRIVILEGED,
            format!(
                "{} {}",
                port_of(&listener),
                pair.client.local_addr().unwrap()
            ),
        )
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "as uid 65534:\n{log}");
    assert!(log.contains("1 passed"), "the copy ran the test:\n{log}");
}

/// A process and its descendants, SIGKILLed (deepest first) and waited
/// for when dropped.
struct Tree(Child);

impl Drop for Tree {
    fn drop(&mut self) {
        let mut pids: Vec<i32> = descendants_of(self.0.id() as i32)
            .into_iter()
            .map(|(pid, _)| pid)
            .collect();
        pids.reverse();
        kill_all(&pids);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_ports_of_a_child_and_of_its_child_are_found() {
    // drainit supervising drainit: each opens its health port, one in the
    // child, one in the grandchild.
    let (outer, inner) = (free_port(), free_port());
    let mut cmd = Command::new(DRAINIT);
    clean_env(&mut cmd);
    let health = |port: u16| ["--health-addr".to_string(), format!("127.0.0.1:{port}")];
    let tree = Tree(
        cmd.args(health(outer))
            .arg("--")
            .arg(DRAINIT)
            .args(health(inner))
            .args(["--", "sleep", "600"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for port in [outer, inner] {
        wait_for(secs(10.0), &format!("a listener on {port}"), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }
    let child = tree.0.id() as libc::pid_t;
    let processes = drainit::reap::descendants(child).expect("this PID namespace's /proc");
    let mut pids = vec![child];
    pids.extend(processes.iter().map(|p| p.pid));
    let mut both = vec![outer, inner];
    both.sort_unstable();
    assert_eq!(listening_ports(&pids), both, "{processes:?}");
    assert_eq!(
        listening_ports(&[child]),
        vec![outer],
        "the grandchild's port is found through the grandchild"
    );
}
