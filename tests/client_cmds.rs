//! `drainit drain | undrain | status` against a running drainit, and
//! `drainit -- drain` running a program called drain.
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;

/// Runs `drainit ARGS` as a client with only `env` from the drainit
/// variables; kills it (by pid) if it has not finished in 20 s.
fn client(args: &[&str], env: &[(&str, &str)]) -> Ran {
    run_drainit(args, env, secs(20.0))
}

#[test]
fn status_drain_undrain_against_a_running_drainit() {
    let sup = start_sigrec(&["--drain-delay", "30"], &[]);
    let addr = sup.addr;
    let a = addr.to_string();
    let env = [("DRAINIT_HEALTH_ADDR", a.as_str())];
    wait_for_state(addr, "ready", secs(10.0));
    let child_pid = status_doc(addr)["child_pid"].as_f64().unwrap() as i64;

    // status: a human line...
    let out = client(&["status"], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with(&format!("state ready, child pid {child_pid}, up ")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.trim_end().ends_with("drains 0"),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout.lines().count(), 1);
    // ...or the /status document.
    let out = client(&["status", "--json"], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = serde_json::from_str::<Value>(&out.stdout).expect("status --json prints JSON");
    assert_eq!(doc["state"].as_str(), Some("ready"));
    assert_eq!(doc["child_pid"].as_f64(), Some(child_pid as f64));

    // drain: readiness fails, the child is not signalled.
    let out = client(&["drain"], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("drained"), "{}", out.stdout);
    assert!(out.stdout.contains("draining"), "{}", out.stdout);
    assert_eq!(get(addr, "/readyz").0, 503);
    assert_eq!(state_of(addr), "draining");
    let out = client(&["status"], &env);
    assert!(out.stdout.starts_with("state draining"), "{}", out.stdout);
    let out = client(&["drain", "--json"], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = serde_json::from_str::<Value>(&out.stdout).expect("drain --json prints JSON");
    assert_eq!(doc["state"].as_str(), Some("draining"));

    // undrain, with --addr instead of the environment (and winning over it).
    let out = client(
        &["undrain", "--addr", &a],
        &[("DRAINIT_HEALTH_ADDR", "127.0.0.1:1")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("undrained"), "{}", out.stdout);
    assert_eq!(get(addr, "/readyz").0, 200);
    // An all-interfaces address (as drainit's default is) is asked on loopback.
    let any = format!("0.0.0.0:{}", addr.port());
    let out = client(&["status", "--addr", &any], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.starts_with("state ready"), "{}", out.stdout);
    let out = client(&["drain", &format!("--addr=:{}", addr.port())], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(get(addr, "/readyz").0, 503);

    assert!(
        recorded(&sup.out).is_empty(),
        "the client signalled the child"
    );
}

#[test]
fn client_failures_exit_non_zero_with_a_message() {
    // Nothing listening.
    let nobody = format!("127.0.0.1:{}", free_port());
    for sub in ["status", "drain", "undrain"] {
        let out = client(&[sub, "--addr", &nobody, "--timeout", "2"], &[]);
        assert_eq!(out.code, 1, "{sub}: {}", out.stderr);
        assert!(
            out.stderr.starts_with(&format!("drainit {sub}: ")) && out.stderr.contains(&nobody),
            "{sub}: unclear message {:?}",
            out.stderr
        );
        assert_eq!(out.stdout, "");
    }
    // Usage errors.
    for (args, want) in [
        (vec!["status", "--addr", "not an address"], "not an address"),
        (vec!["drain", "--addr", "none"], "off"),
        (vec!["undrain", "--bogus"], "--bogus"),
        (vec!["status", "--timeout"], "needs a value"),
    ] {
        let out = client(&args, &[]);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(want), "{args:?}: {}", out.stderr);
    }

    // A refusal: undrain while a stop signal is held.
    let sup = start_sigrec(&["--drain-delay", "30"], &[]);
    let a = sup.addr.to_string();
    wait_for_state(sup.addr, "ready", secs(10.0));
    sup.init.signal(libc::SIGTERM);
    wait_for_state(sup.addr, "draining", secs(10.0));
    let out = client(&["undrain", "--addr", &a], &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("drainit undrain: ") && out.stderr.contains("409"),
        "{}",
        out.stderr
    );
    let out = client(&["undrain", "--addr", &a, "--json"], &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(get(sup.addr, "/readyz").0, 503);
}

#[test]
fn double_dash_drain_runs_a_program_called_drain() {
    let bin = TempDir::new("bin");
    let marker = bin.arg("ran");
    let script = bin.path("drain");
    fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" > {marker}\nexit 5\n"),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.0.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let mut init = Init::new(&["--health-addr", "none", "--", "drain", "now", "please"])
        .env("PATH", &path)
        .start();
    assert_eq!(init.code(secs(10.0)), 5, "{}", init.stderr());
    assert_eq!(fs::read_to_string(bin.path("ran")).unwrap(), "now please\n");

    // After an option, "drain" is the program too.
    fs::remove_file(bin.path("ran")).unwrap();
    let mut init = Init::new(&["--health-addr", "none", "drain"])
        .env("PATH", &path)
        .start();
    assert_eq!(init.code(secs(10.0)), 5, "{}", init.stderr());
    assert!(bin.path("ran").exists());

    // Without such a program: 127, like a shell. PATH keeps only the
    // directory of `unshare`, which the harness needs.
    let system = std::env::var("PATH").unwrap_or_default();
    let unshare_dir = std::env::split_paths(&system)
        .find(|d| d.join("unshare").exists())
        .unwrap_or_else(|| "/usr/bin".into());
    for program in ["drain", "undrain", "status"] {
        if unshare_dir.join(program).exists() {
            eprintln!("NOTE: {} exists; not testing 127 for it", program);
            continue;
        }
        let mut init = Init::new(&["--health-addr", "none", "--", program])
            .env("PATH", &unshare_dir.to_string_lossy())
            .start();
        assert_eq!(init.code(secs(10.0)), 127, "{program}: {}", init.stderr());
        assert!(
            init.stderr().contains(&format!("cannot run '{program}'")),
            "{program}: {}",
            init.stderr()
        );
    }
}

/// What a server sends is escaped before it reaches the terminal, and an
/// answer cut short is a failure, not a status.
#[test]
fn status_escapes_control_characters_and_refuses_cut_answers() {
    let doc = |state: &str| {
        format!("{{\"state\":\"{state}\",\"child_pid\":7,\"uptime_seconds\":1.5,\"drains\":0}}")
    };
    // JSON's own escape, decoded by the parser into a real ESC.
    let Some(escaped) = PyHttp::answering(&doc("ready\\u001b[2J"), "length") else {
        return;
    };
    let out = client(&["status", "--addr", &escaped.addr()], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains('\x1b'), "{out:?}");
    assert!(
        out.stdout.starts_with("state ready\\u{1b}[2J, child pid 7"),
        "{out:?}"
    );
    let out = client(&["status", "--json", "--addr", &escaped.addr()], &[]);
    assert!(out.code == 0 && !out.stdout.contains('\x1b'), "{out:?}");
    // A raw ESC is not JSON at all.
    let raw = PyHttp::answering(&doc("ready\x1b[2J"), "length").unwrap();
    let out = client(&["status", "--addr", &raw.addr()], &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        !out.stdout.contains('\x1b') && !out.stderr.contains('\x1b'),
        "{out:?}"
    );
    for te in ["short", "chunked-short"] {
        let cut = PyHttp::answering(&doc("ready"), te).unwrap();
        let out = client(&["status", "--addr", &cut.addr()], &[]);
        assert_eq!(out.code, 1, "{te}: {out:?}");
        assert!(out.stderr.contains("cut short"), "{te}: {out:?}");
    }
}
