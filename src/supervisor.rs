//! The signal loop: the one thread that owns the child.
//!
//! It sleeps in sigtimedwait(2), with a timeout only when the drain machine
//! has a deadline, so an idle drainit is never woken, and a signal costs
//! one wait and one kill, as in dumb-init. Other threads wake it with a
//! SIGCHLD sent to drainit itself: every SIGCHLD makes it reap and read the
//! machine's deadline again. The machine decides what every signal, exit
//! and deadline means; this loop only does the I/O: take signals, send
//! them, reap, sleep.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use libc::{c_int, pid_t};
use log::{debug, info, warn};

use crate::drain::Action;
use crate::logger::Throttle;
use crate::reap::{self, Process};
use crate::shared::Shared;
use crate::signals::{self, Mask};

/// What the loop needs from the configuration.
pub struct Settings {
    /// Signals go to the child's process group (-g), not the child alone.
    pub process_group: bool,
    /// Once the child exits, SIGTERM its process group.
    pub term_group_on_exit: bool,
    pub warn_on_reap: bool,
    /// Child exit codes that drainit reports as 0 (-e).
    pub remap_exit: Vec<i32>,
}

pub struct Supervisor {
    settings: Settings,
    shared: Arc<Shared>,
    me: pid_t,
    child: pid_t,
    /// The main child's exit code, once it is reaped.
    exit: Option<i32>,
    /// Whether drainit had children at the last reap.
    children_left: bool,
    /// What the machine asked for when the child exited, done once the
    /// reaping is over and only if there is anything left to do it to.
    after_exit: Option<Action>,
    /// Adopted processes that were sent the stop signal with the child.
    stop_signalled: Vec<pid_t>,
}

impl Supervisor {
    /// Every signal must already be blocked in every thread, since before
    /// the child was started: a SIGCHLD of a child that died at once waits.
    pub fn new(settings: Settings, shared: Arc<Shared>, child: pid_t) -> Supervisor {
        Supervisor {
            settings,
            shared,
            me: std::process::id() as pid_t,
            child,
            exit: None,
            children_left: true,
            after_exit: None,
            stop_signalled: Vec::new(),
        }
    }

    /// Runs until the child has exited and its descendants are gone;
    /// returns drainit's exit code.
    pub fn run(mut self) -> i32 {
        loop {
            if let Some(code) = self.exit.filter(|_| !self.children_left) {
                return self.remap(code);
            }
            let deadline = self.shared.machine(|m| m.next_deadline());
            if let Some(info) = self.next_signal(deadline) {
                self.on_signal(&info);
            }
            let action = self.shared.machine(|m| m.tick(Instant::now()));
            if action == Action::GiveUp {
                return self.remap(self.exit.unwrap_or(1));
            }
            self.act(action);
        }
    }

    /// The next signal, waiting for it until `deadline` (for ever without
    /// one); `None` when the deadline came first.
    fn next_signal(&self, deadline: Option<Instant>) -> Option<libc::siginfo_t> {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        Mask::ALL.wait(timeout).unwrap_or_else(|e| {
            static WAIT_FAILED: Throttle = Throttle::new();
            WAIT_FAILED.warn(|| format!("sigtimedwait failed: {e}"));
            None
        })
    }

    fn on_signal(&mut self, info: &libc::siginfo_t) {
        let sig = info.si_signo;
        // SAFETY: si_pid is set for every signal sigtimedwait returns: by
        // kill/sigqueue/tgkill, and by the kernel for SIGCHLD; it reads 0
        // for kernel-raised ones that carry no sender.
        let sender = unsafe { info.si_pid() };
        if sig == libc::SIGCHLD {
            // A child changed state, or another thread wants the deadline
            // read again; either way, reap and let the loop go round. No
            // children left means no descendants either (orphans come to
            // us): the common, fast exit needs no /proc scan.
            self.children_left = self.reap();
            if let Some(action) = self.after_exit.take().filter(|_| self.children_left) {
                self.act(action);
            }
            return;
        }
        if sender == self.me || signals::is_reserved(sig) {
            debug!(
                "ignoring {}: raised by drainit itself, or the C library's own",
                signals::name(sig)
            );
            return;
        }
        // The kernel's own fault report (si_code > 0) is never the child's
        // business; only one sent with kill(2) is.
        if info.si_code > 0 && signals::is_fault(sig) {
            debug!("ignoring {} raised by the kernel", signals::name(sig));
            return;
        }
        debug!("received {}", signals::name(sig));
        let action = self.shared.machine(|m| m.on_signal(sig, Instant::now()));
        self.act(action);
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
                if let Some(sig) = sig {
                    self.forward(sig);
                }
                // As PID 1 the kernel drops this (init cannot be stopped
                // from inside its namespace), as it does for dumb-init.
                debug!("stopping drainit itself after a job-control stop");
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
        if self.settings.term_group_on_exit {
            debug!(
                "sending SIGTERM to the child's process group {}",
                self.child
            );
            let _ = signals::send(-self.child, libc::SIGTERM);
        }
        self.shared.child_pid.store(0, Ordering::Relaxed);
        let action = self
            .shared
            .machine(|m| m.child_exited(code, Instant::now()));
        self.after_exit = Some(action);
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
