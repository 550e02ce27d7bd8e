//! Exit codes: drainit exits as its child did.
mod common;

use common::*;

#[test]
fn exit_codes_pass_through() {
    in_every_mode(|mode| assert_exit_codes(&[DRAINIT], &mode.args(), secs(10.0)));
}

/// stderr lines that are drainit's own (the child here writes nothing).
fn lines(init: &Init) -> Vec<String> {
    init.stderr().lines().map(str::to_string).collect()
}

#[test]
fn missing_program_exits_127_with_one_line_naming_it() {
    let dir = TempDir::new("missing");
    let program = dir.arg("no-such-program");
    let mut init = Init::new(&["--health-addr", "none", "--", &program, "arg"]).start();
    assert_eq!(init.code(secs(10.0)), 127, "log:\n{}", init.stderr());
    let lines = lines(&init);
    assert_eq!(lines.len(), 1, "expected one line, got {lines:?}");
    assert!(
        lines[0].starts_with("drainit: ")
            && lines[0].contains(&program)
            && lines[0].contains("No such file or directory"),
        "{lines:?}"
    );
}

#[test]
fn program_that_cannot_be_executed_exits_126_with_one_line_naming_it() {
    let dir = TempDir::new("noexec");
    let program = dir.arg("not-executable");
    std::fs::write(&program, "#!/bin/sh\nexit 0\n").unwrap();
    // rw-r--r--: exists, but is not executable (even for root).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut init = Init::new(&["--health-addr", "none", "--", &program]).start();
    assert_eq!(init.code(secs(10.0)), 126, "log:\n{}", init.stderr());
    let lines = lines(&init);
    assert_eq!(lines.len(), 1, "expected one line, got {lines:?}");
    assert!(
        lines[0].starts_with("drainit: ")
            && lines[0].contains(&program)
            && lines[0].contains("Permission denied"),
        "{lines:?}"
    );
}

#[test]
fn remap_exit_maps_only_the_given_codes_to_0() {
    in_every_mode(remap_exit_maps_only_the_given_codes_to_0_in);
}

fn remap_exit_maps_only_the_given_codes_to_0_in(mode: Mode) {
    let s = sigrec_arg();
    for (remap, exit, want) in [("3", "3", 0), ("4", "3", 3)] {
        let mode_args = mode.args();
        let mut args: Vec<&str> = mode_args.iter().map(String::as_str).collect();
        args.extend(["-e", "7", "-e", remap, "--", &s, "--exit", exit]);
        let mut init = Init::new(&args).start();
        assert_eq!(
            init.code(secs(10.0)),
            want,
            "-e {remap}, child exits {exit}; log:\n{}",
            init.stderr()
        );
    }
}

/// A child without handlers (sleep) killed by a forwarded SIGHUP: drainit
/// exits 128+1.
#[test]
fn child_killed_by_forwarded_signal_gives_128_plus_n() {
    in_every_mode(child_killed_by_forwarded_signal_gives_128_plus_n_in);
}

fn child_killed_by_forwarded_signal_gives_128_plus_n_in(mode: Mode) {
    let mode_args = mode.args();
    let mut args: Vec<&str> = mode_args.iter().map(String::as_str).collect();
    args.extend(["--", "sleep", "1000"]);
    let mut init = Init::new(&args).start();
    let pid = init.pid;
    wait_for(secs(10.0), "sleep to be exec'd", || {
        children_of(pid).iter().any(|c| {
            std::fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|s| s.trim() == "sleep")
        })
    });
    init.signal(libc::SIGHUP);
    assert_eq!(init.code(secs(10.0)), 129, "log:\n{}", init.stderr());
}
