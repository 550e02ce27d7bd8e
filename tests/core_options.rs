//! The command line and its environment: bad input exits 2 with one line
//! naming the option; --help and --version; env variables, tini's too.
mod common;

use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::*;

/// drainit run directly (parsing happens before anything else).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(DRAINIT);
    cmd.args(args).stdin(Stdio::null());
    clean_env(&mut cmd);
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

#[test]
fn bad_options_exit_2_with_one_line_naming_the_option() {
    let dir = TempDir::new("badopt");
    let marker = dir.arg("child-ran");
    let program = ["--", "touch", marker.as_str()];
    let with = |opts: &[&'static str]| -> Vec<String> {
        opts.iter()
            .map(|s| s.to_string())
            .chain(program.iter().map(|s| s.to_string()))
            .collect()
    };
    // (arguments, environment, what the error must name)
    type Case = (
        Vec<String>,
        Vec<(&'static str, &'static str)>,
        &'static [&'static str],
    );
    let cases: Vec<Case> = vec![
        (with(&["--grace", "abc"]), vec![], &["--grace", "abc"]),
        (with(&["--grace=abc"]), vec![], &["--grace", "abc"]),
        (with(&["--bogus"]), vec![], &["--bogus"]),
        (with(&["-x"]), vec![], &["-x"]),
        (with(&["-r", "garbage"]), vec![], &["rewrite", "garbage"]),
        (with(&["-r", "TERM:NOPE"]), vec![], &["rewrite", "NOPE"]),
        (with(&["-p", "NOPE"]), vec![], &["pdeath-signal", "NOPE"]),
        (
            with(&["-r", "1:32"]),
            vec![],
            &["rewrite", "32", "reserved"],
        ),
        (
            with(&["-p", "33"]),
            vec![],
            &["pdeath-signal", "33", "reserved"],
        ),
        (
            with(&["--drain-on", "32"]),
            vec![],
            &["drain-on", "32", "reserved"],
        ),
        (with(&["-e", "300"]), vec![], &["remap-exit", "300"]),
        (
            with(&["--health-addr", "nowhere"]),
            vec![],
            &["--health-addr"],
        ),
        (with(&["--help=x"]), vec![], &["--help"]),
        (
            with(&[]),
            vec![("DRAINIT_GRACE", "abc")],
            &["DRAINIT_GRACE", "abc"],
        ),
        (
            with(&[]),
            vec![("DRAINIT_SUBREAPER", "maybe")],
            &["DRAINIT_SUBREAPER"],
        ),
        (
            with(&[]),
            vec![("TINI_VERBOSITY", "loud")],
            &["TINI_VERBOSITY"],
        ),
        (
            with(&[]),
            vec![("DRAINIT_REWRITE", "HUP")],
            &["DRAINIT_REWRITE"],
        ),
        (vec![], vec![], &["PROGRAM"]),
        (
            vec!["--grace".into()],
            vec![],
            &["--grace", "needs a value"],
        ),
    ];
    for (args, env, names) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        let what = format!("args {args:?} env {env:?}: stderr {err:?}");
        assert_eq!(out.status.code(), Some(2), "{what}");
        assert_eq!(err.lines().count(), 1, "one line: {what}");
        assert!(
            err.starts_with("drainit: ") && err.ends_with('\n'),
            "{what}"
        );
        for n in names {
            assert!(err.contains(n), "should name {n:?}: {what}");
        }
        assert!(out.stdout.is_empty(), "{what}");
        // drainit waits for its child, so a child started despite the
        // error would have run by now.
        assert!(!dir.path("child-ran").exists(), "the child ran: {what}");
    }
}

/// A flag wins over its environment variable, even a broken one.
#[test]
fn flag_wins_over_a_bad_environment_value() {
    let out = run(&["--grace", "1", "--", "true"], &[("DRAINIT_GRACE", "abc")]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn help_lists_every_option_with_its_environment_variable() {
    for flag in ["--help", "-h"] {
        let out = run(&[flag], &[]);
        assert_eq!(out.status.code(), Some(0));
        assert!(out.stderr.is_empty());
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(
            help.contains("Usage: drainit [OPTIONS] [--] PROGRAM [ARGS...]"),
            "{help}"
        );
        for want in [
            "-s, --subreaper",
            "-g, --process-group",
            "-p, --pdeath-signal SIG",
            "-r, --rewrite FROM:TO",
            "-e, --remap-exit CODE",
            "-v, --verbose",
            "-w, --warn-on-reap",
            "--grace SECONDS",
            "--no-wait-adopted",
            "--version",
            "DRAINIT_SUBREAPER, TINI_SUBREAPER",
            "DRAINIT_PROCESS_GROUP, TINI_KILL_PROCESS_GROUP",
            "DRAINIT_LOG, RUST_LOG, TINI_VERBOSITY",
            "DRAINIT_PDEATH_SIGNAL",
            "DRAINIT_REWRITE",
            "DRAINIT_REMAP_EXIT",
            "DRAINIT_WARN_ON_REAP",
            "DRAINIT_GRACE",
            "DRAINIT_NO_WAIT_ADOPTED",
        ] {
            assert!(help.contains(want), "--help lacks {want:?}:\n{help}");
        }
        // Every option of the table is there, each with its variables.
        for opt in drainit::cli::OPTIONS {
            assert!(help.contains(&format!("--{}", opt.long)), "{}", opt.long);
            let names: Vec<&str> = opt.env.iter().map(|e| e.name).collect();
            if !names.is_empty() {
                let line = format!("env: {}\n", names.join(", "));
                assert!(help.contains(&line), "{line}");
            }
        }
    }
}

#[test]
fn version_prints_the_version() {
    let out = run(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("drainit {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// sigrec under drainit as PID 1 with `env`; sends SIGUSR1, then SIGTERM.
fn log_of_one_forward(opts: &[&str], env: &[(&str, &str)], wait_for_line: Option<&str>) -> String {
    let dir = TempDir::new("verbosity");
    let (out, ready) = (dir.arg("out"), dir.arg("ready"));
    let s = sigrec_arg();
    let mut args = vec!["--health-addr", "none"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["--", &s, "--out", &out, "--ready", &ready]);
    let mut b = Init::new(&args);
    for (k, v) in env {
        b = b.env(k, v);
    }
    let mut init = b.start();
    wait_for_file(&dir.path("ready"), secs(10.0));
    send_and_see(&init, libc::SIGUSR1, &dir.path("out"), libc::SIGUSR1);
    if let Some(line) = wait_for_line {
        // Logged just after the signal went out.
        wait_for(secs(10.0), line, || init.stderr().contains(line));
    }
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(secs(10.0)), 0, "log:\n{}", init.stderr());
    init.stderr()
}

#[test]
fn tini_verbosity_is_honoured_unless_drainit_log_says_otherwise() {
    let debug = "drainit: debug: forwarded SIGUSR1 to child";
    let log = log_of_one_forward(&[], &[("TINI_VERBOSITY", "3")], Some(debug));
    assert!(log.contains("drainit: info: "), "{log}");
    // Quiet by default: warnings and errors only.
    let log = log_of_one_forward(&[], &[], None);
    assert_eq!(log, "", "default verbosity logs nothing here");
    // DRAINIT_LOG wins over tini's variable.
    let log = log_of_one_forward(
        &[],
        &[("TINI_VERBOSITY", "3"), ("DRAINIT_LOG", "warn")],
        None,
    );
    assert_eq!(log, "");
    // -vv means debug too.
    let log = log_of_one_forward(&["-vv"], &[], Some(debug));
    assert!(log.contains("drainit: info: "), "{log}");
}

/// DRAINIT_GRACE is read (default 6 s would fail the bound), and --grace
/// wins over it.
#[test]
fn grace_from_the_environment_and_the_flag_winning() {
    for (opts, env) in [
        (vec![], vec![("DRAINIT_GRACE", "1")]),
        (vec!["--grace", "1"], vec![("DRAINIT_GRACE", "30")]),
    ] {
        let dir = TempDir::new("grace-env");
        let (out, ready) = (dir.arg("out"), dir.arg("ready"));
        let s = sigrec_arg();
        let mut args = vec!["--health-addr", "none"];
        args.extend_from_slice(&opts);
        args.extend_from_slice(&["--", &s, "--ignore-term", "--out", &out, "--ready", &ready]);
        let mut b = Init::new(&args);
        for (k, v) in &env {
            b = b.env(k, v);
        }
        let mut init = b.start();
        wait_for_file(&dir.path("ready"), secs(10.0));
        let sent = Instant::now();
        send_and_see(&init, libc::SIGTERM, &dir.path("out"), libc::SIGTERM);
        assert_eq!(init.code(secs(40.0)), 137, "log:\n{}", init.stderr());
        let took = sent.elapsed();
        assert!(
            took >= secs(0.9) && took < secs(4.5),
            "{opts:?} {env:?}: killed after {took:?}, want ~1 s"
        );
    }
}
