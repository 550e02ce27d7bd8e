//! Starting the child so that it sees what it would have seen without an
//! init: the signal mask and ignored signals drainit inherited, its own
//! process group, and the terminal's foreground when there is a terminal.

use std::ffi::OsString;
use std::io::{self, IsTerminal};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use libc::c_int;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::unistd::{tcsetpgrp, Pid};

use crate::signals::MAX_SIGNAL;

/// The signal state drainit was started with, captured before it changed
/// anything, so the child can be given exactly the same.
pub struct Inherited {
    mask: SigSet,
    /// Signals whose disposition was SIG_IGN. exec keeps ignored signals
    /// ignored, but drainit had to take SIGCHLD back and Rust's Command
    /// resets SIGPIPE, so they are put back explicitly.
    ignored: Vec<c_int>,
}

impl Inherited {
    /// Reads the current mask and ignored set. Call first thing in main.
    pub fn capture() -> io::Result<Inherited> {
        let mut mask = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut mask))?;
        let ignored = (1..=MAX_SIGNAL)
            .filter(|&s| disposition_is_ignore(s))
            .collect();
        Ok(Inherited { mask, ignored })
    }

    /// drainit must be told about its children's deaths even if it was
    /// started with SIGCHLD ignored (the kernel would reap them itself).
    pub fn take_back_sigchld(&self) -> io::Result<()> {
        if self.ignored.contains(&libc::SIGCHLD) {
            set_disposition(libc::SIGCHLD, libc::SIG_DFL)?;
        }
        Ok(())
    }
}

fn disposition_is_ignore(sig: c_int) -> bool {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries; `old` is valid for writing.
    let rc = unsafe { libc::sigaction(sig, std::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: zeroed is a valid sigaction, and sigaction filled it on success.
    rc == 0 && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// Async-signal-safe: used between fork and exec.
fn set_disposition(sig: c_int, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: signal() is async-signal-safe on Linux and has no memory
    // preconditions; the handlers passed are SIG_DFL or SIG_IGN.
    if unsafe { libc::signal(sig, handler) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Why the child could not be started, mapped to the shell's exit codes.
pub struct SpawnError {
    pub code: i32,
    pub message: String,
}

/// Starts `program` in its own process group. When stdin is a terminal
/// the new group is made its foreground group, so Ctrl-C and job control
/// reach the child as they would from a shell.
pub fn spawn(program: &[OsString], inherited: &Inherited) -> Result<libc::pid_t, SpawnError> {
    let mut command = Command::new(&program[0]);
    command.args(&program[1..]);
    configure(&mut command, inherited, io::stdin().is_terminal());
    match command.spawn() {
        Ok(child) => Ok(child.id() as libc::pid_t),
        Err(e) => Err(SpawnError {
            code: if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            },
            message: format!("cannot run '{}': {e}", program[0].to_string_lossy()),
        }),
    }
}

/// Makes `command` start in a new process group (the terminal's foreground
/// group when `foreground`) with the inherited signal mask and ignored set.
pub fn configure(command: &mut Command, inherited: &Inherited, foreground: bool) {
    let mask = inherited.mask;
    let ignored = inherited.ignored.clone();
    let all = SigSet::all();
    command.process_group(0);
    // SAFETY: the closure runs between fork and exec and calls only
    // async-signal-safe functions (getpid, tcsetpgrp, signal,
    // pthread_sigmask) on data captured by value; it allocates nothing.
    // Descriptor 0 stays open for the closure's whole run.
    unsafe {
        command.pre_exec(move || {
            // std empties the mask before this runs: block everything
            // again until the inherited mask is put back, so that nothing
            // sent to the new pid can act before exec, and tcsetpgrp from
            // what is still a background group cannot raise SIGTTOU.
            pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&all), None)?;
            if foreground {
                let _ = tcsetpgrp(BorrowedFd::borrow_raw(libc::STDIN_FILENO), Pid::this());
            }
            for &sig in &ignored {
                set_disposition(sig, libc::SIG_IGN)?;
            }
            pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&mask), None)?;
            Ok(())
        });
    }
}
