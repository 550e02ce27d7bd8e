//! Reaping: every orphan is reaped, as PID 1 and as a subreaper.
mod common;

use common::*;

fn reaped_lines(stderr: &str) -> usize {
    stderr.matches("reaped zombie process").count()
}

/// 10,000 grandchildren orphaned at once (their SIGCHLDs coalesce): all
/// are reaped, none is left a zombie.
#[test]
fn ten_thousand_orphans_are_all_reaped_as_pid_1() {
    in_every_mode(ten_thousand_orphans_are_all_reaped_in);
}

fn ten_thousand_orphans_are_all_reaped_in(mode: Mode) {
    let dir = TempDir::new("orphans");
    let ready = dir.arg("ready");
    let s = sigrec_arg();
    let mode_args = mode.args();
    let mut args: Vec<&str> = mode_args.iter().map(String::as_str).collect();
    args.extend(["--", &s, "--orphans", "10000", "--ready", &ready]);
    let mut init = Init::new(&args).start();
    if !init.as_pid1 {
        eprintln!("NOTE: not PID 1 here: this shows subreaper-mode reaping instead");
    }
    // Written once all 10,000 are forked and their parents reaped.
    wait_for_file(&dir.path("ready"), secs(60.0));
    let child = children_of(init.pid);
    wait_for(secs(30.0), "every orphan to be reaped", || {
        let left = init.descendants();
        left.len() == 1 && left[0].1 != 'Z'
    });
    assert_eq!(children_of(init.pid), child);
    assert!(zombies(&init).is_empty());
    init.signal(libc::SIGTERM);
    assert_eq!(init.code(secs(10.0)), 0, "log:\n{}", init.stderr());
}

/// Without a PID namespace, -s (or DRAINIT_SUBREAPER, or tini's
/// TINI_SUBREAPER) makes orphans come to drainit, which reaps them all.
#[test]
fn subreaper_mode_reaps_orphans_without_a_namespace() {
    for (flag, env) in [
        (Some("-s"), None),
        (Some("--subreaper"), None),
        (None, Some(("TINI_SUBREAPER", ""))),
        (None, Some(("DRAINIT_SUBREAPER", "1"))),
    ] {
        let dir = TempDir::new("subreaper");
        let ready = dir.arg("ready");
        let s = sigrec_arg();
        let mut args = vec!["-w", "--health-addr", "none"];
        args.extend(flag);
        args.extend(["--", &s, "--orphans", "200", "--ready", &ready]);
        let mut b = Init::new(&args).no_namespace();
        if let Some((k, v)) = env {
            b = b.env(k, v);
        }
        let mut init = b.start();
        assert!(!init.as_pid1);
        wait_for_file(&dir.path("ready"), secs(30.0));
        // -w logs each orphan drainit reaps: all 200 came to it.
        wait_for(
            secs(30.0),
            &format!("{flag:?} {env:?}: 200 orphans reaped by drainit"),
            || reaped_lines(&init.stderr()) == 200,
        );
        assert!(zombies(&init).is_empty());
        assert!(
            !init.stderr().contains("will not be reaped"),
            "{}",
            init.stderr()
        );
        init.signal(libc::SIGTERM);
        assert_eq!(init.code(secs(10.0)), 0, "log:\n{}", init.stderr());
        assert_eq!(reaped_lines(&init.stderr()), 200, "{}", init.stderr());
    }
}

/// Not PID 1 and not a subreaper: one warning line, nothing else.
#[test]
fn without_subreaper_mode_warns_once() {
    let s = sigrec_arg();
    let mut init = Init::new(&["--health-addr", "none", "--", &s, "--exit", "0"])
        .no_namespace()
        .start();
    assert_eq!(init.code(secs(10.0)), 0, "log:\n{}", init.stderr());
    let log = init.stderr();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("drainit: warn")
            && lines[0].contains("orphaned processes will not be reaped")
            && lines[0].contains("-s"),
        "{lines:?}"
    );
    // As PID 1 there is nothing to warn about.
    let mut init = Init::new(&["--health-addr", "none", "--", &s, "--exit", "0"]).start();
    assert_eq!(init.code(secs(10.0)), 0);
    assert_eq!(init.stderr(), "");
}
