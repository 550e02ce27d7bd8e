//! What drainit says about itself: the /status document and the
//! /metrics page. Both read a snapshot of the shared state taken under the
//! lock and format it after.

use std::fmt::Write as _;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::drain::{Drain, Ended, State};
use crate::http::Reply;
use crate::json;
use crate::logger;
use crate::probers::{Prober, Standing};
use crate::shared::{CheckReport, Shared};
use crate::signals;

/// Each check's last result, as a JSON array.
pub fn checks_json(reports: &[CheckReport]) -> String {
    let items: Vec<String> = reports.iter().map(CheckReport::to_json).collect();
    format!("[{}]", items.join(","))
}

/// The /status document.
pub fn status(shared: &Shared) -> String {
    let (state, drains, probers, quiet_window) = shared.machine(|m| {
        let quiet = m.quiet_window();
        (m.state().clone(), m.drains(), m.probers().to_vec(), quiet)
    });
    let child = shared.child_pid.load(std::sync::atomic::Ordering::Relaxed);
    let mut out = format!(
        "{{\"state\":\"{}\",\"child_pid\":{},\"uptime_seconds\":{:.3},\"drains\":{}",
        state.name(),
        if child > 0 {
            child.to_string()
        } else {
            "null".into()
        },
        shared.started.elapsed().as_secs_f64(),
        drains,
    );
    match state.drain() {
        Some(d) => {
            let started = d
                .started_at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |t| t.as_secs_f64());
            let _ = write!(
                out,
                ",\"drain\":{{\"reason\":\"{}\",\"started_unix\":{started:.3},\"probes_answered\":{},\"probers_waited_for\":{},\"traffic\":{},\"waited_seconds\":{},\"wait_ended\":{}}}",
                d.reason,
                d.unready_answers,
                d.probers,
                traffic_json(d, quiet_window),
                d.waited.map_or("null".into(), |w| format!("{:.3}", w.as_secs_f64())),
                d.ended.map_or("null".into(), |e| format!("\"{}\"", e.name())),
            );
        }
        None => out.push_str(",\"drain\":null"),
    }
    match &state {
        State::Stopping(stop) => {
            let _ = write!(out, ",\"stop_signal\":\"{}\"", signals::name(stop.signal));
        }
        State::Exited { code, .. } => {
            let _ = write!(out, ",\"exit_code\":{code}");
        }
        _ => {}
    }
    let _ = writeln!(
        out,
        ",\"probers\":{},\"checks\":{}}}",
        probers_json(&probers),
        checks_json(&shared.check_reports())
    );
    out
}

/// What a drain waiting for quiet saw of the app's traffic: the ports,
/// the window, how long it has been quiet, and when a new connection and
/// received bytes were last seen (Unix time). `null` without one.
fn traffic_json(d: &Drain, window: Option<Duration>) -> String {
    let (Some(t), Some(window)) = (&d.traffic, window) else {
        return "null".into();
    };
    let ports: Vec<String> = t.ports.iter().map(u16::to_string).collect();
    let end = d.waited.map_or_else(Instant::now, |w| d.since + w);
    let quiet_for = end.saturating_duration_since(t.last_activity);
    let unix =
        |at: Option<Instant>| at.map_or("null".into(), |at| format!("{:.3}", unix_time(d, at)));
    format!(
        "{{\"ports\":[{}],\"quiet_window_seconds\":{:.3},\"quiet_for_seconds\":{:.3},\"last_connection_unix\":{},\"last_bytes_unix\":{},\"unavailable\":{}}}",
        ports.join(","),
        window.as_secs_f64(),
        quiet_for.as_secs_f64(),
        unix(t.last_connection),
        unix(t.last_bytes),
        t.unavailable.as_ref().map_or("null".into(), |u| format!("\"{}\"", json::escape(u))),
    )
}

/// `at` during drain `d`, as Unix time.
fn unix_time(d: &Drain, at: Instant) -> f64 {
    let started = d
        .started_at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |t| t.as_secs_f64());
    started + at.saturating_duration_since(d.since).as_secs_f64()
}

/// The load balancers' probers heard so far, as a JSON array.
fn probers_json(probers: &[Prober]) -> String {
    let now = Instant::now();
    let items: Vec<String> = probers
        .iter()
        .map(|p| {
            format!(
                "{{\"addr\":\"{}\",\"user_agent\":\"{}\",\"interval_seconds\":{},\"last_seen_seconds_ago\":{:.3},\"unready_answers\":{},\"standing\":\"{}\"}}",
                p.id.addr,
                json::escape(&p.id.agent),
                p.interval.map_or("null".into(), |i| format!("{:.3}", i.as_secs_f64())),
                now.saturating_duration_since(p.last_seen).as_secs_f64(),
                p.unready,
                standing(p.standing),
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn standing(s: Standing) -> &'static str {
    match s {
        Standing::Uncounted => "not waited for",
        Standing::Waiting => "waited for",
        Standing::Done(_) => "saw the drain",
        Standing::Silent(_) => "went silent",
    }
}

/// The `# HELP` and `# TYPE` lines that open a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The /metrics page, in Prometheus' text format.
pub fn metrics(shared: &Shared) -> Reply {
    let mut out = String::new();
    let (state, drains, child_up, probers, waits) = shared.machine(|m| {
        let waits: Vec<(Ended, u64)> = m.waits_ended().collect();
        (
            m.state().clone(),
            m.drains(),
            m.child_alive(),
            m.probers().to_vec(),
            waits,
        )
    });
    let current = state.name();
    family(
        &mut out,
        "drainit_state",
        "gauge",
        "Current drain state (1 for the current one).",
    );
    for name in State::NAMES {
        let _ = writeln!(
            out,
            "drainit_state{{state=\"{name}\"}} {}",
            u8::from(name == current)
        );
    }
    family(
        &mut out,
        "drainit_child_up",
        "gauge",
        "Whether the child is running.",
    );
    let _ = writeln!(out, "drainit_child_up {}", u8::from(child_up));
    family(
        &mut out,
        "drainit_drains_total",
        "counter",
        "Drains started.",
    );
    let _ = writeln!(out, "drainit_drains_total {drains}");
    let waited = state
        .drain()
        .and_then(|d| d.waited)
        .map_or(0.0, |w| w.as_secs_f64());
    family(
        &mut out,
        "drainit_drain_duration_seconds",
        "gauge",
        "How long the last drain held the stop signal.",
    );
    let _ = writeln!(out, "drainit_drain_duration_seconds {waited:.3}");
    family(
        &mut out,
        "drainit_signals_forwarded_total",
        "counter",
        "Signals forwarded to the child.",
    );
    for (sig, n) in shared.metrics.forwarded() {
        let _ = writeln!(
            out,
            "drainit_signals_forwarded_total{{signal=\"{}\"}} {n}",
            signals::name(sig)
        );
    }
    let reaped = shared
        .metrics
        .reaped
        .load(std::sync::atomic::Ordering::Relaxed);
    family(
        &mut out,
        "drainit_zombies_reaped_total",
        "counter",
        "Orphans and other children reaped.",
    );
    let _ = writeln!(out, "drainit_zombies_reaped_total {reaped}");
    family(
        &mut out,
        "drainit_log_lines_dropped_total",
        "counter",
        "Log lines dropped because the log could not be written fast enough.",
    );
    let _ = writeln!(
        out,
        "drainit_log_lines_dropped_total {}",
        logger::dropped_total()
    );
    family(
        &mut out,
        "drainit_health_responses_total",
        "counter",
        "Health answers by path and status.",
    );
    for (path, code, n) in shared.metrics.answers() {
        let _ = writeln!(
            out,
            "drainit_health_responses_total{{path=\"{path}\",code=\"{code}\"}} {n}"
        );
    }
    family(
        &mut out,
        "drainit_drain_waits_total",
        "counter",
        "Drain waits that ended, by what ended them.",
    );
    for (ended, n) in waits {
        let _ = writeln!(
            out,
            "drainit_drain_waits_total{{ended=\"{}\"}} {n}",
            ended.name()
        );
    }
    prober_metrics(&mut out, &probers);
    traffic_metrics(&mut out, state.drain());
    Reply {
        code: 200,
        content_type: "text/plain; version=0.0.4",
        body: out,
        allow: None,
    }
}

/// What the current or last drain waiting for quiet saw of the traffic.
fn traffic_metrics(out: &mut String, drain: Option<&Drain>) {
    let Some((d, t)) = drain.and_then(|d| d.traffic.as_ref().map(|t| (d, t))) else {
        return;
    };
    let end = d.waited.map_or_else(Instant::now, |w| d.since + w);
    family(
        out,
        "drainit_drain_traffic_quiet_seconds",
        "gauge",
        "How long the app's traffic had been quiet in the current or last drain.",
    );
    let quiet = end.saturating_duration_since(t.last_activity);
    let _ = writeln!(
        out,
        "drainit_drain_traffic_quiet_seconds {:.3}",
        quiet.as_secs_f64()
    );
    for (name, at, help) in [
        (
            "connection",
            t.last_connection,
            "A new connection to the app was last seen",
        ),
        ("bytes", t.last_bytes, "The app last received bytes"),
    ] {
        if let Some(at) = at {
            let metric = format!("drainit_drain_traffic_last_{name}_timestamp_seconds");
            family(
                out,
                &metric,
                "gauge",
                &format!("{help}, in the current or last drain."),
            );
            let _ = writeln!(out, "{metric} {:.3}", unix_time(d, at));
        }
    }
}

/// One sample per prober heard (at most 64): its interval, and the
/// unready answers it had in the current or last drain.
fn prober_metrics(out: &mut String, probers: &[Prober]) {
    family(
        out,
        "drainit_prober_interval_seconds",
        "gauge",
        "Time between a prober's last two readiness probes.",
    );
    for p in probers {
        if let Some(i) = p.interval {
            let _ = writeln!(
                out,
                "drainit_prober_interval_seconds{{{}}} {:.3}",
                prober_labels(p),
                i.as_secs_f64()
            );
        }
    }
    family(
        out,
        "drainit_prober_unready_answers",
        "gauge",
        "Readiness answered not ready to a prober since the drain began.",
    );
    for p in probers {
        let _ = writeln!(
            out,
            "drainit_prober_unready_answers{{{}}} {}",
            prober_labels(p),
            p.unready
        );
    }
}

fn prober_labels(p: &Prober) -> String {
    format!(
        "addr=\"{}\",user_agent=\"{}\"",
        p.id.addr,
        label_value(&p.id.agent)
    )
}

/// A label value as Prometheus' text format wants it: backslash, double
/// quote and line feed escaped. User-Agents are the client's words.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
