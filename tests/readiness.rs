//! Readiness and liveness checks (issue 4): drainit says "ready" only when
//! the app is, flips only after N consecutive results, never lets a hung
//! check delay a signal, and never lets a check end a drain.
//!
//! The app the checks look at is started by the test (examples/app, killed
//! on drop); drainit's child is sigrec. Several tests count check rounds
//! with a `--ready-cmd` that appends a line to a file and always passes:
//! checks run in a fixed order (http, tcp, file, cmd, live) one round after
//! another, so line k is written after round k's HTTP check finished and
//! before round k's results are recorded. That turns "after N consecutive
//! results" into something the test can check exactly, without timing.
mod common;

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::*;

/// Generous bound for anything that should happen within a few check rounds.
const T: Duration = Duration::from_secs(10);

/// A `--ready-cmd` that appends a line to `log` on each round and passes.
fn counter_cmd(log: &str) -> String {
    format!("sh -c 'echo round >> {log}'")
}

fn wait_for_rounds(log: &Path, n: usize) {
    wait_for(T, &format!("{n} check rounds in {}", log.display()), || {
        line_count(log) >= n
    });
}

fn set_mtime(path: &Path, when: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .unwrap_or_else(|e| panic!("cannot set the mtime of {}: {e}", path.display()));
}

fn hour_ago() -> SystemTime {
    SystemTime::now() - Duration::from_secs(3600)
}

/// Polls /readyz until it answers `want`, checking on every answer that
/// the flip happens exactly when one of rounds `first..=last` is recorded:
/// never while fewer than `first` rounds have run, and no later than the
/// recording of round `last` (seen as round `last + 1` having started).
fn watch_flip(addr: SocketAddr, log: &Path, want: u16, first: usize, last: usize) -> String {
    let deadline = Instant::now() + T;
    loop {
        let before = line_count(log);
        let (code, state) = readyz(addr);
        let after = line_count(log);
        if code == want {
            assert!(
                after >= first,
                "/readyz flipped to {want} ({state}) after only {after} rounds; not before round {first}"
            );
            return state;
        }
        assert!(
            before <= last,
            "/readyz still {code} ({state}) although round {last} was recorded ({before} rounds started)"
        );
        assert!(Instant::now() < deadline, "/readyz never flipped to {want}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn stays_starting_until_the_app_is_ready() {
    let app = App::start(&["--start-delay", "2500"]);
    let url = app.url("/ready");
    let s = start_sigrec(&["--ready-http", &url, "--check-interval", "0.1"], &[]);
    let r = wait_for_report(s.addr, "http ", T, |r| !report_ok(r));
    assert_eq!(report_error(&r), "status 503", "{r:?}");
    let mut starting_seen = 0;
    loop {
        let (code, state) = readyz(s.addr);
        // The app only becomes ready (once) when its start delay is over:
        // unready after drainit answered means unready before, too.
        if app.ready_code() == 200 {
            break;
        }
        assert_eq!(
            (code, state.as_str()),
            (503, "starting"),
            "drainit was ready before the app"
        );
        starting_seen += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(starting_seen > 0, "never saw drainit while the app started");
    assert_eq!(wait_for_readyz(s.addr, 200, T), "ready");
    assert_eq!(state_of(s.addr), "ready");
}

#[test]
fn thresholds_follow_the_apps_ready_toggle() {
    let (to_ready, to_unready) = (3, 4);
    let app = App::start(&[]);
    app.set_ready(false);
    let dir = TempDir::new("thresholds");
    let log = dir.path("rounds");
    let (url, counter) = (app.url("/ready"), counter_cmd(&dir.arg("rounds")));
    let s = start_sigrec(
        &[
            "--ready-http",
            &url,
            "--ready-cmd",
            &counter,
            "--check-interval",
            "0.1",
            // Spurious timeouts under load would reset the streaks.
            "--check-timeout",
            "5",
            "--ready-threshold",
            &to_ready.to_string(),
            "--unready-threshold",
            &to_unready.to_string(),
        ],
        &[],
    );
    wait_for_rounds(&log, 3);
    assert_eq!(readyz(s.addr), (503, "starting".into()));

    // Rounds up to `pre` checked the old state; rounds from `post + 2` on
    // check the new one (round `post + 1` may go either way).
    let switch = |on: bool| {
        let pre = line_count(&log);
        app.set_ready(on);
        (pre, line_count(&log))
    };
    let (pre, post) = switch(true);
    let state = watch_flip(s.addr, &log, 200, pre + to_ready, post + 1 + to_ready);
    assert_eq!(state, "ready");

    let (pre, post) = switch(false);
    let state = watch_flip(s.addr, &log, 503, pre + to_unready, post + 1 + to_unready);
    assert_eq!(state, "unready");

    let (pre, post) = switch(true);
    let state = watch_flip(s.addr, &log, 200, pre + to_ready, post + 1 + to_ready);
    assert_eq!(state, "ready");
}

/// The verdicts (true: ready) a Kubernetes-style threshold gives after
/// each prefix of `results`: element i is the verdict after i results.
fn verdicts(results: &[bool], to_ready: usize, to_unready: usize) -> Vec<bool> {
    let (mut ready, mut streak) = (false, 0);
    let mut out = vec![ready];
    for &pass in results {
        if pass == ready {
            streak = 0;
        } else {
            streak += 1;
            if streak >= if pass { to_ready } else { to_unready } {
                ready = pass;
                streak = 0;
            }
        }
        out.push(ready);
    }
    out
}

/// What a check command logged: rounds started, and each round's result.
fn logged(log: &Path) -> (usize, Vec<bool>) {
    let text = fs::read_to_string(log).unwrap_or_default();
    let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
    let (mut started, mut results) = (0, Vec::new());
    for l in complete.lines() {
        match l {
            "start" => started += 1,
            "pass" => results.push(true),
            "fail" => results.push(false),
            other => panic!("unexpected line {other:?} in {}", log.display()),
        }
    }
    (started, results)
}

/// What the exact threshold test waits for before its next switch.
#[derive(Clone, Copy, Debug)]
enum Until {
    Results(usize),
    Code(u16),
    MoreResults(bool, usize),
}

#[test]
fn thresholds_count_consecutive_results_exactly() {
    let (to_ready, to_unready) = (3, 3);
    let dir = TempDir::new("exact");
    let (flag, log) = (dir.path("flag"), dir.path("results"));
    // The command logs when it starts and what it found, so the test knows
    // the exact sequence drainit saw and which rounds were recorded: round
    // k+1 starts only after round k was recorded, and round k's result is
    // logged before it is recorded. The short sleep keeps the "started, not
    // finished" window (where the recorded round is known exactly) wide.
    let cmd = format!(
        "sh -c 'echo start >> {log}; sleep 0.05; if test -f {}; then echo pass >> {log}; else echo fail >> {log}; exit 1; fi'",
        flag.display(),
        log = log.display()
    );
    let s = start_sigrec(
        &[
            "--ready-cmd",
            &cmd,
            "--check-interval",
            "0.1",
            "--check-timeout",
            "5",
            "--ready-threshold",
            &to_ready.to_string(),
            "--unready-threshold",
            &to_unready.to_string(),
        ],
        &[],
    );
    // The app comes up, goes down, comes back, then has three one-failure
    // outages (each must reset the failure streak) and stays up. Whatever
    // the timing, every answer must match the threshold model.
    let steps = [
        (Until::Results(3), Some(true)),
        (Until::Code(200), Some(false)),
        (Until::Code(503), Some(true)),
        (Until::Code(200), Some(false)),
        (Until::MoreResults(false, 1), Some(true)),
        (Until::MoreResults(true, 1), Some(false)),
        (Until::MoreResults(false, 1), Some(true)),
        (Until::MoreResults(true, 1), Some(false)),
        (Until::MoreResults(false, 1), Some(true)),
        (Until::MoreResults(true, to_ready), None),
    ];
    let count = |pass: bool, r: &[bool]| r.iter().filter(|x| **x == pass).count();
    let (mut step, mut mark, mut exact, mut codes) = (0, 0, 0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while step < steps.len() {
        let (started, before) = logged(&log);
        let (code, state) = readyz(s.addr);
        let results = logged(&log).1;
        let model = verdicts(&results, to_ready, to_unready);
        // The rounds recorded when drainit answered: exactly the finished
        // ones while the next one runs, else maybe not the last finished.
        let done = before.len();
        let lo = if started > done {
            done
        } else {
            done.saturating_sub(1)
        };
        exact += usize::from(started > done);
        let allowed = &model[lo..=results.len()];
        assert!(
            allowed.contains(&(code == 200)),
            "/readyz {code} ({state}) but after results {results:?} it must be one of {allowed:?} (rounds {lo}..={})",
            results.len()
        );
        if codes.last() != Some(&code) {
            codes.push(code);
        }
        let (until, switch) = steps[step];
        let reached = match until {
            Until::Results(n) => results.len() >= n,
            Until::Code(c) => code == c,
            Until::MoreResults(pass, n) => count(pass, &results) >= mark + n,
        };
        if reached {
            match switch {
                Some(true) => fs::write(&flag, "").unwrap(),
                Some(false) => fs::remove_file(&flag).unwrap(),
                None => {}
            }
            step += 1;
            if let Some((Until::MoreResults(pass, _), _)) = steps.get(step) {
                mark = count(*pass, &logged(&log).1);
            }
        }
        assert!(
            Instant::now() < deadline,
            "stuck at step {step}: {results:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(codes.starts_with(&[503, 200, 503, 200]), "{codes:?}");
    assert!(exact > 20, "only {exact} answers while a round ran");
}

#[test]
fn ready_tcp_follows_the_port() {
    let target = format!("127.0.0.1:{}", free_port());
    let s = start_sigrec(
        &[
            "--ready-tcp",
            &target,
            "--check-interval",
            "0.1",
            "--unready-threshold",
            "1",
        ],
        &[],
    );
    let r = wait_for_report(s.addr, "tcp ", T, |r| !report_ok(r));
    assert!(report_error(&r).contains("refused"), "{r:?}");
    assert_eq!(readyz(s.addr), (503, "starting".into()));
    let listener = TcpListener::bind(&target).unwrap();
    assert_eq!(wait_for_readyz(s.addr, 200, T), "ready");
    drop(listener);
    assert_eq!(wait_for_readyz(s.addr, 503, T), "unready");
}

#[test]
fn ready_file_follows_the_apps_marker() {
    let dir = TempDir::new("readyfile");
    let marker = dir.arg("worker.ready");
    let app = App::start(&["--ready-file", &marker, "--start-delay", "1500"]);
    let s = start_sigrec(
        &[
            "--ready-file",
            &marker,
            "--check-interval",
            "0.1",
            "--unready-threshold",
            "1",
        ],
        &[],
    );
    let r = wait_for_report(s.addr, "file ", T, |r| !report_ok(r));
    assert_eq!(report_error(&r), "does not exist");
    let answer = readyz(s.addr);
    // The marker only appears (once) at the end of the start delay.
    if !Path::new(&marker).exists() {
        assert_eq!(answer, (503, "starting".into()));
    }
    assert_eq!(wait_for_readyz(s.addr, 200, T), "ready");
    app.set_ready(false); // the app removes its marker
    assert_eq!(wait_for_readyz(s.addr, 503, T), "unready");
}

#[test]
fn ready_cmd_runs_plain_or_through_sh_c() {
    let dir = TempDir::new("cmd");
    let (a, b, runs) = (dir.arg("a"), dir.arg("b"), dir.path("runs"));
    let plain = start_sigrec(
        &[
            "--ready-cmd",
            &format!("test -f {a}"),
            "--check-interval",
            "0.1",
        ],
        &[],
    );
    let script = format!(
        "sh -c 'echo said-by-the-check; echo run >> {}; test -f {a} && test -f {b}'",
        runs.display()
    );
    let shell = start_sigrec(
        &["-vv", "--ready-cmd", &script, "--check-interval", "0.1"],
        &[],
    );
    let r = wait_for_report(plain.addr, "cmd test -f", T, |r| !report_ok(r));
    assert!(report_error(&r).contains("exited with"), "{r:?}");
    assert_eq!(readyz(plain.addr), (503, "starting".into()));
    wait_for_report(shell.addr, "cmd sh -c", T, |r| !report_ok(r));

    fs::write(&a, "").unwrap();
    assert_eq!(wait_for_readyz(plain.addr, 200, T), "ready");
    // The script's `&&` is the shell's: with only a, it still fails.
    let seen = line_count(&runs);
    wait_for_rounds(&runs, seen + 2);
    assert_eq!(readyz(shell.addr), (503, "starting".into()));
    fs::write(&b, "").unwrap();
    assert_eq!(wait_for_readyz(shell.addr, 200, T), "ready");
    // Its output goes to the log at debug level.
    shell.init.log_when("the check's output in the log", |l| {
        l.contains("said-by-the-check")
    });
}

#[test]
fn ready_cmd_is_killed_at_the_timeout_one_at_a_time() {
    let s = start_sigrec(
        &[
            "--ready-cmd",
            "sleep 30",
            "--check-timeout",
            "0.3",
            "--check-interval",
            "0.1",
        ],
        &[],
    );
    let r = wait_for_report(s.addr, "cmd sleep", T, |r| !report_ok(r));
    assert!(report_error(&r).contains("timed out"), "{r:?}");
    let ms = r["duration_ms"].as_f64().unwrap();
    assert!((290.0..3000.0).contains(&ms), "took {ms} ms: {r:?}");
    // Watch three runs come and go: never two at once.
    let mut pids = std::collections::BTreeSet::new();
    wait_for(T, "three runs of the check command", || {
        let running: Vec<i32> = s
            .init
            .descendants()
            .into_iter()
            .filter(|(pid, state)| {
                *state != 'Z'
                    && fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "sleep")
            })
            .map(|(pid, _)| pid)
            .collect();
        assert!(running.len() <= 1, "check commands pile up: {running:?}");
        pids.extend(running);
        pids.len() >= 3
    });
    assert_eq!(readyz(s.addr), (503, "starting".into()));
}

#[test]
fn live_file_age_drives_livez_and_healthz() {
    let dir = TempDir::new("live");
    let live = dir.path("alive");
    fs::write(&live, "").unwrap();
    set_mtime(&live, hour_ago());
    let s = start_sigrec(
        &[
            "--live-file",
            &dir.arg("alive"),
            "--live-max-age",
            "5",
            "--check-interval",
            "0.1",
        ],
        &[],
    );
    let r = wait_for_report(s.addr, "live ", T, |r| !report_ok(r));
    assert_eq!(r["kind"].as_str(), Some("liveness"));
    assert!(report_error(&r).contains("not touched for"), "{r:?}");
    // The file stays stale until the test touches it.
    let livez = request("GET", s.addr, "/livez", &[]);
    assert_eq!(livez.code, 503, "{livez:?}");
    assert_eq!(livez.json()["status"].as_str(), Some("unhealthy"));
    let healthz = request("GET", s.addr, "/healthz", &[]);
    assert_eq!(healthz.code, 503, "{healthz:?}");
    // Liveness is not readiness: nothing gates readiness here.
    assert_eq!(readyz(s.addr), (200, "ready".into()));

    set_mtime(&live, SystemTime::now());
    wait_for(T, "/livez 200 once the file is fresh", || {
        request("GET", s.addr, "/livez", &[]).code == 200
    });
    let healthz = request("GET", s.addr, "/healthz", &[]);
    assert_eq!(healthz.code, 200, "{healthz:?}");

    set_mtime(&live, hour_ago());
    wait_for(T, "/livez 503 once the file is stale again", || {
        request("GET", s.addr, "/livez", &[]).code == 503
    });
}

/// Starts drainit checking `path` of `app` with `extra` options.
fn checking(app: &App, path: &str, extra: &[&str]) -> Sup {
    let url = app.url(path);
    let mut opts = vec!["--ready-http", url.as_str(), "--check-interval", "0.1"];
    opts.extend_from_slice(extra);
    start_sigrec(&opts, &[])
}

/// Waits for a failed HTTP check whose error contains `why`; drainit must
/// still be starting (with the default threshold of 1, one pass is ready).
fn assert_fails_with(s: &Sup, why: &str) {
    let r = wait_for_report(s.addr, "http ", T, |r| !report_ok(r));
    assert!(report_error(&r).contains(why), "expected '{why}' in {r:?}");
    assert_eq!(readyz(s.addr), (503, "starting".into()));
}

#[test]
fn expect_json_requires_status_healthy() {
    let app = App::start(&[]);
    let text_json = checking(&app, "/", &["--ready-expect-json"]);
    let text_plain = checking(&app, "/", &[]);
    let json = checking(&app, "/ready", &["--ready-expect-json"]);
    assert_fails_with(&text_json, "body is not JSON");
    assert_eq!(wait_for_readyz(text_plain.addr, 200, T), "ready");
    assert_eq!(wait_for_readyz(json.addr, 200, T), "ready");
}

/// Starts drainit checking `url` with --ready-expect-json.
fn expecting_json(url: &str) -> Sup {
    let opts = [
        "--ready-http",
        url,
        "--ready-expect-json",
        "--check-interval",
        "0.1",
    ];
    start_sigrec(&opts, &[])
}

/// As `drainit probe --expect-json`: the top-level `status`, read as JSON.
#[test]
fn ready_expect_json_reads_the_top_level_status() {
    let Some(py) = PyHttp::start() else { return };
    let started: Vec<(Sup, &str, bool)> = JSON_VERDICTS
        .iter()
        .map(|&(body, healthy)| (expecting_json(&py.url(body, "length")), body, healthy))
        .collect();
    for (s, body, healthy) in &started {
        if *healthy {
            assert_eq!(wait_for_readyz(s.addr, 200, T), "ready", "{body}");
        } else {
            let r = wait_for_report(s.addr, "http ", T, |r| !report_ok(r));
            assert_eq!(readyz(s.addr), (503, "starting".into()), "{body}: {r:?}");
        }
    }
}

/// A chunked answer is read whole; one cut short fails the check.
#[test]
fn ready_http_reads_whole_answers_only() {
    let Some(py) = PyHttp::start() else { return };
    let up = "{\"status\":\"UP\"}";
    let chunked = expecting_json(&py.url(up, "chunked"));
    let cut = expecting_json(&py.url(up, "chunked-short"));
    assert_eq!(wait_for_readyz(chunked.addr, 200, T), "ready");
    let r = wait_for_report(cut.addr, "http ", T, |r| !report_ok(r));
    assert!(report_error(&r).contains("cut short"), "{r:?}");
    assert_eq!(readyz(cut.addr), (503, "starting".into()));
}

#[test]
fn ready_header_lets_a_tls_forcing_app_pass() {
    let app = App::start(&[]);
    let bare = checking(&app, "/tls-only", &[]);
    let proxied = checking(
        &app,
        "/tls-only",
        &["--ready-header", "X-Forwarded-Proto: https"],
    );
    assert_fails_with(&bare, "X-Forwarded-Proto");
    assert_eq!(wait_for_readyz(proxied.addr, 200, T), "ready");
}

#[test]
fn redirects_are_followed_only_on_the_same_host() {
    let app = App::start(&[]);
    let same = checking(&app, "/redirect-same", &[]);
    let other = checking(&app, "/redirect-other", &[]);
    assert_fails_with(&other, "redirects to another host");
    assert_eq!(wait_for_readyz(same.addr, 200, T), "ready");
}

#[test]
fn hung_check_is_bounded_and_signals_still_flow() {
    let app = App::start(&[]);
    let s = checking(&app, "/hang", &["--check-timeout", "2"]);
    let r = wait_for_report(s.addr, "http ", secs(15.0), |r| !report_ok(r));
    assert!(report_error(&r).contains("timed out"), "{r:?}");
    let ms = r["duration_ms"].as_f64().unwrap();
    assert!((1900.0..5000.0).contains(&ms), "a 2 s timeout took {ms} ms");
    // The next check started right after that report (the interval is
    // shorter than the timeout) and hangs for 2 s now.
    let sent = Instant::now();
    s.init.signal(libc::SIGUSR1);
    let seen = wait_for_signal(&s.out, libc::SIGUSR1, T);
    assert!(
        seen - sent < Duration::from_secs(1),
        "SIGUSR1 took {:?} to reach the child during a hung check",
        seen - sent
    );
    let asked = Instant::now();
    assert_eq!(readyz(s.addr), (503, "starting".into()));
    assert!(asked.elapsed() < Duration::from_secs(1));
}

#[test]
fn drain_wins_over_passing_checks() {
    let app = App::start(&[]);
    let dir = TempDir::new("drainwins");
    let log = dir.path("rounds");
    let counter = counter_cmd(&dir.arg("rounds"));
    let s = checking(
        &app,
        "/ready",
        &[
            "--ready-cmd",
            &counter,
            "--check-timeout",
            "5",
            "--unready-threshold",
            "1",
            "--drain-delay",
            "60",
            "--stop-timeout",
            "120",
        ],
    );
    assert_eq!(wait_for_readyz(s.addr, 200, T), "ready");
    s.init.signal(libc::SIGTERM);
    wait_for_state(s.addr, "draining", T);
    // Checks keep running and passing...
    wait_for_rounds(&log, line_count(&log) + 3);
    assert!(check_reports(s.addr).iter().all(report_ok));
    assert_eq!(readyz(s.addr), (503, "draining".into()));
    // ...and even a flip to failing and back to passing does not end it.
    app.set_ready(false);
    wait_for_rounds(&log, line_count(&log) + 3);
    app.set_ready(true);
    wait_for_rounds(&log, line_count(&log) + 3);
    assert!(check_reports(s.addr).iter().all(report_ok));
    assert_eq!(readyz(s.addr), (503, "draining".into()));
    assert!(
        !recorded(&s.out).contains(&libc::SIGTERM),
        "SIGTERM was forwarded before the drain wait was over"
    );
    // A second SIGTERM skips the rest of the wait; sigrec exits 0 on it.
    s.init.signal(libc::SIGTERM);
    let mut init = s.init;
    assert_eq!(init.code(T), 0, "log:\n{}", init.stderr());
}

#[test]
fn healthz_and_status_show_each_check() {
    let app = App::start(&[]);
    app.set_ready(false);
    let dir = TempDir::new("reports");
    let (missing, live) = (dir.arg("missing"), dir.arg("live"));
    fs::write(&live, "").unwrap();
    let (url, tcp) = (app.url("/ready"), app.addr.to_string());
    let s = start_sigrec(
        &[
            "--ready-http",
            &url,
            "--ready-tcp",
            &tcp,
            "--ready-file",
            &missing,
            "--ready-cmd",
            "sleep 0.2",
            "--live-file",
            &live,
            "--live-max-age",
            "600",
            "--check-interval",
            "0.1",
        ],
        &[],
    );
    wait_for(T, "five check reports", || check_reports(s.addr).len() == 5);
    let expected = [
        (format!("http {url}"), "readiness", false, "status 503"),
        (format!("tcp {tcp}"), "readiness", true, ""),
        (
            format!("file {missing}"),
            "readiness",
            false,
            "does not exist",
        ),
        ("cmd sleep 0.2".to_string(), "readiness", true, ""),
        (format!("live {live}"), "liveness", true, ""),
    ];
    let assert_reports = |reports: &[Value], all_ok: bool| {
        assert_eq!(reports.len(), expected.len(), "{reports:?}");
        for (r, (name, kind, ok, error)) in reports.iter().zip(&expected) {
            let (ok, error) = if all_ok { (true, "") } else { (*ok, *error) };
            assert_eq!(r["name"].as_str(), Some(name.as_str()), "{r:?}");
            assert_eq!(r["kind"].as_str(), Some(*kind), "{r:?}");
            assert_eq!(report_ok(r), ok, "{r:?}");
            if ok {
                assert_eq!(r["error"], Value::Null, "{r:?}");
            } else {
                assert_eq!(report_error(r), error, "{r:?}");
            }
            let ms = r["duration_ms"].as_f64().expect("duration_ms");
            assert!((0.0..5000.0).contains(&ms), "{r:?}");
        }
        let sleep_ms = reports[3]["duration_ms"].as_f64().unwrap();
        assert!(sleep_ms >= 190.0, "'sleep 0.2' took {sleep_ms} ms");
    };
    assert_reports(&check_reports(s.addr), false);
    let healthz = request("GET", s.addr, "/healthz", &[]);
    assert_eq!(healthz.code, 503, "{healthz:?}");
    let doc = healthz.json();
    assert_eq!(doc["status"].as_str(), Some("unhealthy"));
    let Value::Array(reports) = &doc["checks"] else {
        panic!("/healthz has no checks: {doc:?}")
    };
    assert_reports(reports, false);

    app.set_ready(true);
    fs::write(&missing, "").unwrap();
    wait_for(T, "/healthz 200", || {
        request("GET", s.addr, "/healthz", &[]).code == 200
    });
    let doc = request("GET", s.addr, "/healthz", &[]).json();
    assert_eq!(doc["status"].as_str(), Some("healthy"));
    let Value::Array(reports) = &doc["checks"] else {
        panic!("/healthz has no checks: {doc:?}")
    };
    assert_reports(reports, true);
    assert_reports(&check_reports(s.addr), true);
}

/// Options, environment, and what the error must name.
type BadCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn unusable_checks_are_startup_errors() {
    let sigrec = sigrec_arg();
    let cases: [BadCase; 6] = [
        (&["--ready-http", "ftp://x"], &[], "--ready-http"),
        (&["--ready-http", "localhost:80"], &[], "--ready-http"),
        (&["--ready-http", "https://app/ready"], &[], "--ready-http"),
        (&["--ready-tcp", "nohostport"], &[], "--ready-tcp"),
        (&["--ready-expect-json"], &[], "--ready-expect-json"),
        (&[], &[("DRAINIT_READY_HTTP", "ftp://x")], "ready-http"),
    ];
    for (opts, env, names) in cases {
        let dir = TempDir::new("badcheck");
        let started = dir.arg("started");
        let mut args = vec!["--health-addr", "none"];
        args.extend_from_slice(opts);
        args.extend(["--", sigrec.as_str(), "--ready", started.as_str()]);
        let mut b = Init::new(&args);
        for (k, v) in env {
            b = b.env(k, v);
        }
        let mut init = b.start();
        let code = init.code(secs(5.0));
        let err = init.stderr();
        assert_eq!(code, 2, "{opts:?} {env:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{opts:?}: not one line: {err:?}");
        assert!(
            err.starts_with("drainit: ") && err.contains(names),
            "{opts:?} {env:?}: {err:?}"
        );
        assert!(
            !dir.path("started").exists(),
            "{opts:?}: the child was started"
        );
    }
}

/// drainit as PID 1 of its own PID and mount namespaces, with /etc/hosts
/// replaced; the namespace dies with it when the guard kills `unshare`.
struct HostsInit(std::process::Child);

impl Drop for HostsInit {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn checks_of_localhost_fall_back_from_ipv6_to_ipv4() {
    let dir = TempDir::new("hosts");
    fs::write(dir.path("hosts"), DOCKER_HOSTS).unwrap();
    let Some(prefix) = with_hosts(&dir.path("hosts")) else {
        return;
    };
    let app = App::start(&[]); // 127.0.0.1 only, as an app on 0.0.0.0 is
    let port = app.addr.port();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (url, tcp) = (
        format!("http://localhost:{port}/ready"),
        format!("localhost:{port}"),
    );
    let child = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .args(&prefix[1..])
        .args([DRAINIT, "--health-addr", &addr.to_string()])
        .args(["--ready-http", &url, "--ready-tcp", &tcp])
        .args(["--check-interval", "0.1", "--", "sleep", "1000"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(dir.path("stderr")).unwrap())
        .spawn()
        .unwrap();
    let _guard = HostsInit(child);
    wait_for_health(addr);
    let state = wait_for_readyz(addr, 200, T);
    assert_eq!(
        state,
        "ready",
        "{}",
        fs::read_to_string(dir.path("stderr")).unwrap()
    );
    assert!(check_reports(addr).iter().all(report_ok));
}
