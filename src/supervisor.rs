//! The signal loop: the one thread that owns the child.
//!
//! It sleeps in poll(2) on a signalfd and on the waker pipe, with a timeout
//! only when the drain machine has a deadline, so an idle drainit is never
//! woken. The machine decides what every signal, exit and deadline means;
//! this loop only does the I/O: read signals, send them, reap, sleep.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use libc::{c_int, pid_t};
use log::{debug, info, warn};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::drain::Action;
use crate::logger::Throttle;
use crate::reap::{self, Process};
use crate::shared::Shared;
use crate::signals;

/// What the loop needs from the configuration.
pub struct Settings {
    /// Signals go to the child's process group (-g), not the child alone.
    pub process_group: bool,
    pub warn_on_reap: bool,
    /// Child exit codes that drainit reports as 0 (-e).
    pub remap_exit: Vec<i32>,
}

pub struct Supervisor {
    settings: Settings,
    shared: Arc<Shared>,
    sigfd: SignalFd,
    me: pid_t,
    child: pid_t,
    /// The main child's exit code, once it is reaped.
    exit: Option<i32>,
    /// Adopted processes that were sent the stop signal with the child.
    stop_signalled: Vec<pid_t>,
}

impl Supervisor {
    /// `forwardable` must already be blocked in every thread.
    pub fn new(
        settings: Settings,
        shared: Arc<Shared>,
        forwardable: &SigSet,
        child: pid_t,
    ) -> nix::Result<Supervisor> {
        let sigfd =
            SignalFd::with_flags(forwardable, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        Ok(Supervisor {
            settings,
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
        loop {
            // Also catches a child that died before the signalfd existed.
            let children_left = self.reap();
            if let Some(code) = self.exit.filter(|_| !children_left) {
                return self.remap(code);
            }
            let deadline = self.shared.machine(|m| m.next_deadline());
            self.wait(deadline);
            self.read_signals();
            let action = self.shared.machine(|m| m.tick(Instant::now()));
            if action == Action::GiveUp {
                return self.remap(self.exit.unwrap_or(1));
            }
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
                static POLL_FAILED: Throttle = Throttle::new();
                POLL_FAILED.warn(|| format!("poll failed: {e}"));
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
                // Reaping happens once per loop turn, whatever woke it.
                Ok(Some(info)) if info.ssi_signo == libc::SIGCHLD as u32 => {}
                // The kernel's own fault report (si_code > 0) is never the
                // child's business; only one sent with kill(2) is.
                Ok(Some(info))
                    if info.ssi_code > 0 && signals::is_fault(info.ssi_signo as c_int) =>
                {
                    debug!(
                        "ignoring {} raised by the kernel",
                        signals::name(info.ssi_signo as c_int)
                    );
                }
                Ok(Some(info)) => {
                    let sig = info.ssi_signo as c_int;
                    debug!("received {}", signals::name(sig));
                    let action = self.shared.machine(|m| m.on_signal(sig, Instant::now()));
                    self.act(action);
                }
                Ok(None) => return,
                Err(e) => {
                    static READ_FAILED: Throttle = Throttle::new();
                    READ_FAILED.warn(|| format!("reading signals failed: {e}"));
                    return;
                }
            }
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Nothing | Action::GiveUp => {}
            Action::Forward(sig) => self.forward(sig),
            Action::Stop(sig) => {
                self.forward(sig);
                self.signal_adopted(sig);
            }
            Action::Suspend(sig) => {
                self.forward(sig);
                // As PID 1 the kernel drops this (init cannot be stopped
                // from inside its namespace), as it does for dumb-init.
                debug!("stopping drainit itself after {}", signals::name(sig));
                let _ = signals::send(self.me, libc::SIGSTOP);
            }
            Action::Kill => self.kill_at_grace_end(),
            Action::TermLeftovers { after_stop } => self.term_leftovers(after_stop),
            Action::KillLeftovers => self.kill_leftovers(),
        }
    }

    /// Sends `sig` to the child, or its group with -g.
    fn forward(&mut self, sig: c_int) {
        if self.exit.is_some() {
            return;
        }
        let (target, whom) = if self.settings.process_group {
            (-self.child, "process group")
        } else {
            (self.child, "child")
        };
        match signals::send(target, sig) {
            Ok(()) => {
                debug!("forwarded {} to {whom} {}", signals::name(sig), self.child);
                self.shared.metrics.count_forwarded(sig);
            }
            Err(e) => {
                static FORWARD_FAILED: Throttle = Throttle::new();
                FORWARD_FAILED.warn(|| {
                    format!(
                        "could not forward {} to {whom} {}: {e}",
                        signals::name(sig),
                        self.child
                    )
                });
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
    fn had_stop_signal(&self, p: &Process, after_stop: bool) -> bool {
        self.stop_signalled.contains(&p.pid)
            || (after_stop && self.settings.process_group && p.pgid == self.child)
    }

    /// drainit's children other than the main child (and, with -g, other
    /// than members of the child's group, which were signalled already).
    fn adopted(&self) -> Vec<Process> {
        let all = reap::descendants(self.me).unwrap_or_default();
        all.into_iter()
            .filter(|p| p.ppid == self.me && p.pid != self.child)
            .filter(|p| !(self.settings.process_group && p.pgid == self.child))
            .collect()
    }

    fn kill_at_grace_end(&mut self) {
        warn!(
            "child {} did not exit within the grace period; sending SIGKILL to its process group",
            self.child
        );
        if let Err(e) = signals::send(-self.child, libc::SIGKILL) {
            warn!("could not kill process group {}: {e}", self.child);
        }
        let adopted = self.adopted();
        log_each(&adopted, "killing adopted process");
        reap::signal_all(&adopted, libc::SIGKILL);
    }

    /// Reaps every exited child. Returns false once there are none left.
    fn reap(&mut self) -> bool {
        loop {
            match reap::reap_one() {
                Ok(Some(r)) if r.pid == self.child => self.on_child_exit(r.code),
                Ok(Some(r)) => {
                    self.shared.metrics.reaped.fetch_add(1, Ordering::Relaxed);
                    if self.settings.warn_on_reap {
                        warn!("reaped zombie process {} (status {})", r.pid, r.code);
                    }
                }
                Ok(None) => return true,
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return false,
                Err(e) => {
                    static WAIT_FAILED: Throttle = Throttle::new();
                    WAIT_FAILED.warn(|| format!("waitpid failed: {e}"));
                    return true;
                }
            }
        }
    }

    fn on_child_exit(&mut self, code: i32) {
        self.exit = Some(code);
        self.shared.child_pid.store(0, Ordering::Relaxed);
        let action = self
            .shared
            .machine(|m| m.child_exited(code, Instant::now()));
        // No children left means no descendants either (orphans come to
        // us): the common, fast exit needs no /proc scan.
        if self.reap() {
            self.act(action);
        }
    }

    /// Once the child is gone, nothing it started may outlive drainit:
    /// what never had a stop signal (its workers, without -g) gets SIGTERM
    /// now, so its first signal is not the SIGKILL that ends the wait.
    fn term_leftovers(&mut self, after_stop: bool) {
        let Some(left) = reap::descendants(self.me) else {
            return self.signal_namespace(libc::SIGTERM);
        };
        let unsignalled: Vec<Process> = left
            .into_iter()
            .filter(|p| !self.had_stop_signal(p, after_stop))
            .collect();
        log_each(&unsignalled, "sending SIGTERM to leftover process");
        reap::signal_all(&unsignalled, libc::SIGTERM);
    }

    fn kill_leftovers(&mut self) {
        let Some(left) = reap::descendants(self.me) else {
            return self.signal_namespace(libc::SIGKILL);
        };
        log_each(&left, "killing leftover process");
        reap::signal_all(&left, libc::SIGKILL);
    }

    /// Without /proc, descendants cannot be listed: as PID 1, signal every
    /// process in the namespace; otherwise only the child's group.
    fn signal_namespace(&self, sig: c_int) {
        let (target, what) = if self.me == 1 {
            (-1, "every process in the namespace")
        } else {
            (-self.child, "the child's process group")
        };
        warn!(
            "/proc is not available to list leftover processes; sending {} to {what}",
            signals::name(sig)
        );
        let _ = signals::send(target, sig);
    }

    fn remap(&self, code: i32) -> i32 {
        if self.settings.remap_exit.contains(&code) {
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
