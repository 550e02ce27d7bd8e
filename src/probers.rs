//! Who probes drainit's readiness: each load balancer instance, told
//! apart by its source address and User-Agent, with the interval it
//! probes at.
//!
//! `--drain-checks N` must wait until every instance has seen the drain
//! N times: an HAProxy pair, three ingress replicas or an ALB's nodes
//! each decide on their own when to stop routing, and counting their
//! probes together ended the wait when each had seen half of them. The
//! container's own HEALTHCHECK (`drainit probe`) and probers the user
//! names are no balancer and never count.
//!
//! The table is pure data: the health thread records probes, the drain
//! machine asks it when the wait is over.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Probers remembered at once; the one seen least recently makes room.
const MAX_PROBERS: usize = 64;
/// The longest silence a prober is allowed, whatever its interval: it
/// counts for a drain when it probed within this long before, and stops
/// being waited for after this long without a probe.
pub const SILENCE_CAP: Duration = Duration::from_secs(30);
/// A prober counts, and stays waited for, while it was heard within this
/// many of its own intervals.
const SILENT_INTERVALS: u32 = 3;
/// Longest User-Agent kept, so a client cannot make the table large.
const MAX_AGENT: usize = 128;
/// drainit's own probe client, whose User-Agent starts with this.
const OWN_AGENT: &str = "drainit-probe/";

/// A prober: where its probes come from and what it calls itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProberId {
    pub addr: IpAddr,
    pub agent: String,
}

impl ProberId {
    pub fn new(addr: IpAddr, agent: Option<&str>) -> ProberId {
        let agent = agent.unwrap_or_default();
        let mut end = agent.len().min(MAX_AGENT);
        while !agent.is_char_boundary(end) {
            end -= 1;
        }
        ProberId {
            addr,
            agent: agent[..end].to_string(),
        }
    }
}

/// Where a prober stands in the current drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Not seen before the drain began, or no drain yet.
    Uncounted,
    /// Waited for: it has not seen enough unready answers yet.
    Waiting,
    /// It saw enough unready answers, at this instant.
    Done(Instant),
    /// It went silent during the drain and is no longer waited for.
    Silent(Instant),
}

#[derive(Clone, Debug)]
pub struct Prober {
    pub id: ProberId,
    pub last_seen: Instant,
    /// The time between its last two probes, once it has probed twice.
    pub interval: Option<Duration>,
    /// Its interval when the drain began: how long it may be silent is
    /// judged by that, not by a burst of probes during the drain.
    pace: Option<Duration>,
    /// Readiness answered "not ready" to it since the drain began.
    pub unready: u32,
    pub standing: Standing,
}

impl Prober {
    /// How long a prober probing every `interval` may be silent before it
    /// no longer counts.
    fn patience(interval: Option<Duration>) -> Option<Duration> {
        interval.map(|i| (i * SILENT_INTERVALS).min(SILENCE_CAP))
    }

    /// When its silence during the drain will have lasted too long.
    fn silent_at(&self) -> Option<Instant> {
        Prober::patience(self.pace).map(|p| self.last_seen + p)
    }
}

/// The probers heard from, and which of them a drain waits for.
#[derive(Clone, Debug, Default)]
pub struct Probers {
    all: Vec<Prober>,
    /// User-Agent patterns (case-insensitive substrings) that never count.
    ignored: Vec<String>,
}

/// What happened to one prober in a call, for the drain machine's log.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Done(ProberId),
    Silent(ProberId),
}

impl Probers {
    pub fn new(ignored: Vec<String>) -> Probers {
        Probers {
            all: Vec::new(),
            ignored: ignored.iter().map(|p| p.to_lowercase()).collect(),
        }
    }

    pub fn all(&self) -> &[Prober] {
        &self.all
    }

    /// Whether probes with this User-Agent never count: drainit's own
    /// client, and what `--drain-checks-ignore-ua` names.
    pub fn ignores(&self, agent: &str) -> bool {
        let agent = agent.to_lowercase();
        agent.starts_with(OWN_AGENT) || self.ignored.iter().any(|p| agent.contains(p))
    }

    /// Records a readiness probe at `now`; `unready` when it was answered
    /// "not ready" during a drain. Returns what changed.
    pub fn probed(
        &mut self,
        id: ProberId,
        now: Instant,
        unready: bool,
        needed: u32,
    ) -> Option<Change> {
        if self.ignores(&id.agent) {
            return None;
        }
        let prober = self.find_or_add(id, now);
        if let Some(gap) = now
            .checked_duration_since(prober.last_seen)
            .filter(|g| !g.is_zero())
        {
            prober.interval = Some(gap);
        }
        prober.last_seen = now;
        if !unready || prober.standing != Standing::Waiting {
            return None;
        }
        prober.unready += 1;
        (prober.unready >= needed).then(|| {
            prober.standing = Standing::Done(now);
            Change::Done(prober.id.clone())
        })
    }

    fn find_or_add(&mut self, id: ProberId, now: Instant) -> &mut Prober {
        if let Some(i) = self.all.iter().position(|p| p.id == id) {
            return &mut self.all[i];
        }
        if self.all.len() >= MAX_PROBERS {
            if let Some(i) = (0..self.all.len()).min_by_key(|&i| self.all[i].last_seen) {
                self.all.swap_remove(i);
            }
        }
        self.all.push(Prober {
            id,
            last_seen: now,
            interval: None,
            pace: None,
            unready: 0,
            standing: Standing::Uncounted,
        });
        let last = self.all.len() - 1;
        &mut self.all[last]
    }

    /// A drain begins: the probers heard recently enough (within 3 of
    /// their intervals, at most 30 s) are the ones it waits for. Returns
    /// how many that is.
    pub fn drain_begins(&mut self, now: Instant) -> usize {
        for p in &mut self.all {
            p.unready = 0;
            p.pace = p.interval;
            let recent = Prober::patience(p.pace)
                .is_some_and(|patience| now.saturating_duration_since(p.last_seen) <= patience);
            p.standing = if recent {
                Standing::Waiting
            } else {
                Standing::Uncounted
            };
        }
        self.waited_for().count()
    }

    /// Stops waiting for probers silent too long by `now`; returns them.
    pub fn silence(&mut self, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        for p in &mut self.all {
            if p.standing == Standing::Waiting && p.silent_at().is_some_and(|at| now >= at) {
                p.standing = Standing::Silent(now);
                changes.push(Change::Silent(p.id.clone()));
            }
        }
        changes
    }

    /// The probers this drain waits for, or waited for.
    pub fn waited_for(&self) -> impl Iterator<Item = &Prober> {
        self.all
            .iter()
            .filter(|p| p.standing != Standing::Uncounted)
    }

    /// When every prober waited for is done or silent: the last of those
    /// instants. `None` while one still counts down, or none was waited for.
    pub fn all_seen_it(&self) -> Option<Instant> {
        let mut last = None;
        for p in self.waited_for() {
            let at = match p.standing {
                Standing::Done(at) | Standing::Silent(at) => at,
                _ => return None,
            };
            last = Some(last.map_or(at, |l: Instant| l.max(at)));
        }
        last
    }

    /// When the next prober waited for would be silent too long.
    pub fn next_silence(&self) -> Option<Instant> {
        self.all
            .iter()
            .filter(|p| p.standing == Standing::Waiting)
            .filter_map(Prober::silent_at)
            .min()
    }
}

impl std::fmt::Display for ProberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.agent.is_empty() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{} ({})", self.addr, self.agent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(addr: &str, agent: &str) -> ProberId {
        ProberId::new(addr.parse().unwrap(), Some(agent))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `p` probes at `every` from `from` to `to`.
    fn probe_every(t: &mut Probers, p: &ProberId, from: Instant, every: Duration, n: u32) {
        for k in 0..n {
            t.probed(p.clone(), from + every * k, false, 2);
        }
    }

    #[test]
    fn each_instance_must_see_the_drain() {
        let t0 = Instant::now();
        let (fast, slow) = (id("10.0.0.2", "HAProxy"), id("10.0.0.3", "HAProxy"));
        let mut t = Probers::default();
        probe_every(&mut t, &fast, t0, ms(200), 10);
        probe_every(&mut t, &slow, t0, ms(1500), 2);
        let drain = t0 + ms(2000);
        assert_eq!(t.drain_begins(drain), 2);
        assert_eq!(t.probed(fast.clone(), drain + ms(100), true, 2), None);
        let done = drain + ms(300);
        assert_eq!(
            t.probed(fast.clone(), done, true, 2),
            Some(Change::Done(fast.clone()))
        );
        assert_eq!(t.all_seen_it(), None, "the slow one has seen nothing");
        assert_eq!(t.probed(slow.clone(), drain + ms(1000), true, 2), None);
        let slow_done = drain + ms(2500);
        assert_eq!(
            t.probed(slow.clone(), slow_done, true, 2),
            Some(Change::Done(slow))
        );
        assert_eq!(t.all_seen_it(), Some(slow_done));
    }

    #[test]
    fn own_and_ignored_probes_never_count() {
        let t0 = Instant::now();
        let mut t = Probers::new(vec!["Kube-Probe".into()]);
        let own = id("127.0.0.1", "drainit-probe/0.1.0");
        let kubelet = id("10.0.0.9", "kube-probe/1.29");
        for p in [&own, &kubelet] {
            probe_every(&mut t, p, t0, ms(100), 5);
        }
        assert!(t.all().is_empty());
        assert_eq!(t.drain_begins(t0 + ms(500)), 0);
    }

    #[test]
    fn only_recent_probers_that_probed_twice_count() {
        let t0 = Instant::now();
        let mut t = Probers::default();
        let once = id("10.0.0.2", "curl");
        let gone = id("10.0.0.3", "HAProxy");
        let live = id("10.0.0.4", "HAProxy");
        t.probed(once, t0 + ms(900), false, 2);
        probe_every(&mut t, &gone, t0, ms(100), 3);
        probe_every(&mut t, &live, t0, ms(300), 4);
        // gone: last at 200 ms, interval 100 ms; at 1 s it is 800 ms silent.
        assert_eq!(t.drain_begins(t0 + ms(1000)), 1);
        assert_eq!(t.waited_for().next().map(|p| p.id.clone()), Some(live));
    }

    #[test]
    fn a_prober_that_goes_silent_stops_holding_the_wait() {
        let t0 = Instant::now();
        let mut t = Probers::default();
        let (a, b) = (id("10.0.0.2", "x"), id("10.0.0.3", "x"));
        probe_every(&mut t, &a, t0, ms(200), 5);
        probe_every(&mut t, &b, t0, ms(200), 5);
        let drain = t0 + ms(900);
        t.drain_begins(drain);
        t.probed(a.clone(), drain + ms(100), true, 2);
        let done = drain + ms(300);
        t.probed(a.clone(), done, true, 2);
        // b was last heard at 800 ms: silent from 800 + 3 x 200 ms.
        let silent = t0 + ms(1400);
        assert_eq!(t.next_silence(), Some(silent));
        assert!(t.silence(silent - ms(1)).is_empty());
        assert_eq!(t.silence(silent), vec![Change::Silent(b)]);
        assert_eq!(t.all_seen_it(), Some(silent));
    }

    #[test]
    fn a_burst_during_the_drain_does_not_shorten_the_patience() {
        let t0 = Instant::now();
        let mut t = Probers::default();
        let p = id("10.0.0.2", "x");
        probe_every(&mut t, &p, t0, ms(500), 3);
        let drain = t0 + ms(1100);
        t.drain_begins(drain);
        t.probed(p.clone(), drain + ms(10), true, 3);
        t.probed(p.clone(), drain + ms(20), true, 3);
        assert_eq!(t.next_silence(), Some(drain + ms(20) + ms(1500)));
    }

    #[test]
    fn the_table_is_bounded_and_agents_are_cut() {
        let t0 = Instant::now();
        let mut t = Probers::default();
        for n in 0..200u32 {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 + n);
            t.probed(
                ProberId::new(addr.into(), Some(&"é".repeat(100))),
                t0 + ms(n.into()),
                false,
                2,
            );
        }
        assert_eq!(t.all().len(), MAX_PROBERS);
        assert!(t.all().iter().all(|p| p.id.agent.len() <= MAX_AGENT));
    }
}
