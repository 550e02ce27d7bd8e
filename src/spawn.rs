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
use nix::unistd::{setsid, tcsetpgrp, Pid};

use crate::signals::Mask;

/// The signal state drainit was started with, captured before it changed
/// anything, so the child can be given exactly the same.
pub struct Inherited {
    mask: Mask,
    /// Those of [`RESET_BEFORE_EXEC`] whose disposition was SIG_IGN, to be
    /// ignored again in the child.
    ignored: Vec<c_int>,
}

/// The only signals whose disposition differs between drainit and its
/// child unless put back: drainit takes SIGCHLD back, and Rust's Command
/// resets SIGPIPE in the child. Every other signal ignored at start stays
/// ignored through fork and exec without help, because drainit installs no
/// handler and changes no other disposition (a program starts with every
/// disposition SIG_DFL or SIG_IGN: exec resets handlers). Asking for these
/// two instead of all 64 saves 62 sigaction calls at every start.
const RESET_BEFORE_EXEC: [c_int; 2] = [libc::SIGCHLD, libc::SIGPIPE];

impl Inherited {
    /// Reads the current mask and ignored set. Call first thing in main.
    pub fn capture() -> io::Result<Inherited> {
        let mask = Mask::current()?;
        let ignored = RESET_BEFORE_EXEC
            .into_iter()
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

/// Where the child runs.
#[derive(Clone, Copy)]
pub enum Placement {
    /// In a process group of its own (tini's way), made the terminal's
    /// foreground group when there is a terminal, so Ctrl-C and job
    /// control reach it as they would from a shell.
    Group { foreground: bool },
    /// In a session of its own that takes the terminal (dumb-init's way),
    /// so a shell run as the child has job control.
    Session { terminal: bool },
}

/// Starts `program` in a group or, with `setsid`, a session of its own.
pub fn spawn(
    program: &[OsString],
    inherited: &Inherited,
    setsid: bool,
) -> Result<libc::pid_t, SpawnError> {
    let mut command = Command::new(&program[0]);
    command.args(&program[1..]);
    let tty = io::stdin().is_terminal();
    let placement = if setsid {
        Placement::Session { terminal: tty }
    } else {
        Placement::Group { foreground: tty }
    };
    configure(&mut command, inherited, placement);
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

/// The variable that holds the control token.
pub const CONTROL_TOKEN_ENV: &str = "DRAINIT_CONTROL_TOKEN";

/// Makes `command` start where `placement` says, with the inherited signal
/// mask and ignored set. drainit's control token is not passed on: the app
/// has no use for it, and everything it starts could read it.
pub fn configure(command: &mut Command, inherited: &Inherited, placement: Placement) {
    // Only when it is set: any change to the environment makes Command copy
    // all of it into a map and build a new one for exec, which was most of
    // the instructions drainit spent starting its child.
    if std::env::var_os(CONTROL_TOKEN_ENV).is_some() {
        command.env_remove(CONTROL_TOKEN_ENV);
    }
    let mask = inherited.mask;
    let ignored = inherited.ignored.clone();
    if let Placement::Group { .. } = placement {
        command.process_group(0);
    }
    // SAFETY: the closure runs between fork and exec and calls only
    // async-signal-safe functions (getpid, setsid, tcsetpgrp, ioctl,
    // signal, pthread_sigmask) on data captured by value; it allocates
    // nothing. Descriptor 0 stays open for the closure's whole run.
    unsafe {
        command.pre_exec(move || {
            // std empties the mask before this runs: block everything
            // again until the inherited mask is put back, so that nothing
            // sent to the new pid can act before exec, and tcsetpgrp from
            // what is still a background group cannot raise SIGTTOU.
            Mask::ALL.set()?;
            match placement {
                Placement::Group { foreground: true } => {
                    let _ = tcsetpgrp(BorrowedFd::borrow_raw(libc::STDIN_FILENO), Pid::this());
                }
                Placement::Group { foreground: false } => {}
                Placement::Session { terminal } => {
                    setsid()?;
                    // Fails harmlessly when drainit could not give it up.
                    if terminal {
                        libc::ioctl(libc::STDIN_FILENO, libc::TIOCSCTTY, 0);
                    }
                }
            }
            for &sig in &ignored {
                set_disposition(sig, libc::SIG_IGN)?;
            }
            mask.set()?;
            Ok(())
        });
    }
}

/// Gives up the controlling terminal so the child's new session can take
/// it (dumb-init's setsid mode). When drainit led the session that had it,
/// the kernel sends the foreground group (drainit's) a SIGHUP and a
/// SIGCONT as if drainit had sent them itself (SI_USER, si_pid = drainit),
/// so the supervisor drops them with the other self-sent signals and they
/// never reach the child. Nothing else is dropped on their account: the
/// first SIGHUP a user sends is forwarded.
pub fn give_up_terminal() {
    if io::stdin().is_terminal() {
        // SAFETY: TIOCNOTTY takes no argument and changes no memory.
        unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCNOTTY) };
    }
}
