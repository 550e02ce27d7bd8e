//! The drain state machine: whether traffic should be routed to us, and
//! what happens between a stop signal and the child seeing it.
//!
//! ```text
//! starting --checks pass--> ready <--checks flip--> unready
//!     \                       |  \
//!      \            drain sig |   /sethealth/ko (manual)
//!       \                     v   v
//!        \                  draining --wait over / 2nd signal--> stopping --child gone--> exited
//!         `--stop signal while not routable (nothing to drain) ------^
//! ```
//!
//! The machine does no I/O. It answers each event with an [`Action`] for
//! the supervisor and tells it the next instant it must be woken at; every
//! transition is logged with its reason.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use libc::c_int;

use crate::probers::{Change, Prober, ProberId, Probers, Standing};
use crate::signals::{self, Rewrites};

/// How drain signals are held back and for how long.
#[derive(Clone, Debug)]
pub struct DrainPolicy {
    /// Signals that drain before they are forwarded.
    pub on: Vec<c_int>,
    /// Whether `on` came from the user (the first `--drain-on` replaces the default).
    pub explicit_signals: bool,
    /// The fixed wait; with `checks`, the wait when no prober was seen.
    pub delay: Duration,
    /// End the wait once every prober seen before the drain has had this
    /// many readiness probes answered unready...
    pub checks: Option<u32>,
    /// ...and then this long, for requests the proxy had already dispatched.
    pub linger: Duration,
    /// User-Agents (case-insensitive substrings) of probers that never count.
    pub ignore_agents: Vec<String>,
    /// End the wait once the app's sockets had no new connection and
    /// received no byte for this long (then `delay` is the least wait).
    pub quiet: Option<Duration>,
    /// Cap on any wait.
    pub timeout: Option<Duration>,
    /// Readiness status while draining (503, or 404 for HAProxy's disable-on-404).
    pub status: u16,
}

impl Default for DrainPolicy {
    fn default() -> DrainPolicy {
        DrainPolicy {
            on: vec![libc::SIGTERM],
            explicit_signals: false,
            delay: Duration::from_secs(3),
            checks: None,
            linger: Duration::from_secs(1),
            ignore_agents: Vec::new(),
            quiet: None,
            timeout: None,
            status: 503,
        }
    }
}

impl DrainPolicy {
    /// `--drain-on`: the first one replaces the default signal.
    pub fn add_signal(&mut self, sig: c_int) -> Result<(), String> {
        if !self.explicit_signals {
            self.on.clear();
            self.explicit_signals = true;
        }
        self.on.push(sig);
        Ok(())
    }

    /// `--drain-status`: 503, or 404 for HAProxy's `http-check disable-on-404`.
    pub fn parse_status(value: &str) -> Result<u16, String> {
        match value.trim() {
            "503" => Ok(503),
            "404" => Ok(404),
            _ => Err(format!("'{value}' is not 503 or 404")),
        }
    }

    /// The longest a drain can hold a signal back: the timeout, which
    /// option validation sets when the wait depends on probers.
    pub fn longest_wait(&self) -> Duration {
        match self.timeout {
            Some(t) if self.adaptive() => t,
            t => t.map_or(self.delay, |t| t.min(self.delay)),
        }
    }

    /// Whether the wait depends on what is observed (probers, traffic),
    /// not on a fixed delay alone.
    pub fn adaptive(&self) -> bool {
        self.checks.is_some() || self.quiet.is_some()
    }
}

/// Why traffic is being drained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainReason {
    /// `/sethealth/ko` or `drainit drain`.
    Manual,
    /// A drain signal arrived.
    Signal(c_int),
}

impl fmt::Display for DrainReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainReason::Manual => f.write_str("manual"),
            DrainReason::Signal(sig) => f.write_str(&signals::name(*sig)),
        }
    }
}

/// One drain, from its start until the held signal is forwarded.
#[derive(Clone, Debug)]
pub struct Drain {
    pub reason: DrainReason,
    pub since: Instant,
    pub started_at: SystemTime,
    /// The drain signal waiting to be forwarded; `None` for a manual drain
    /// that no signal has joined yet.
    pub held: Option<c_int>,
    /// Readiness probes answered "not ready" since the drain began.
    pub unready_answers: u32,
    /// Probers the wait is for (`--drain-checks`); none: the fixed delay.
    pub probers: usize,
    /// The app's traffic, when the wait is for it to stop.
    pub traffic: Option<Traffic>,
    /// How long the wait lasted and why it ended, once it is over.
    pub waited: Option<Duration>,
    pub ended: Option<Ended>,
}

/// What a drain waiting for quiet has seen of the app's traffic.
#[derive(Clone, Debug)]
pub struct Traffic {
    /// The app's listening ports watched; empty until the watcher found
    /// them, or when there are none.
    pub ports: Vec<u16>,
    /// When traffic was last seen: the drain's start until it is.
    pub last_activity: Instant,
    pub last_connection: Option<Instant>,
    pub last_bytes: Option<Instant>,
    /// Why the traffic cannot be watched; the timeout then ends the wait.
    pub unavailable: Option<String>,
}

/// Why a drain's wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The fixed `--drain-delay`.
    Delay,
    /// Every prober saw enough unready answers (`--drain-checks`).
    Checks,
    /// The app's traffic stopped (`--drain-until-quiet`).
    Quiet,
    /// `--drain-timeout`.
    Timeout,
    /// A second stop signal.
    Signal,
    /// The child exited first.
    Exit,
}

impl Ended {
    pub const ALL: [Ended; 6] = [
        Ended::Delay,
        Ended::Checks,
        Ended::Quiet,
        Ended::Timeout,
        Ended::Signal,
        Ended::Exit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Ended::Delay => "delay",
            Ended::Checks => "checks",
            Ended::Quiet => "quiet",
            Ended::Timeout => "timeout",
            Ended::Signal => "signal",
            Ended::Exit => "exit",
        }
    }
}

/// The stop: the child has been asked to exit.
#[derive(Clone, Debug)]
pub struct Stop {
    pub signal: c_int,
    /// When the child's group gets SIGKILL; `None` once it has.
    pub kill_at: Option<Instant>,
    pub drain: Option<Drain>,
}

#[derive(Clone, Debug)]
pub enum State {
    Starting,
    Ready,
    Unready,
    Draining(Drain),
    Stopping(Stop),
    Exited {
        code: i32,
        drain: Option<Drain>,
        cleanup: Cleanup,
    },
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Unready => "unready",
            State::Draining(_) => "draining",
            State::Stopping(_) => "stopping",
            State::Exited { .. } => "exited",
        }
    }

    /// All state names, for metrics that list every state.
    pub const NAMES: [&'static str; 6] = [
        "starting", "ready", "unready", "draining", "stopping", "exited",
    ];

    /// The current or most recent drain.
    pub fn drain(&self) -> Option<&Drain> {
        match self {
            State::Draining(d) => Some(d),
            State::Stopping(s) => s.drain.as_ref(),
            State::Exited { drain, .. } => drain.as_ref(),
            _ => None,
        }
    }
}

/// How a stop proceeds once the child has been asked to exit.
#[derive(Clone, Debug)]
pub struct StopPolicy {
    /// How received signals map to forwarded ones (`-r FROM:TO`).
    pub rewrites: Rewrites,
    /// After a stop signal, SIGKILL the child's group this much later;
    /// `None` leaves that to the orchestrator, as tini and dumb-init do.
    pub grace: Option<Duration>,
    /// Adopted daemons get the stop signal with the child and are waited
    /// for; otherwise they are killed once the child is gone (tini).
    pub wait_adopted: bool,
    /// dumb-init's way: a job-control stop (SIGTSTP, SIGTTIN, SIGTTOU)
    /// stops drainit as well once forwarded.
    pub job_control: bool,
}

impl Default for StopPolicy {
    fn default() -> StopPolicy {
        StopPolicy {
            rewrites: Rewrites::default(),
            grace: None,
            wait_adopted: true,
            job_control: false,
        }
    }
}

/// How long what the child left behind gets between SIGTERM and SIGKILL
/// when no grace period is running (never more than --grace).
pub const LEFTOVER_WAIT: Duration = Duration::from_secs(2);
/// How long SIGKILLed leftovers get to be reaped before drainit exits anyway.
pub const KILL_WAIT: Duration = Duration::from_secs(1);

/// What the supervisor must do after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Send this (rewritten) signal to the child.
    Forward(c_int),
    /// Send this (rewritten) signal to the child and to adopted daemons:
    /// it asks them to exit.
    Stop(c_int),
    /// Send this (rewritten) job-control stop to the child, unless the
    /// rewrite dropped it, then stop drainit itself, as a shell expects of
    /// dumb-init.
    Suspend(Option<c_int>),
    /// The grace period is over: SIGKILL the child's group and adopted daemons.
    Kill,
    /// The child is gone: SIGTERM what it left behind that never had a
    /// stop signal (`after_stop`: whether a stop signal went out at all).
    TermLeftovers {
        after_stop: bool,
    },
    /// SIGKILL whatever is left.
    KillLeftovers,
    /// Leftovers outlived SIGKILL's wait: exit without them.
    GiveUp,
}

/// After the child exited: what is left of its descendants gets until
/// `until`, first after SIGTERM, then after SIGKILL.
#[derive(Clone, Copy, Debug)]
pub struct Cleanup {
    pub until: Instant,
    pub killed: bool,
}

/// A control request that the current state cannot honour.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub &'static str);

pub struct Machine {
    state: State,
    drain: DrainPolicy,
    stop: StopPolicy,
    /// The readiness checks' latest verdict; `None` until the first one.
    app_ready: Option<bool>,
    drains: u64,
    /// The load balancers' probers heard so far.
    probers: Probers,
    /// Why no drain can watch the app's traffic (its watcher did not start).
    traffic_unwatchable: Option<String>,
    /// Drain waits that ended, by why (in the order of `Ended::ALL`).
    waits_ended: [u64; Ended::ALL.len()],
    /// What the caller must do once the lock is released: log lines of
    /// transitions, and waking the traffic watcher.
    effects: Vec<Effect>,
}

/// What the machine asks of the world, applied by the caller once the
/// machine's lock is released: a stalled log or a waking thread must never
/// hold the lock.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    Log(String),
    /// A drain began that waits for the app's traffic to stop: the traffic
    /// watcher must start sampling.
    WatchTraffic,
}

impl Machine {
    pub fn new(drain: DrainPolicy, stop: StopPolicy) -> Machine {
        let probers = Probers::new(drain.ignore_agents.clone());
        Machine {
            state: State::Starting,
            drain,
            stop,
            app_ready: None,
            drains: 0,
            probers,
            traffic_unwatchable: None,
            waits_ended: [0; Ended::ALL.len()],
            effects: Vec::new(),
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn drains(&self) -> u64 {
        self.drains
    }

    pub fn probers(&self) -> &[Prober] {
        self.probers.all()
    }

    /// How many drain waits ended, for each reason.
    pub fn waits_ended(&self) -> impl Iterator<Item = (Ended, u64)> + '_ {
        Ended::ALL.into_iter().zip(self.waits_ended)
    }

    /// Whether a proxy should route traffic to us.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    /// Whether the child is still running (or not yet known to be gone).
    pub fn child_alive(&self) -> bool {
        !matches!(self.state, State::Exited { .. })
    }

    /// The log lines of what happened since the last call.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn note(&mut self, line: String) {
        self.effects.push(Effect::Log(line));
    }

    fn set(&mut self, next: State, reason: &str) {
        let line = format!("state {} -> {}: {reason}", self.state.name(), next.name());
        self.note(line);
        self.state = next;
    }

    /// The readiness checks flipped (or, without checks, the child started).
    pub fn checks_changed(&mut self, ready: bool, reason: &str) {
        self.app_ready = Some(ready);
        match (&self.state, ready) {
            (State::Starting | State::Unready, true) => self.set(State::Ready, reason),
            (State::Ready, false) => self.set(State::Unready, reason),
            _ => {}
        }
    }

    /// A signal arrived for the child: hold it for a drain, forward it,
    /// or drop it. This is the one place that decides a stop began.
    pub fn on_signal(&mut self, received: c_int, now: Instant) -> Action {
        if matches!(self.state, State::Exited { .. }) {
            return Action::Nothing;
        }
        if self.drain.on.contains(&received) {
            return self.drain_signal(received, now);
        }
        let rewritten = self.stop.rewrites.apply(received);
        // dumb-init stops itself even when the stop is rewritten away.
        if self.stop.job_control && signals::is_job_control_stop(received) {
            return Action::Suspend(rewritten);
        }
        let Some(sig) = rewritten else {
            return Action::Nothing;
        };
        if !signals::is_terminating(sig) || matches!(self.state, State::Stopping(_)) {
            return Action::Forward(sig);
        }
        let drain = self
            .state
            .drain()
            .cloned()
            .map(|d| finish(d, now, Ended::Signal));
        // stop() rewrites what it is given: hand it the signal as received.
        self.stop(
            received,
            drain,
            now,
            &format!("{} forwarded", signals::name(sig)),
        )
    }

    /// A drain signal: the first holds back while the proxy stops routing,
    /// a second one skips the rest of the wait.
    fn drain_signal(&mut self, sig: c_int, now: Instant) -> Action {
        let name = signals::name(sig);
        match &mut self.state {
            State::Ready => {
                let why = format!("{name} received; holding it while the proxy stops routing");
                let drain = self.begin_drain(DrainReason::Signal(sig), Some(sig), now);
                self.set(State::Draining(drain), &why);
                Action::Nothing
            }
            State::Starting | State::Unready => {
                let why = format!("{name} received while not routable; nothing to drain");
                self.stop(sig, None, now, &why)
            }
            State::Draining(d)
                if d.held.is_none() && wait_over(&self.drain, &self.probers, d, now).is_none() =>
            {
                d.held = Some(sig);
                self.note(format!(
                    "{name} received during a manual drain; forwarding it when the wait is over"
                ));
                Action::Nothing
            }
            State::Draining(d) => {
                let held = d.held.unwrap_or(sig);
                let (why, ended) = if d.held.is_some() {
                    let why = format!("second {name}: skipping the rest of the drain wait");
                    (why, Ended::Signal)
                } else {
                    let ended =
                        wait_over(&self.drain, &self.probers, d, now).unwrap_or(Ended::Signal);
                    (
                        format!("{name} received after the manual drain wait"),
                        ended,
                    )
                };
                let drain = finish(d.clone(), now, ended);
                self.count_wait_end(ended);
                self.stop(held, Some(drain), now, &why)
            }
            State::Stopping(_) => self
                .stop
                .rewrites
                .apply(sig)
                .map_or(Action::Nothing, Action::Forward),
            State::Exited { .. } => Action::Nothing,
        }
    }

    /// The child is asked to exit with `received` (rewritten here).
    fn stop(&mut self, received: c_int, drain: Option<Drain>, now: Instant, why: &str) -> Action {
        let Some(sig) = self.stop.rewrites.apply(received) else {
            return Action::Nothing;
        };
        let stop = Stop {
            signal: sig,
            kill_at: self.stop.grace.map(|g| now + g),
            drain,
        };
        self.set(State::Stopping(stop), why);
        if self.stop.wait_adopted {
            Action::Stop(sig)
        } else {
            Action::Forward(sig)
        }
    }

    /// `/sethealth/ko` (`drain == true`) or `/sethealth/ok`.
    pub fn manual(&mut self, drain: bool, now: Instant) -> Result<(), Refused> {
        match (&self.state, drain) {
            (State::Starting | State::Ready | State::Unready, true) => {
                let drain = self.begin_drain(DrainReason::Manual, None, now);
                self.set(State::Draining(drain), "manual drain requested");
                Ok(())
            }
            (State::Draining(d), false) if d.held.is_none() => {
                let next = match self.app_ready {
                    None => State::Starting,
                    Some(true) => State::Ready,
                    Some(false) => State::Unready,
                };
                self.set(next, "manual drain cancelled");
                Ok(())
            }
            (State::Draining(_), true) => Ok(()),
            (State::Starting | State::Ready | State::Unready, false) => Ok(()),
            (State::Draining(_), false) => Err(Refused(
                "a stop signal is held; the drain cannot be cancelled",
            )),
            (State::Stopping(_) | State::Exited { .. }, _) => Err(Refused("the child is stopping")),
        }
    }

    /// A drain begins: with `--drain-checks`, the probers heard recently
    /// are the ones its wait is for.
    fn begin_drain(&mut self, reason: DrainReason, held: Option<c_int>, now: Instant) -> Drain {
        self.drains += 1;
        let probers = match self.drain.checks {
            Some(n) => {
                let count = self.probers.drain_begins(now);
                let line = if count == 0 {
                    format!(
                        "no prober was seen before the drain; the wait is the fixed delay of {:?}",
                        self.drain.delay
                    )
                } else {
                    let names: Vec<String> = self
                        .probers
                        .waited_for()
                        .map(|p| p.id.to_string())
                        .collect();
                    format!(
                        "waiting until each of {count} probers has seen {n} unready answers: {}",
                        names.join(", ")
                    )
                };
                self.note(line);
                count
            }
            None => 0,
        };
        let traffic = self.drain.quiet.map(|_| {
            self.effects.push(Effect::WatchTraffic);
            Traffic {
                ports: Vec::new(),
                last_activity: now,
                last_connection: None,
                last_bytes: None,
                unavailable: self.traffic_unwatchable.clone(),
            }
        });
        Drain {
            reason,
            since: now,
            started_at: SystemTime::now(),
            held,
            unready_answers: 0,
            probers,
            traffic,
            waited: None,
            ended: None,
        }
    }

    /// `--drain-until-quiet`'s window.
    pub fn quiet_window(&self) -> Option<Duration> {
        self.drain.quiet
    }

    /// Whether a drain waits for the app's traffic to stop, so the
    /// watcher must go on sampling it.
    pub fn watching_traffic(&self) -> bool {
        matches!(&self.state, State::Draining(d) if d.traffic.is_some())
    }

    fn traffic(&mut self) -> Option<&mut Traffic> {
        match &mut self.state {
            State::Draining(d) => d.traffic.as_mut(),
            _ => None,
        }
    }

    /// The traffic watcher could not start: no drain can watch traffic.
    pub fn traffic_unwatchable(&mut self, why: String) {
        self.traffic_unwatchable = Some(why);
    }

    /// The ports the traffic watcher watches.
    pub fn traffic_ports(&mut self, ports: Vec<u16>) {
        let line = if ports.is_empty() {
            "the app listens on no port: nothing to wait for but the delay".to_string()
        } else {
            format!("watching the traffic on port(s) {ports:?} until it stops")
        };
        if let Some(t) = self.traffic() {
            t.ports = ports;
            self.note(line);
        }
    }

    /// The watcher saw a new connection or received bytes at `now`.
    pub fn traffic_seen(&mut self, connection: bool, bytes: bool, now: Instant) {
        if let Some(t) = self.traffic() {
            t.last_activity = now;
            if connection {
                t.last_connection = Some(now);
            }
            if bytes {
                t.last_bytes = Some(now);
            }
        }
    }

    /// The traffic cannot be watched (no sock_diag here, say): the timeout
    /// ends the wait.
    pub fn traffic_unavailable(&mut self, why: String) {
        if let Some(t) = self.traffic() {
            let line =
                format!("cannot watch the app's traffic ({why}); the drain timeout ends the wait");
            t.unavailable = Some(why);
            self.note(line);
        }
    }

    /// A readiness probe (/readyz, /health) from `prober` (`None`: not a
    /// load balancer, such as a client of the control socket). Returns
    /// true when it may have ended a wait, so the supervisor must read its
    /// deadline again.
    pub fn readiness_probed(&mut self, prober: Option<ProberId>, now: Instant) -> bool {
        let draining = match &mut self.state {
            State::Draining(d) => {
                d.unready_answers = d.unready_answers.saturating_add(1);
                true
            }
            _ => false,
        };
        let (Some(prober), Some(needed)) = (prober, self.drain.checks) else {
            return false;
        };
        let Some(Change::Done(id)) = self.probers.probed(prober, now, draining, needed) else {
            return false;
        };
        self.note(format!("{id} has seen {needed} unready answers"));
        true
    }

    fn count_wait_end(&mut self, ended: Ended) {
        if let Some(i) = Ended::ALL.iter().position(|e| *e == ended) {
            self.waits_ended[i] += 1;
        }
    }

    /// Time passed: ends a drain wait, a grace period or a cleanup that is due.
    pub fn tick(&mut self, now: Instant) -> Action {
        if self.next_deadline().is_none_or(|t| now < t) {
            return Action::Nothing;
        }
        if let State::Draining(_) = self.state {
            for Change::Silent(id) | Change::Done(id) in self.probers.silence(now) {
                self.note(format!(
                    "{id} stopped probing; the drain no longer waits for it"
                ));
            }
        }
        match &mut self.state {
            State::Draining(d) => {
                let Some(ended) = wait_over(&self.drain, &self.probers, d, now) else {
                    return Action::Nothing;
                };
                let held = d.held.unwrap_or(libc::SIGTERM);
                let why = format!(
                    "drain wait over ({})",
                    why_over(&self.drain, &self.probers, d, ended)
                );
                let drain = finish(d.clone(), now, ended);
                self.count_wait_end(ended);
                self.stop(held, Some(drain), now, &why)
            }
            State::Stopping(s) => {
                s.kill_at = None;
                self.note("grace period over; killing the child's process group".into());
                Action::Kill
            }
            State::Exited { cleanup, .. } if !cleanup.killed => {
                *cleanup = Cleanup {
                    until: now + KILL_WAIT,
                    killed: true,
                };
                Action::KillLeftovers
            }
            State::Exited { .. } => Action::GiveUp,
            _ => Action::Nothing,
        }
    }

    /// When [`tick`](Self::tick) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Draining(d) if d.held.is_some() => {
                let end = wait_end(&self.drain, &self.probers, d).map(|(at, _)| at);
                let silence = self.probers.next_silence().filter(|_| d.probers > 0);
                end.into_iter().chain(silence).min()
            }
            State::Stopping(s) => s.kill_at,
            State::Exited { cleanup, .. } => Some(cleanup.until),
            _ => None,
        }
    }

    /// The child exited with `code`. What it left behind gets the rest of a
    /// grace period that runs, or a short wait; adopted daemons that were
    /// not to be waited for are killed at once.
    pub fn child_exited(&mut self, code: i32, now: Instant) -> Action {
        let (drain, grace_end, after_stop) = match &self.state {
            State::Stopping(s) => (s.drain.clone(), s.kill_at, true),
            other => (other.drain().cloned(), None, false),
        };
        if let State::Draining(d) = &self.state {
            if d.held.is_some() {
                self.count_wait_end(Ended::Exit);
            }
        }
        let short = self
            .stop
            .grace
            .map_or(LEFTOVER_WAIT, |g| g.min(LEFTOVER_WAIT));
        let (action, until) = if self.stop.wait_adopted {
            let action = Action::TermLeftovers { after_stop };
            (action, grace_end.unwrap_or(now + short))
        } else {
            (Action::KillLeftovers, now + KILL_WAIT)
        };
        let cleanup = Cleanup {
            until,
            killed: action == Action::KillLeftovers,
        };
        self.set(
            State::Exited {
                code,
                drain: drain.map(|d| finish(d, now, Ended::Exit)),
                cleanup,
            },
            &format!("child exited with status {code}"),
        );
        action
    }
}

/// When the wait of drain `d` ends and why: once every condition it
/// waits for is met (every prober saw it, plus the linger; the traffic was
/// quiet for the window, and no earlier than the delay), or without one
/// after the fixed delay; the timeout caps it. `None` while a condition is
/// not met and no timeout is set.
fn wait_end(policy: &DrainPolicy, probers: &Probers, d: &Drain) -> Option<(Instant, Ended)> {
    let mut conditions = Vec::new();
    if policy.checks.is_some() && d.probers > 0 {
        let seen = probers.all_seen_it();
        conditions.push(seen.map(|at| (at + policy.linger, Ended::Checks)));
    }
    if let (Some(window), Some(t)) = (policy.quiet, &d.traffic) {
        let quiet = (t.last_activity + window).max(d.since + policy.delay);
        conditions.push(t.unavailable.is_none().then_some((quiet, Ended::Quiet)));
    }
    if conditions.is_empty() {
        conditions.push(Some((d.since + policy.delay, Ended::Delay)));
    }
    let end = conditions
        .into_iter()
        .try_fold(None, |last: Option<(Instant, Ended)>, met| {
            met.map(|m| Some(last.filter(|l| l.0 >= m.0).unwrap_or(m)))
        })
        .flatten();
    let cap = policy.timeout.map(|t| (d.since + t, Ended::Timeout));
    match (end, cap) {
        (Some(end), Some(cap)) if cap.0 < end.0 => Some(cap),
        (Some(end), _) => Some(end),
        (None, cap) => cap,
    }
}

fn wait_over(policy: &DrainPolicy, probers: &Probers, d: &Drain, now: Instant) -> Option<Ended> {
    wait_end(policy, probers, d)
        .filter(|(at, _)| now >= *at)
        .map(|(_, why)| why)
}

/// The log's account of why a wait ended.
fn why_over(policy: &DrainPolicy, probers: &Probers, d: &Drain, ended: Ended) -> String {
    match ended {
        Ended::Checks => {
            let names: Vec<String> = probers
                .waited_for()
                .map(|p| match p.standing {
                    Standing::Silent(_) => format!("{} (went silent)", p.id),
                    _ => format!("{} ({} unready answers)", p.id, p.unready),
                })
                .collect();
            format!(
                "checks: every prober saw the drain, then {:?} linger: {}",
                policy.linger,
                names.join(", ")
            )
        }
        Ended::Timeout => format!("drain timeout of {:?}", policy.timeout.unwrap_or_default()),
        Ended::Quiet => {
            let ports = d.traffic.as_ref().map_or(String::new(), |t| {
                let ports: Vec<String> = t.ports.iter().map(u16::to_string).collect();
                ports.join(", ")
            });
            format!(
                "quiet: no new connection and no byte received on port(s) {ports} for {:?}",
                policy.quiet.unwrap_or_default()
            )
        }
        Ended::Delay if policy.checks.is_some() && d.probers == 0 => format!(
            "drain delay of {:?}: no prober was seen before the drain",
            policy.delay
        ),
        _ => format!("drain delay of {:?}", policy.delay),
    }
}

/// The drain over: how long its wait lasted and why it ended, unless
/// that was settled already (a stop after a manual drain's wait).
fn finish(mut d: Drain, now: Instant, ended: Ended) -> Drain {
    if d.waited.is_none() {
        d.waited = Some(now.saturating_duration_since(d.since));
        d.ended = Some(ended);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: c_int = libc::SIGTERM;

    fn ready_machine(policy: DrainPolicy) -> Machine {
        let stop = StopPolicy {
            grace: Some(Duration::from_secs(5)),
            ..StopPolicy::default()
        };
        let mut m = Machine::new(policy, stop);
        m.checks_changed(true, "test");
        m
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn drain_holds_the_signal_until_the_delay() {
        let t0 = Instant::now();
        let mut m = ready_machine(DrainPolicy::default());
        assert_eq!(m.on_signal(TERM, t0), Action::Nothing);
        assert!(!m.is_ready());
        assert_eq!(m.next_deadline(), Some(t0 + secs(3.0)));
        assert_eq!(m.tick(t0 + secs(2.9)), Action::Nothing);
        assert_eq!(m.tick(t0 + secs(3.0)), Action::Stop(TERM));
        assert_eq!(m.next_deadline(), Some(t0 + secs(8.0)));
        assert_eq!(m.tick(t0 + secs(8.0)), Action::Kill);
        assert_eq!(m.next_deadline(), None);
    }

    fn prober(addr: &str) -> Option<ProberId> {
        Some(ProberId::new(addr.parse().unwrap(), Some("HAProxy")))
    }

    #[test]
    fn checks_wait_for_every_prober_then_linger() {
        let t0 = Instant::now();
        let policy = DrainPolicy {
            checks: Some(2),
            delay: secs(30.0),
            timeout: Some(secs(60.0)),
            ..DrainPolicy::default()
        };
        let mut m = ready_machine(policy);
        for k in 0..3 {
            m.readiness_probed(prober("10.0.0.2"), t0 + secs(0.5 * f64::from(k)));
            m.readiness_probed(prober("10.0.0.3"), t0 + secs(0.5 * f64::from(k)));
        }
        let drain = t0 + secs(1.2);
        m.on_signal(TERM, drain);
        assert_eq!(m.state().drain().unwrap().probers, 2);
        assert!(!m.readiness_probed(prober("10.0.0.2"), drain + secs(0.3)));
        assert!(m.readiness_probed(prober("10.0.0.2"), drain + secs(0.8)));
        assert!(!m.readiness_probed(None, drain + secs(0.9)), "not a prober");
        assert_eq!(
            m.tick(drain + secs(0.85)),
            Action::Nothing,
            "10.0.0.3 has seen nothing"
        );
        assert!(!m.readiness_probed(prober("10.0.0.3"), drain + secs(0.9)));
        assert!(m.readiness_probed(prober("10.0.0.3"), drain + secs(1.2)));
        assert_eq!(
            m.next_deadline(),
            Some(drain + secs(2.2)),
            "then the linger"
        );
        assert_eq!(m.tick(drain + secs(2.2)), Action::Stop(TERM));
        let d = m.state().drain().unwrap();
        assert_eq!((d.waited, d.ended), (Some(secs(2.2)), Some(Ended::Checks)));
    }

    #[test]
    fn without_probers_the_wait_is_the_delay() {
        let t0 = Instant::now();
        let policy = DrainPolicy {
            checks: Some(2),
            delay: secs(5.0),
            timeout: Some(secs(60.0)),
            ..DrainPolicy::default()
        };
        let mut m = ready_machine(policy);
        m.on_signal(TERM, t0);
        m.readiness_probed(prober("10.0.0.2"), t0 + secs(1.0));
        m.readiness_probed(prober("10.0.0.2"), t0 + secs(2.0));
        assert_eq!(m.next_deadline(), Some(t0 + secs(5.0)));
        assert_eq!(m.tick(t0 + secs(5.0)), Action::Stop(TERM));
        assert_eq!(m.state().drain().unwrap().ended, Some(Ended::Delay));
    }

    fn quiet_machine() -> Machine {
        let policy = DrainPolicy {
            quiet: Some(secs(0.5)),
            delay: secs(1.0),
            timeout: Some(secs(10.0)),
            ..DrainPolicy::default()
        };
        ready_machine(policy)
    }

    #[test]
    fn quiet_ends_the_wait_a_window_after_the_last_traffic() {
        let t0 = Instant::now();
        let mut m = quiet_machine();
        m.on_signal(TERM, t0);
        assert!(m.take_effects().contains(&Effect::WatchTraffic));
        assert!(m.watching_traffic());
        m.traffic_ports(vec![8080]);
        m.traffic_seen(true, false, t0 + secs(1.8));
        m.traffic_seen(false, true, t0 + secs(2.0));
        assert_eq!(m.next_deadline(), Some(t0 + secs(2.5)));
        assert_eq!(m.tick(t0 + secs(2.5)), Action::Stop(TERM));
        assert!(!m.watching_traffic());
        let d = m.state().drain().unwrap();
        assert_eq!(d.ended, Some(Ended::Quiet));
        let t = d.traffic.as_ref().unwrap();
        assert_eq!(
            (t.last_connection, t.last_bytes),
            (Some(t0 + secs(1.8)), Some(t0 + secs(2.0)))
        );
    }

    #[test]
    fn quiet_waits_at_least_the_delay_and_at_most_the_timeout() {
        let t0 = Instant::now();
        let mut m = quiet_machine();
        m.on_signal(TERM, t0);
        assert_eq!(
            m.next_deadline(),
            Some(t0 + secs(1.0)),
            "quiet at once, but the delay"
        );
        let mut m = quiet_machine();
        m.on_signal(TERM, t0);
        m.traffic_seen(false, true, t0 + secs(9.8));
        assert_eq!(m.next_deadline(), Some(t0 + secs(10.0)));
        assert_eq!(m.tick(t0 + secs(10.0)), Action::Stop(TERM));
        assert_eq!(m.state().drain().unwrap().ended, Some(Ended::Timeout));
        let mut m = quiet_machine();
        m.on_signal(TERM, t0);
        m.traffic_unavailable("no sock_diag".into());
        assert_eq!(
            m.next_deadline(),
            Some(t0 + secs(10.0)),
            "unwatched: the timeout"
        );
    }

    #[test]
    fn timeout_caps_the_wait() {
        let t0 = Instant::now();
        let policy = DrainPolicy {
            checks: Some(5),
            delay: secs(30.0),
            timeout: Some(secs(4.0)),
            ..DrainPolicy::default()
        };
        let mut m = ready_machine(policy);
        m.on_signal(TERM, t0);
        assert_eq!(m.next_deadline(), Some(t0 + secs(4.0)));
        assert_eq!(m.tick(t0 + secs(4.0)), Action::Stop(TERM));
        assert_eq!(m.state().drain().unwrap().ended, Some(Ended::Timeout));
    }

    #[test]
    fn second_signal_forwards_at_once() {
        let t0 = Instant::now();
        let mut m = ready_machine(DrainPolicy::default());
        m.on_signal(TERM, t0);
        assert_eq!(m.on_signal(TERM, t0 + secs(0.5)), Action::Stop(TERM));
        assert_eq!(m.state().name(), "stopping");
    }

    #[test]
    fn nothing_to_drain_before_ready() {
        let mut m = Machine::new(DrainPolicy::default(), StopPolicy::default());
        assert_eq!(m.on_signal(TERM, Instant::now()), Action::Stop(TERM));
    }

    #[test]
    fn manual_drain_then_signal() {
        let t0 = Instant::now();
        let mut m = ready_machine(DrainPolicy::default());
        m.manual(true, t0).unwrap();
        assert!(!m.is_ready());
        assert_eq!(
            m.next_deadline(),
            None,
            "a manual drain alone holds nothing"
        );
        assert_eq!(m.on_signal(TERM, t0 + secs(1.0)), Action::Nothing);
        assert_eq!(
            m.next_deadline(),
            Some(t0 + secs(3.0)),
            "the wait counts from the manual drain"
        );
        let mut m = ready_machine(DrainPolicy::default());
        m.manual(true, t0).unwrap();
        assert_eq!(m.on_signal(TERM, t0 + secs(4.0)), Action::Stop(TERM));
    }

    #[test]
    fn manual_undrain_returns_to_the_checks_verdict() {
        let t0 = Instant::now();
        let mut m = ready_machine(DrainPolicy::default());
        m.manual(true, t0).unwrap();
        m.checks_changed(false, "db down");
        assert!(!m.is_ready(), "drain wins over checks");
        m.manual(false, t0).unwrap();
        assert_eq!(m.state().name(), "unready");
        m.on_signal(TERM, t0);
        assert!(m.manual(false, t0).is_err());
    }

    #[test]
    fn signal_drain_cannot_be_cancelled() {
        let t0 = Instant::now();
        let mut m = ready_machine(DrainPolicy::default());
        m.on_signal(TERM, t0);
        assert!(m.manual(false, t0).is_err());
        m.checks_changed(true, "still fine");
        assert!(!m.is_ready());
    }

    #[test]
    fn exit_during_drain_ends_it_and_leftovers_get_a_short_wait() {
        let t0 = Instant::now();
        let mut m = ready_machine(DrainPolicy::default());
        m.on_signal(TERM, t0);
        let action = m.child_exited(0, t0 + secs(1.0));
        assert_eq!(action, Action::TermLeftovers { after_stop: false });
        assert_eq!(m.next_deadline(), Some(t0 + secs(1.0) + LEFTOVER_WAIT));
        assert_eq!(m.on_signal(TERM, t0 + secs(1.5)), Action::Nothing);
        assert_eq!(m.tick(t0 + secs(10.0)), Action::KillLeftovers);
        assert_eq!(m.next_deadline(), Some(t0 + secs(10.0) + KILL_WAIT));
        assert_eq!(m.tick(t0 + secs(12.0)), Action::GiveUp);
    }

    #[test]
    fn leftovers_of_a_stop_get_the_rest_of_the_grace_period() {
        let t0 = Instant::now();
        let stop = StopPolicy {
            grace: Some(secs(6.0)),
            ..StopPolicy::default()
        };
        let mut m = Machine::new(DrainPolicy::default(), stop);
        assert_eq!(m.on_signal(libc::SIGINT, t0), Action::Stop(libc::SIGINT));
        let action = m.child_exited(130, t0 + secs(1.0));
        assert_eq!(action, Action::TermLeftovers { after_stop: true });
        assert_eq!(m.next_deadline(), Some(t0 + secs(6.0)));
    }

    #[test]
    fn every_signal_is_decided_here() {
        let t0 = Instant::now();
        let mut rewrites = Rewrites::default();
        rewrites.add("USR1:0").unwrap();
        rewrites.add("QUIT:TERM").unwrap();
        let stop = StopPolicy {
            rewrites,
            grace: None,
            wait_adopted: false,
            job_control: false,
        };
        let mut m = Machine::new(DrainPolicy::default(), stop);
        assert_eq!(m.on_signal(libc::SIGUSR1, t0), Action::Nothing, "dropped");
        assert_eq!(m.on_signal(libc::SIGHUP, t0), Action::Forward(libc::SIGHUP));
        assert_eq!(m.state().name(), "starting", "HUP is no stop");
        assert_eq!(
            m.on_signal(libc::SIGQUIT, t0),
            Action::Forward(TERM),
            "rewritten; a stop, but adopted daemons are not waited for"
        );
        assert_eq!(m.state().name(), "stopping");
        assert_eq!(m.next_deadline(), None, "no grace: no SIGKILL from drainit");
        assert_eq!(m.on_signal(TERM, t0), Action::Forward(TERM));
        assert_eq!(m.child_exited(0, t0), Action::KillLeftovers);
    }

    /// Each received signal is rewritten exactly once: swapped signals
    /// stay swapped on the way to a stop.
    #[test]
    fn a_stop_signal_is_rewritten_once() {
        let t0 = Instant::now();
        let mut rewrites = Rewrites::default();
        rewrites.add("TERM:INT").unwrap();
        rewrites.add("INT:TERM").unwrap();
        let stop = StopPolicy {
            rewrites,
            ..StopPolicy::default()
        };
        let mut m = Machine::new(DrainPolicy::default(), stop);
        assert_eq!(m.on_signal(TERM, t0), Action::Stop(libc::SIGINT));
    }

    #[test]
    fn a_job_control_stop_suspends_even_when_dropped() {
        let t0 = Instant::now();
        let mut rewrites = Rewrites::default();
        rewrites.add("TSTP:0").unwrap();
        rewrites.add("TTIN:STOP").unwrap();
        let stop = StopPolicy {
            rewrites,
            job_control: true,
            ..StopPolicy::default()
        };
        let mut m = Machine::new(DrainPolicy::default(), stop);
        assert_eq!(m.on_signal(libc::SIGTSTP, t0), Action::Suspend(None));
        assert_eq!(
            m.on_signal(libc::SIGTTIN, t0),
            Action::Suspend(Some(libc::SIGSTOP))
        );
        assert_eq!(
            m.on_signal(libc::SIGTTOU, t0),
            Action::Suspend(Some(libc::SIGTTOU))
        );
        assert_eq!(m.state().name(), "starting");
    }
}
