//! Only the container's own processes can drain drainit: loopback means
//! 127.0.0.1, ::1 and ::ffff:127.0.0.1 and nothing else in 127/8, a
//! browser's or a proxy's request needs the token, `--tcp-control` makes
//! TCP token-only or turns it off, the Unix control socket needs no token
//! and admits only drainit's user or root, and the token never reaches
//! the child.
mod common;

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

const TOKEN: &str = "s3cret-Token-42";

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Where Istio's sidecar delivers outside traffic from.
const SIDECAR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

#[test]
fn control_trusts_true_loopback_without_browser_or_proxy_marks() {
    let sup = start_sigrec_env(
        &["--drain-delay", "30"],
        &[],
        &[("DRAINIT_CONTROL_TOKEN", TOKEN)],
    );
    wait_for_state(sup.addr, "ready", secs(10.0));
    let token = bearer();
    let refused: [(Ipv4Addr, Vec<&str>); 4] = [
        (SIDECAR, vec![]),
        (Ipv4Addr::new(127, 1, 2, 3), vec![]),
        (
            LOOPBACK,
            vec!["Origin: http://evil.example", "Sec-Fetch-Site: cross-site"],
        ),
        (LOOPBACK, vec!["X-Forwarded-For: 203.0.113.9"]),
    ];
    for (from, headers) in &refused {
        let code = code_from(*from, sup.addr, "/sethealth/ko", headers);
        assert_eq!(code, 403, "{from} {headers:?}");
        assert_eq!(state_of(sup.addr), "ready", "{from} {headers:?} drained");
        // The same request with the token is taken.
        let mut with_token = headers.clone();
        with_token.push(&token);
        assert_eq!(
            code_from(*from, sup.addr, "/sethealth/ko", &with_token),
            200
        );
        assert_eq!(state_of(sup.addr), "draining");
        assert_eq!(code_from(LOOPBACK, sup.addr, "/sethealth/ok", &[]), 200);
        assert_eq!(state_of(sup.addr), "ready");
    }
    // What a scale-down script inside the container sends.
    let curl = ["User-Agent: curl/8.5.0", "Accept: */*"];
    assert_eq!(code_from(LOOPBACK, sup.addr, "/sethealth/ko", &curl), 200);
    assert_eq!(state_of(sup.addr), "draining");
    // The scheme is case-insensitive (RFC 7235).
    let lower = format!("authorization: bearer {TOKEN}");
    assert_eq!(
        code_from(SIDECAR, sup.addr, "/sethealth/ok", &[&lower]),
        200
    );
    let log = sup.init.log_when("a refusal in the log", |l| {
        l.contains("refused GET /sethealth/ko from 127.0.0.6")
    });
    assert!(
        log.contains("control needs loopback or the bearer token"),
        "{log}"
    );
}

#[test]
fn tcp_control_can_be_token_only_or_off() {
    let token = bearer();
    let sup = start_sigrec_env(
        &["--tcp-control", "token", "--drain-delay", "30"],
        &[],
        &[("DRAINIT_CONTROL_TOKEN", TOKEN)],
    );
    assert_eq!(code_from(LOOPBACK, sup.addr, "/sethealth/ko", &[]), 403);
    assert_eq!(
        code_from(LOOPBACK, sup.addr, "/sethealth/ko", &[&token]),
        200
    );
    drop(sup);
    let sup = start_sigrec_env(
        &["--drain-delay", "30"],
        &[],
        &[
            ("DRAINIT_CONTROL_TOKEN", TOKEN),
            ("DRAINIT_TCP_CONTROL", "off"),
        ],
    );
    wait_for_state(sup.addr, "ready", secs(10.0));
    assert_eq!(
        code_from(LOOPBACK, sup.addr, "/sethealth/ko", &[&token]),
        403
    );
    assert_eq!(state_of(sup.addr), "ready");
}

/// `drainit drain|undrain|status` as the user `uid` (0: as the test runs).
fn client(cmd: &str, socket: &Path, uid: u32) -> Ran {
    let socket = socket.to_string_lossy();
    let user = format!("--reuid={uid}");
    let group = format!("--regid={uid}");
    let mut argv = vec!["setpriv", &user, &group, "--clear-groups", DRAINIT];
    argv.extend([cmd, "--socket", &socket]);
    run_argv(&argv, &[], secs(20.0))
}

#[test]
fn the_control_socket_needs_no_token_and_admits_only_drainits_user() {
    let files = TempDir::new("socket");
    let socket = files.path("control.sock");
    let sock_env = socket.to_string_lossy().into_owned();
    let sup = start_sigrec_env(
        &["--tcp-control", "off", "--drain-delay", "30"],
        &[],
        &[("DRAINIT_CONTROL_SOCKET", &sock_env)],
    );
    wait_for_state(sup.addr, "ready", secs(10.0));
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    let ran = client("drain", &socket, 0);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.starts_with("drained"), "{ran:?}");
    assert_eq!(readyz(sup.addr).0, 503);
    let ran = client("status", &socket, 0);
    assert!(ran.stdout.starts_with("state draining"), "{ran:?}");
    assert_eq!(client("undrain", &socket, 0).code, 0);
    assert_eq!(state_of(sup.addr), "ready");

    // TCP control is off: without the socket the client is refused.
    let addr = sup.addr.to_string();
    let ran = run_drainit(&["drain", "--addr", &addr], &[], secs(20.0));
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(ran.stderr.contains("control over TCP is off"), "{ran:?}");

    // Another user: the socket's mode keeps it out...
    let ran = client("drain", &socket, 65534);
    assert_ne!(ran.code, 0, "{ran:?}");
    assert!(ran.stderr.contains("Permission denied"), "{ran:?}");
    // ...and with the mode opened up, drainit asks the kernel who it is.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let ran = client("drain", &socket, 65534);
    assert_ne!(ran.code, 0, "{ran:?}");
    sup.init.log_when("the refused client in the log", |l| {
        l.contains("refused a control socket client running as uid 65534")
    });
    assert_eq!(state_of(sup.addr), "ready");
    let mut init = sup.init;
    init.signal(libc::SIGINT);
    assert_eq!(init.code(secs(10.0)), 0);
    assert!(!socket.exists(), "the socket is removed at exit");
}

/// With no path given, the socket goes to /run (here a private tmpfs),
/// and the client finds it there by itself.
#[test]
fn the_client_finds_the_default_control_socket() {
    let files = TempDir::new("default-socket");
    let ready = files.arg("ready");
    let private_run = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount -t tmpfs none /run && exec \"$0\" \"$@\"",
    ];
    let init = Init::new(&[
        "--health-addr",
        "none",
        "--",
        &sigrec_arg(),
        "--ready",
        &ready,
    ])
    .default_control_socket()
    .start_through(&private_run);
    wait_for_file(&files.path("ready"), secs(10.0));
    let target = init.pid.to_string();
    let in_its_mounts = ["nsenter", "--mount", "--target", target.as_str(), DRAINIT];
    let mut status = in_its_mounts.to_vec();
    status.push("status");
    let default_search = [("DRAINIT_HEALTH_ADDR", "none"), (CONTROL_SOCKET_ENV, "")];
    let ran = run_argv(&status, &default_search, secs(20.0));
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.starts_with("state ready"), "{ran:?}");
    let mut drain = in_its_mounts.to_vec();
    drain.push("drain");
    let ran = run_argv(&drain, &default_search, secs(20.0));
    assert!(ran.stdout.starts_with("drained"), "{ran:?}");
}

#[test]
fn the_token_never_reaches_the_child_and_the_command_line_is_warned_about() {
    let files = TempDir::new("env");
    let env_file = files.arg("env");
    let token_file = files.path("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let dump = ["sh", "-c", "env > \"$0\"", env_file.as_str()];
    let mut args = vec!["--health-addr", "none", "--"];
    args.extend(dump);
    let mut init = Init::new(&args)
        .env("DRAINIT_CONTROL_TOKEN", TOKEN)
        .env("APP_SETTING", "kept")
        .start();
    assert_eq!(init.code(secs(10.0)), 0, "{}", init.stderr());
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(env.contains("APP_SETTING=kept"), "{env}");
    assert!(!env.contains(TOKEN), "{env}");
    assert!(!init.stderr().contains("cmdline"), "{}", init.stderr());

    // From a file: the token opens control from a non-loopback source.
    let token_arg = token_file.to_string_lossy().into_owned();
    let sup = start_sigrec(
        &["--control-token-file", &token_arg, "--drain-delay", "30"],
        &[],
    );
    wait_for_state(sup.addr, "ready", secs(10.0));
    assert_eq!(
        code_from(SIDECAR, sup.addr, "/sethealth/ko", &[&bearer()]),
        200
    );
    assert!(
        !sup.init.stderr().contains("cmdline"),
        "{}",
        sup.init.stderr()
    );
    // On the command line it works, with a warning.
    let sup = start_sigrec(&["--control-token", TOKEN], &[]);
    assert!(
        sup.init
            .stderr()
            .contains("--control-token can be read by any user"),
        "{}",
        sup.init.stderr()
    );
}
