//! --agent-addr: HAProxy's agent-check protocol, one line per connection.
mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};

use common::*;

/// What the agent says to one connection (it closes after one line).
fn agent_line(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, secs(2.0)).expect("connect to the agent port");
    s.set_read_timeout(Some(secs(5.0))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the agent line");
    out
}

#[test]
fn agent_answers_ready_drain_and_down() {
    let agent: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let agent_arg = agent.to_string();
    let sup = start_sigrec(
        &[
            "--agent-addr",
            &agent_arg,
            "--drain-delay",
            "30",
            "--grace",
            "30",
        ],
        &["--ignore-term"],
    );
    let addr = sup.addr;
    wait_for_state(addr, "ready", secs(10.0));
    assert_eq!(agent_line(agent), "ready\n");

    // Manual drain and back.
    assert_eq!(get(addr, "/sethealth/ko").0, 200);
    assert_eq!(agent_line(agent), "drain\n");
    assert_eq!(get(addr, "/sethealth/ok").0, 200);
    assert_eq!(agent_line(agent), "ready\n");

    // A signal drain, then the stop.
    sup.init.signal(libc::SIGTERM);
    wait_for_state(addr, "draining", secs(10.0));
    assert_eq!(agent_line(agent), "drain\n");
    assert!(recorded(&sup.out).is_empty(), "SIGTERM must be held");
    sup.init.signal(libc::SIGTERM);
    wait_for_state(addr, "stopping", secs(10.0));
    assert_eq!(agent_line(agent), "down\n");
}

#[test]
fn agent_alone_still_drains_and_says_drain_while_starting() {
    // Health off, agent on: the agent is somebody to tell, so SIGTERM is
    // still held; and a container that is not ready yet says "drain".
    let files = TempDir::new("agent-only");
    let flag = files.arg("app-ready");
    let agent: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let agent_arg = agent.to_string();
    let init = sigrec_init(
        &files,
        &[
            "--health-addr",
            "none",
            "--agent-addr",
            &agent_arg,
            "--ready-file",
            &flag,
            "--check-interval",
            "0.1",
            "--drain-delay",
            "30",
        ],
        &[],
        &[],
    )
    .start();
    wait_for_file(&files.path("ready"), secs(10.0));
    wait_for(secs(10.0), "the agent port", || {
        TcpStream::connect(agent).is_ok()
    });
    assert_eq!(agent_line(agent), "drain\n", "starting is not ready");
    std::fs::write(files.path("app-ready"), "").unwrap();
    wait_for(secs(10.0), "the agent to say ready", || {
        agent_line(agent) == "ready\n"
    });
    init.signal(libc::SIGTERM);
    wait_for(secs(10.0), "the agent to say drain", || {
        agent_line(agent) == "drain\n"
    });
    assert!(
        recorded(&files.path("signals")).is_empty(),
        "SIGTERM must be held while the agent tells HAProxy to drain"
    );
}
