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
use log::info;

use crate::signals;

/// How drain signals are held back and for how long.
#[derive(Clone, Debug)]
pub struct DrainPolicy {
    /// Signals that drain before they are forwarded.
    pub on: Vec<c_int>,
    /// Whether `on` came from the user (the first `--drain-on` replaces the default).
    pub explicit_signals: bool,
    /// The classic fixed wait.
    pub delay: Duration,
    /// End the wait after this many readiness probes were answered unready...
    pub checks: Option<u32>,
    /// ...and then this long, for requests the proxy had already dispatched.
    pub linger: Duration,
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
            timeout: None,
            status: 503,
        }
    }
}

impl DrainPolicy {
    /// The longest a drain can hold a signal back.
    pub fn longest_wait(&self) -> Duration {
        self.timeout.map_or(self.delay, |t| t.min(self.delay))
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
    /// When `unready_answers` reached `--drain-checks`.
    pub checks_met: Option<Instant>,
    /// How long the wait lasted, once it is over.
    pub waited: Option<Duration>,
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
    Exited { code: i32, drain: Option<Drain> },
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

/// What the supervisor must do after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Forward this (already received, not yet rewritten) signal now.
    Forward(c_int),
    /// The grace period is over: SIGKILL the child's process group.
    Kill,
}

/// A control request that the current state cannot honour.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub &'static str);

pub struct Machine {
    state: State,
    policy: DrainPolicy,
    grace: Duration,
    /// The readiness checks' latest verdict; `None` until the first one.
    app_ready: Option<bool>,
    drains: u64,
}

impl Machine {
    pub fn new(policy: DrainPolicy, grace: Duration) -> Machine {
        Machine {
            state: State::Starting,
            policy,
            grace,
            app_ready: None,
            drains: 0,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn drains(&self) -> u64 {
        self.drains
    }

    pub fn is_drain_signal(&self, sig: c_int) -> bool {
        self.policy.on.contains(&sig)
    }

    /// Whether a proxy should route traffic to us.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    /// Whether the child is still running (or not yet known to be gone).
    pub fn child_alive(&self) -> bool {
        !matches!(self.state, State::Exited { .. })
    }

    fn set(&mut self, next: State, reason: &str) {
        info!("state {} -> {}: {reason}", self.state.name(), next.name());
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

    /// A drain signal arrived.
    pub fn drain_signal(&mut self, sig: c_int, now: Instant) -> Action {
        let name = signals::name(sig);
        match &mut self.state {
            State::Ready => {
                self.drains += 1;
                let why = format!("{name} received; holding it while the proxy stops routing");
                self.set(
                    State::Draining(new_drain(DrainReason::Signal(sig), Some(sig), now)),
                    &why,
                );
                Action::Nothing
            }
            State::Starting | State::Unready => {
                let why = format!("{name} received while not routable; nothing to drain");
                self.stop(sig, None, now, &why)
            }
            State::Draining(d) if d.held.is_none() && !self.policy.wait_over(d, now) => {
                d.held = Some(sig);
                info!("{name} received during a manual drain; forwarding it when the wait is over");
                Action::Nothing
            }
            State::Draining(d) => {
                let held = d.held.unwrap_or(sig);
                let why = if d.held.is_some() {
                    format!("second {name}: skipping the rest of the drain wait")
                } else {
                    format!("{name} received after the manual drain wait")
                };
                let drain = Some(finish(d.clone(), now));
                self.stop(held, drain, now, &why)
            }
            State::Stopping(_) => Action::Forward(sig),
            State::Exited { .. } => Action::Nothing,
        }
    }

    /// A signal that asks the child to exit was forwarded directly (not
    /// through a drain): the grace period starts.
    pub fn stop_forwarded(&mut self, sig: c_int, now: Instant) {
        if matches!(self.state, State::Stopping(_) | State::Exited { .. }) {
            return;
        }
        let drain = self.state.drain().cloned().map(|d| finish(d, now));
        let why = format!("{} forwarded", signals::name(sig));
        self.set(State::Stopping(self.new_stop(sig, drain, now)), &why);
    }

    fn stop(&mut self, sig: c_int, drain: Option<Drain>, now: Instant, why: &str) -> Action {
        self.set(State::Stopping(self.new_stop(sig, drain, now)), why);
        Action::Forward(sig)
    }

    fn new_stop(&self, signal: c_int, drain: Option<Drain>, now: Instant) -> Stop {
        Stop {
            signal,
            kill_at: Some(now + self.grace),
            drain,
        }
    }

    /// `/sethealth/ko` (`drain == true`) or `/sethealth/ok`.
    pub fn manual(&mut self, drain: bool, now: Instant) -> Result<(), Refused> {
        match (&self.state, drain) {
            (State::Starting | State::Ready | State::Unready, true) => {
                self.drains += 1;
                self.set(
                    State::Draining(new_drain(DrainReason::Manual, None, now)),
                    "manual drain requested",
                );
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

    /// A readiness probe was answered "not ready" during a drain. Returns
    /// true when this answer met `--drain-checks`, so the supervisor must
    /// recompute its deadline.
    pub fn unready_answered(&mut self, now: Instant) -> bool {
        let State::Draining(d) = &mut self.state else {
            return false;
        };
        d.unready_answers = d.unready_answers.saturating_add(1);
        match self.policy.checks {
            Some(n) if d.unready_answers >= n && d.checks_met.is_none() => {
                d.checks_met = Some(now);
                info!(
                    "{n} unready answers seen since the drain began; lingering {:?}",
                    self.policy.linger
                );
                true
            }
            _ => false,
        }
    }

    /// Time passed: ends a drain wait or a grace period that is due.
    pub fn tick(&mut self, now: Instant) -> Action {
        match &mut self.state {
            State::Draining(d) if d.held.is_some() && self.policy.wait_over(d, now) => {
                let held = d.held.unwrap_or(libc::SIGTERM);
                let why = format!("drain wait over ({})", self.policy.why_over(d, now));
                let drain = Some(finish(d.clone(), now));
                self.stop(held, drain, now, &why)
            }
            State::Stopping(s) if s.kill_at.is_some_and(|t| now >= t) => {
                s.kill_at = None;
                info!(
                    "grace period of {:?} over; killing the child's process group",
                    self.grace
                );
                Action::Kill
            }
            _ => Action::Nothing,
        }
    }

    /// When [`tick`](Self::tick) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Draining(d) if d.held.is_some() => Some(self.policy.wait_end(d)),
            State::Stopping(s) => s.kill_at,
            _ => None,
        }
    }

    /// The grace deadline of a stop in progress, if any.
    pub fn kill_at(&self) -> Option<Instant> {
        match &self.state {
            State::Stopping(s) => s.kill_at,
            _ => None,
        }
    }

    pub fn child_exited(&mut self, code: i32, now: Instant) {
        let drain = self.state.drain().cloned().map(|d| finish(d, now));
        self.set(
            State::Exited { code, drain },
            &format!("child exited with status {code}"),
        );
    }
}

impl DrainPolicy {
    fn wait_end(&self, d: &Drain) -> Instant {
        let mut end = d.since + self.delay;
        if let Some(met) = d.checks_met {
            end = end.min(met + self.linger);
        }
        if let Some(t) = self.timeout {
            end = end.min(d.since + t);
        }
        end
    }

    fn wait_over(&self, d: &Drain, now: Instant) -> bool {
        now >= self.wait_end(d)
    }

    fn why_over(&self, d: &Drain, now: Instant) -> String {
        if d.checks_met.is_some_and(|met| now >= met + self.linger) {
            format!(
                "{} unready answers and {:?} linger",
                d.unready_answers, self.linger
            )
        } else if self
            .timeout
            .is_some_and(|t| now >= d.since + t && t < self.delay)
        {
            "drain timeout".into()
        } else {
            format!("drain delay of {:?}", self.delay)
        }
    }
}

fn new_drain(reason: DrainReason, held: Option<c_int>, now: Instant) -> Drain {
    Drain {
        reason,
        since: now,
        started_at: SystemTime::now(),
        held,
        unready_answers: 0,
        checks_met: None,
        waited: None,
    }
}

fn finish(mut d: Drain, now: Instant) -> Drain {
    d.waited
        .get_or_insert(now.saturating_duration_since(d.since));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: c_int = libc::SIGTERM;

    fn ready_machine(policy: DrainPolicy) -> Machine {
        let mut m = Machine::new(policy, Duration::from_secs(5));
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
        assert_eq!(m.drain_signal(TERM, t0), Action::Nothing);
        assert!(!m.is_ready());
        assert_eq!(m.next_deadline(), Some(t0 + secs(3.0)));
        assert_eq!(m.tick(t0 + secs(2.9)), Action::Nothing);
        assert_eq!(m.tick(t0 + secs(3.0)), Action::Forward(TERM));
        assert_eq!(m.next_deadline(), Some(t0 + secs(8.0)));
        assert_eq!(m.tick(t0 + secs(8.0)), Action::Kill);
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn checks_end_the_wait_early_after_linger() {
        let t0 = Instant::now();
        let policy = DrainPolicy {
            checks: Some(2),
            delay: secs(30.0),
            ..DrainPolicy::default()
        };
        let mut m = ready_machine(policy);
        m.drain_signal(TERM, t0);
        assert!(!m.unready_answered(t0 + secs(1.0)));
        assert!(m.unready_answered(t0 + secs(2.0)));
        assert_eq!(m.next_deadline(), Some(t0 + secs(3.0)));
        assert_eq!(m.tick(t0 + secs(3.0)), Action::Forward(TERM));
        assert_eq!(m.state().drain().unwrap().waited, Some(secs(3.0)));
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
        m.drain_signal(TERM, t0);
        assert_eq!(m.next_deadline(), Some(t0 + secs(4.0)));
    }

    #[test]
    fn second_signal_forwards_at_once() {
        let t0 = Instant::now();
        let mut m = ready_machine(DrainPolicy::default());
        m.drain_signal(TERM, t0);
        assert_eq!(m.drain_signal(TERM, t0 + secs(0.5)), Action::Forward(TERM));
        assert_eq!(m.state().name(), "stopping");
    }

    #[test]
    fn nothing_to_drain_before_ready() {
        let mut m = Machine::new(DrainPolicy::default(), Duration::from_secs(5));
        assert_eq!(m.drain_signal(TERM, Instant::now()), Action::Forward(TERM));
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
        assert_eq!(m.drain_signal(TERM, t0 + secs(1.0)), Action::Nothing);
        assert_eq!(
            m.next_deadline(),
            Some(t0 + secs(3.0)),
            "the wait counts from the manual drain"
        );
        let mut m = ready_machine(DrainPolicy::default());
        m.manual(true, t0).unwrap();
        assert_eq!(m.drain_signal(TERM, t0 + secs(4.0)), Action::Forward(TERM));
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
        m.drain_signal(TERM, t0);
        assert!(m.manual(false, t0).is_err());
    }

    #[test]
    fn signal_drain_cannot_be_cancelled() {
        let t0 = Instant::now();
        let mut m = ready_machine(DrainPolicy::default());
        m.drain_signal(TERM, t0);
        assert!(m.manual(false, t0).is_err());
        m.checks_changed(true, "still fine");
        assert!(!m.is_ready());
    }

    #[test]
    fn exit_during_drain_ends_it() {
        let t0 = Instant::now();
        let mut m = ready_machine(DrainPolicy::default());
        m.drain_signal(TERM, t0);
        m.child_exited(0, t0 + secs(1.0));
        assert_eq!(m.next_deadline(), None);
        assert_eq!(m.tick(t0 + secs(10.0)), Action::Nothing);
    }
}
