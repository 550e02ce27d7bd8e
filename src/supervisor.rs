//! The signal loop: the one thread that owns the child.
//!
//! It sleeps in poll(2) on a signalfd and on the waker pipe, with a timeout
//! only while a drain wait or grace period is running, so an idle drainit
//! is never woken. Everything that happens to the child happens here.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libc::{c_int, pid_t};
use log::{debug, info, warn};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::cli::Config;
use crate::drain::Action;
use crate::reap::{self, Process};
use crate::shared::Shared;
use crate::signals;

/// How long descendants left behind by a child that exited on its own get
/// between SIGTERM and SIGKILL (never more than --grace).
const LEFTOVER_WAIT: Duration = Duration::from_secs(2);
/// How long to wait for SIGKILLed processes to be reaped before giving up.
const KILL_WAIT: Duration = Duration::from_secs(1);

pub struct Supervisor {
    config: Config,
    shared: Arc<Shared>,
    sigfd: SignalFd,
    me: pid_t,
    child: pid_t,
    /// Set once the main child is reaped: its code and the grace deadline
    /// that was running then.
    exit: Option<(i32, Option<Instant>)>,
    /// Adopted processes that were sent the stop signal with the child.
    stop_signalled: Vec<pid_t>,
}

impl Supervisor {
    /// `forwardable` must already be blocked in every thread.
    pub fn new(
        config: Config,
        shared: Arc<Shared>,
        forwardable: &libc::sigset_t,
        child: pid_t,
    ) -> nix::Result<Supervisor> {
        // SAFETY: `forwardable` was initialised by sigfillset/sigdelset.
        let mask = unsafe { SigSet::from_sigset_t_unchecked(*forwardable) };
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        Ok(Supervisor {
            config,
            shared,
            sigfd,
            me: std::process::id() as pid_t,
            child,
            exit: None,
            stop_signalled: Vec::new(),
        })
    }

    /// Runs until the child has exited and its descendants are gone;
    /// returns drainit's exit code.
    pub fn run(mut self) -> i32 {
        // The child may have died before the signalfd existed.
        self.reap();
        loop {
            if let Some((code, grace_end)) = self.exit {
                self.clean_up_descendants(grace_end);
                return self.remap(code);
            }
            let deadline = self.shared.machine().next_deadline();
            self.wait(deadline);
            self.read_signals();
            let action = self.shared.machine().tick(Instant::now());
            self.act(action);
        }
    }

    /// Sleeps until a signal, a wake-up, or `deadline`. A wake-up is
    /// consumed here, so no caller can spin on a waker left readable.
    fn wait(&self, deadline: Option<Instant>) {
        let timeout = deadline.map_or(PollTimeout::NONE, |d| {
            // Round up, so the loop never wakes just before a deadline and spins.
            let ms = d
                .saturating_duration_since(Instant::now())
                .as_micros()
                .div_ceil(1000);
            PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
        });
        let mut fds = [
            PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.shared.waker.fd(), PollFlags::POLLIN),
        ];
        if let Err(e) = poll(&mut fds, timeout) {
            if e != nix::errno::Errno::EINTR {
                warn!("poll failed: {e}");
            }
        }
        if fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            self.shared.waker.clear();
        }
    }

    fn read_signals(&mut self) {
        loop {
            match self.sigfd.read_signal() {
                Ok(Some(info))
                    if info.ssi_pid == self.me as u32 && info.ssi_signo != libc::SIGCHLD as u32 =>
                {
                    // Raised by drainit itself, such as SIGPIPE from a log
                    // write to a closed pipe: not meant for the child. Not
                    // logged: with nobody reading the log, that line raised
                    // the next SIGPIPE, forever, and this thread-directed
                    // one was always read before any signal sent to drainit.
                    if info.ssi_signo != libc::SIGPIPE as u32 {
                        debug!(
                            "ignoring {} raised by drainit itself",
                            signals::name(info.ssi_signo as c_int)
                        );
                    }
                }
                Ok(Some(info)) => self.on_signal(info.ssi_signo as c_int),
                Ok(None) => return,
                Err(e) => {
                    warn!("reading signals failed: {e}");
                    return;
                }
            }
        }
    }

    fn on_signal(&mut self, sig: c_int) {
        if sig == libc::SIGCHLD {
            self.reap();
            return;
        }
        debug!("received {}", signals::name(sig));
        let action = {
            let mut machine = self.shared.machine();
            if machine.is_drain_signal(sig) {
                machine.drain_signal(sig, Instant::now())
            } else {
                Action::Forward(sig)
            }
        };
        self.act(action);
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Nothing => {}
            Action::Forward(sig) => self.forward(sig),
            Action::Kill => self.kill_at_grace_end(),
        }
    }

    /// Forwards a received signal after rewriting it.
    fn forward(&mut self, received: c_int) {
        if self.exit.is_some() {
            return;
        }
        let Some(sig) = self.config.rewrites.apply(received) else {
            debug!("dropping {} (rewritten to 0)", signals::name(received));
            return;
        };
        let (target, whom) = if self.config.process_group {
            (-self.child, "process group")
        } else {
            (self.child, "child")
        };
        match signals::send(target, sig) {
            Ok(()) => {
                debug!("forwarded {} to {whom} {}", signals::name(sig), self.child);
                self.shared.metrics.count_forwarded(sig);
            }
            Err(e) => warn!(
                "could not forward {} to {whom} {}: {e}",
                signals::name(sig),
                self.child
            ),
        }
        if signals::is_terminating(sig) {
            self.shared.machine().stop_forwarded(sig, Instant::now());
            if self.config.wait_adopted {
                self.signal_adopted(sig);
            }
        }
    }

    /// Daemons reparented to drainit are stopped with the child, not left
    /// to be killed when the container goes away.
    fn signal_adopted(&mut self, sig: c_int) {
        let adopted = self.adopted();
        for p in &adopted {
            info!(
                "sending {} to adopted process {} ({})",
                signals::name(sig),
                p.pid,
                p.comm
            );
        }
        reap::signal_all(&adopted, sig);
        self.stop_signalled.extend(adopted.iter().map(|p| p.pid));
    }

    /// Whether `p` was sent the stop signal: as an adopted process, or as
    /// a member of the child's group with -g.
    fn had_stop_signal(&self, p: &Process) -> bool {
        self.stop_signalled.contains(&p.pid) || (self.config.process_group && p.pgid == self.child)
    }

    /// drainit's children other than the main child (and, with -g, other
    /// than members of the child's group, which were signalled already).
    fn adopted(&self) -> Vec<Process> {
        let all = reap::descendants(self.me).unwrap_or_default();
        all.into_iter()
            .filter(|p| p.ppid == self.me && p.pid != self.child)
            .filter(|p| !(self.config.process_group && p.pgid == self.child))
            .collect()
    }

    fn kill_at_grace_end(&mut self) {
        warn!(
            "child {} did not exit within {:?}; sending SIGKILL to its process group",
            self.child, self.config.grace
        );
        if let Err(e) = signals::send(-self.child, libc::SIGKILL) {
            warn!("could not kill process group {}: {e}", self.child);
        }
        if self.config.wait_adopted {
            let adopted = self.adopted();
            log_each(&adopted, "killing adopted process");
            reap::signal_all(&adopted, libc::SIGKILL);
        }
    }

    /// Reaps every exited child. Returns false once there are none left.
    fn reap(&mut self) -> bool {
        loop {
            match reap::reap_one() {
                Ok(Some(r)) if r.pid == self.child => self.on_child_exit(r.code),
                Ok(Some(r)) => {
                    self.shared
                        .metrics
                        .reaped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if self.config.warn_on_reap {
                        warn!("reaped zombie process {} (status {})", r.pid, r.code);
                    }
                }
                Ok(None) => return true,
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return false,
                Err(e) => {
                    warn!("waitpid failed: {e}");
                    return true;
                }
            }
        }
    }

    fn on_child_exit(&mut self, code: i32) {
        let mut machine = self.shared.machine();
        let grace_end = machine.kill_at();
        machine.child_exited(code, Instant::now());
        self.exit = Some((code, grace_end));
        self.shared
            .child_pid
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Once the child is gone, nothing it started may outlive drainit.
    /// After a stop, adopted processes had the signal already; they, and
    /// what the child left behind (sent SIGTERM now), get the rest of the
    /// grace period. Otherwise all get SIGTERM and a short wait.
    fn clean_up_descendants(&mut self, grace_end: Option<Instant>) {
        // No children left means no descendants either (orphans come to
        // us), and no need to scan /proc: the common, fast exit.
        if !self.reap() {
            return;
        }
        let Some(left) = reap::descendants(self.me) else {
            return self.clean_up_without_proc();
        };
        if left.is_empty() {
            return;
        }
        if self.config.wait_adopted {
            let deadline = match grace_end {
                // What the child left behind (its workers, without -g) never
                // had the stop signal: without this, its first signal would
                // be the SIGKILL at the end of the grace period.
                Some(end) => {
                    let unsignalled: Vec<Process> = left
                        .into_iter()
                        .filter(|p| !self.had_stop_signal(p))
                        .collect();
                    log_each(&unsignalled, "sending SIGTERM to leftover process");
                    reap::signal_all(&unsignalled, libc::SIGTERM);
                    end
                }
                None => {
                    log_each(&left, "sending SIGTERM to leftover process");
                    reap::signal_all(&left, libc::SIGTERM);
                    Instant::now() + LEFTOVER_WAIT.min(self.config.grace)
                }
            };
            if self.wait_for_children(deadline) {
                return;
            }
        }
        let left = reap::descendants(self.me).unwrap_or_default();
        log_each(&left, "killing leftover process");
        reap::signal_all(&left, libc::SIGKILL);
        self.wait_for_children(Instant::now() + KILL_WAIT);
    }

    /// Without /proc, descendants cannot be listed: as PID 1, signal every
    /// process in the namespace; otherwise only the child's group.
    fn clean_up_without_proc(&mut self) {
        let (target, what) = if self.me == 1 {
            (-1, "every process in the namespace")
        } else {
            (-self.child, "the child's process group")
        };
        warn!("/proc is not available to list leftover processes; signalling {what}");
        let _ = signals::send(target, libc::SIGTERM);
        if !self.wait_for_children(Instant::now() + LEFTOVER_WAIT.min(self.config.grace)) {
            let _ = signals::send(target, libc::SIGKILL);
            self.wait_for_children(Instant::now() + KILL_WAIT);
        }
    }

    /// Reaps until drainit has no children left (true) or `deadline` (false).
    fn wait_for_children(&mut self, deadline: Instant) -> bool {
        loop {
            if !self.reap() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.wait(Some(deadline));
            self.drop_signals_during_cleanup();
        }
    }

    fn drop_signals_during_cleanup(&mut self) {
        while let Ok(Some(info)) = self.sigfd.read_signal() {
            if info.ssi_signo as c_int != libc::SIGCHLD {
                debug!(
                    "ignoring {} while cleaning up",
                    signals::name(info.ssi_signo as c_int)
                );
            }
        }
    }

    fn remap(&self, code: i32) -> i32 {
        if self.config.remap_exit.contains(&code) {
            info!("child exit status {code} remapped to 0");
            return 0;
        }
        code
    }
}

fn log_each(processes: &[Process], what: &str) {
    for p in processes {
        warn!("{what} {} ({})", p.pid, p.comm);
    }
}
