//! Starting the endpoint: a taken port is a startup error (exit 2) before
//! the child runs; `--health-addr none` means no listener and no drain.
mod common;

use std::net::TcpListener;
use std::time::Instant;

use common::*;

/// drainit with `opts`, supervising sigrec (which would write `ready`).
fn start(opts: &[&str], files: &TempDir, env: &[(&str, &str)]) -> Init {
    sigrec_init(files, opts, &[], env).start()
}

#[test]
fn health_port_in_use_exits_2_before_starting_the_child() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let files = TempDir::new("port-in-use");
    let mut init = start(&["--health-addr", &addr], &files, &[]);
    assert_eq!(init.code(secs(10.0)), 2, "{}", init.stderr());
    let log = init.stderr();
    assert!(
        log.contains(&format!("cannot listen for health checks on {addr}"))
            && log.contains("in use"),
        "unclear error: {log}"
    );
    assert!(!files.path("ready").exists(), "the child was started");

    // Through the environment too.
    let files = TempDir::new("port-in-use-env");
    let mut init = start(&[], &files, &[("DRAINIT_HEALTH_ADDR", &addr)]);
    assert_eq!(init.code(secs(10.0)), 2, "{}", init.stderr());
    assert!(init.stderr().contains("in use"), "{}", init.stderr());
    assert!(!files.path("ready").exists(), "the child was started");
}

#[test]
fn agent_port_in_use_exits_2() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let agent = taken.local_addr().unwrap().to_string();
    let health = format!("127.0.0.1:{}", free_port());
    let files = TempDir::new("agent-in-use");
    let mut init = start(
        &["--health-addr", &health, "--agent-addr", &agent],
        &files,
        &[],
    );
    assert_eq!(init.code(secs(10.0)), 2, "{}", init.stderr());
    let log = init.stderr();
    assert!(
        log.contains(&format!("cannot listen for agent checks on {agent}"))
            && log.contains("in use"),
        "unclear error: {log}"
    );
    assert!(!files.path("ready").exists(), "the child was started");
}

#[test]
fn health_off_has_no_listener_and_forwards_sigterm_at_once() {
    for (opts, env) in [
        (vec!["--health-addr", "none"], vec![]),
        (vec![], vec![("DRAINIT_HEALTH_ADDR", "none")]),
    ] {
        let files = TempDir::new("health-off");
        let mut all = opts.clone();
        // No control socket either, so that any socket open is a listener.
        all.extend(["--drain-delay", "30", "--control-socket", "none"]);
        let mut init = start(&all, &files, &env);
        wait_for_file(&files.path("ready"), secs(10.0));
        assert!(init.alive(), "{}", init.stderr());
        assert_eq!(
            socket_count(init.pid),
            0,
            "drainit ({opts:?} {env:?}) has a socket open: something listens"
        );
        let sent = Instant::now();
        init.signal(libc::SIGTERM);
        let seen = wait_for_signal(&files.path("signals"), libc::SIGTERM, secs(10.0));
        assert!(
            seen - sent < secs(5.0),
            "nobody can be told to drain: SIGTERM must not wait 30 s ({opts:?} {env:?})"
        );
        assert_eq!(init.code(secs(10.0)), 0, "{}", init.stderr());
    }
}

#[test]
fn health_on_has_a_listener() {
    // The counterpart of the test above, so socket_count cannot pass vacuously.
    let sup = start_sigrec(&[], &[]);
    assert!(socket_count(sup.init.pid) >= 1);
}
