//! Signal numbers, names, and the masks drainit runs under.
//!
//! drainit never installs a signal handler. It blocks every signal it is
//! meant to forward and takes them with sigtimedwait in the supervisor loop.
//! Blocked signals are queued even for PID 1 (the kernel only drops signals
//! to an init that neither blocks nor handles them), and no code ever runs
//! in signal context, so there is nothing async-signal-unsafe to get wrong.

use std::io;
use std::mem::MaybeUninit;
use std::thread;
use std::time::Duration;

use libc::c_int;
use nix::sys::signal::Signal;

/// Highest signal number on Linux (SIGRTMAX is 64).
pub const MAX_SIGNAL: c_int = 64;

const FAULTS: [Signal; 7] = [
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGILL,
    Signal::SIGFPE,
    Signal::SIGABRT,
    Signal::SIGTRAP,
    Signal::SIGSYS,
];

const NAMES: [(&str, c_int); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parses `15`, `TERM`, `SIGTERM`, `sigterm`, `RTMIN+3` or `SIGRTMAX-1`.
/// `allow_zero` accepts `0`, which rewriting uses to mean "drop".
pub fn parse(text: &str, allow_zero: bool) -> Result<c_int, String> {
    let bad = || {
        format!(
            "'{text}' is not a signal (expected a number 1-64 or a name such as TERM or SIGUSR1)"
        )
    };
    if let Ok(n) = text.parse::<c_int>() {
        return match n {
            0 if allow_zero => Ok(0),
            n if is_reserved(n) => Err(reserved(text)),
            1..=MAX_SIGNAL => Ok(n),
            _ => Err(bad()),
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES.iter().find(|(candidate, _)| *candidate == name) {
        return Ok(n);
    }
    parse_realtime(name).ok_or_else(bad)
}

/// Signals between the standard ones and SIGRTMIN belong to the C library
/// (glibc's thread cancellation and setxid, musl's too): no program can be
/// sent them on purpose. drainit never forwards them, and refuses them as
/// an option's value.
pub fn is_reserved(sig: c_int) -> bool {
    (FIRST_RESERVED..libc::SIGRTMIN()).contains(&sig)
}

const FIRST_RESERVED: c_int = 32;

fn reserved(text: &str) -> String {
    format!(
        "signal {text} is reserved by the C library (signals {FIRST_RESERVED}-{} are its own); use SIGRTMIN ({}) or above",
        libc::SIGRTMIN() - 1,
        libc::SIGRTMIN()
    )
}

fn parse_realtime(name: &str) -> Option<c_int> {
    let (base, rest) = if let Some(rest) = name.strip_prefix("RTMIN") {
        (libc::SIGRTMIN(), rest)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        (libc::SIGRTMAX(), rest)
    } else {
        return None;
    };
    let n = match rest.as_bytes().first() {
        None => base,
        Some(b'+') => base + rest[1..].parse::<c_int>().ok()?,
        Some(b'-') => base - rest[1..].parse::<c_int>().ok()?,
        Some(_) => return None,
    };
    (libc::SIGRTMIN()..=libc::SIGRTMAX())
        .contains(&n)
        .then_some(n)
}

/// `SIGTERM`, `SIGRTMIN+2`, or `SIG42` for numbers the C library reserves.
pub fn name(sig: c_int) -> String {
    if let Some((n, _)) = NAMES.iter().find(|(_, s)| *s == sig) {
        return format!("SIG{n}");
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if (min..=max).contains(&sig) {
        if sig - min <= max - sig {
            return format!("SIGRTMIN+{}", sig - min);
        }
        return format!("SIGRTMAX-{}", max - sig);
    }
    format!("SIG{sig}")
}

/// Signals that ask a process to stop. Forwarding one of them starts the
/// grace period after which the child's process group is killed. SIGHUP is
/// not among them: most daemons take it as "reload".
pub fn is_terminating(sig: c_int) -> bool {
    matches!(sig, libc::SIGTERM | libc::SIGINT | libc::SIGQUIT)
}

/// The stops a terminal's job control sends.
pub fn is_job_control_stop(sig: c_int) -> bool {
    matches!(sig, libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU)
}

/// Signals the kernel also raises for a fault (si_code > 0). Sent with
/// kill(2) they are forwarded like any other; a real fault in drainit
/// still kills it, because the kernel forces those through the mask.
pub fn is_fault(sig: c_int) -> bool {
    FAULTS.iter().any(|f| *f as c_int == sig)
}

/// A set of signals as the kernel takes it: signal N is bit N-1.
///
/// drainit talks to the kernel directly rather than through the C
/// library's sigset functions, which refuse the library's own signals (32
/// up to SIGRTMIN): left unblocked, one sent to drainit (kill -34 under
/// musl, the static build's C library) killed it and orphaned the child,
/// and a flood of them could fill the signal queue. Blocked, they are
/// taken and dropped like any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mask(u64);

impl Mask {
    /// Every signal (the kernel leaves SIGKILL and SIGSTOP out itself).
    pub const ALL: Mask = Mask(u64::MAX);

    /// The calling thread's mask.
    pub fn current() -> io::Result<Mask> {
        let mut old = 0u64;
        rt_sigprocmask(libc::SIG_BLOCK, None, Some(&mut old))?;
        Ok(Mask(old))
    }

    /// Adds these signals to the calling thread's mask; threads started
    /// afterwards inherit it.
    pub fn block(self) -> io::Result<()> {
        rt_sigprocmask(libc::SIG_BLOCK, Some(&self.0), None)
    }

    /// Makes this the calling thread's mask. Async-signal-safe: one syscall.
    pub fn set(self) -> io::Result<()> {
        rt_sigprocmask(libc::SIG_SETMASK, Some(&self.0), None)
    }

    /// Takes the next pending signal of this set, waiting for one until
    /// `timeout` passes (for ever without one); `Ok(None)` when it passed
    /// or a stop interrupted the wait.
    pub fn wait(self, timeout: Option<Duration>) -> io::Result<Option<libc::siginfo_t>> {
        let timeout = timeout.map(|left| libc::timespec {
            // Capped at 68 years, which fits every C library's time_t.
            tv_sec: left
                .as_secs()
                .min(i32::MAX as u64)
                .try_into()
                .unwrap_or_default(),
            tv_nsec: left.subsec_nanos().into(),
        });
        let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
        let timeout_ptr = timeout
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: the set, the info buffer and the optional timeout are
        // valid for the call; the kernel writes only into `info`, and the
        // set is KERNEL_SIGSET_SIZE bytes as it expects.
        let sig = unsafe {
            libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &self.0 as *const u64,
                info.as_mut_ptr(),
                timeout_ptr,
                KERNEL_SIGSET_SIZE,
            )
        };
        if sig < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: rt_sigtimedwait returned a signal, so it filled `info`.
        Ok(Some(unsafe { info.assume_init() }))
    }
}

/// Starts the thread `builder` describes with every signal blocked in it,
/// and blocks them again in the calling thread. Threads inherit the mask,
/// but musl unblocks its own signals (33, 34) in every new thread and, the
/// first time, in the thread that creates it: one sent to drainit would be
/// delivered there and kill it. Only the supervisor takes signals.
pub fn spawn<F, T>(builder: thread::Builder, f: F) -> io::Result<thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let handle = builder.spawn(move || {
        let _ = Mask::ALL.block();
        f()
    })?;
    Mask::ALL.block()?;
    Ok(handle)
}

/// The size of the kernel's sigset_t: 64 signals.
const KERNEL_SIGSET_SIZE: usize = 8;

fn rt_sigprocmask(how: c_int, set: Option<&u64>, old: Option<&mut u64>) -> io::Result<()> {
    let set = set.map_or(std::ptr::null(), |s| s as *const u64);
    let old = old.map_or(std::ptr::null_mut(), |o| o as *mut u64);
    // SAFETY: `set` and `old` are null or point to 8 valid bytes, the
    // kernel's sigset size; nothing else is touched. A raw syscall, so it
    // is async-signal-safe between fork and exec.
    let rc = unsafe { libc::syscall(libc::SYS_rt_sigprocmask, how, set, old, KERNEL_SIGSET_SIZE) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `sig` to `pid` (a negative pid names a process group).
pub fn send(pid: libc::pid_t, sig: c_int) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How received signals map to the ones forwarded, like dumb-init's
/// `--rewrite`. A target of 0 drops the signal.
#[derive(Clone, Debug, Default)]
pub struct Rewrites(Vec<(c_int, c_int)>);

impl Rewrites {
    /// Parses `FROM:TO`, each side a number or a name.
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        let (from, to) = spec
            .split_once(':')
            .ok_or_else(|| format!("'{spec}' is not FROM:TO (for example 15:3 or TERM:QUIT)"))?;
        let from = parse(from.trim(), false)?;
        let to = parse(to.trim(), true)?;
        self.0.retain(|(f, _)| *f != from);
        self.0.push((from, to));
        Ok(())
    }

    /// Rewrites `from` to `to` unless a rewrite of `from` was given.
    pub fn add_default(&mut self, from: c_int, to: c_int) {
        if self.0.iter().all(|(f, _)| *f != from) {
            self.0.push((from, to));
        }
    }

    /// The signal to forward for `sig`, or `None` when it is dropped.
    pub fn apply(&self, sig: c_int) -> Option<c_int> {
        let to = self
            .0
            .iter()
            .find(|(from, _)| *from == sig)
            .map_or(sig, |(_, to)| *to);
        (to != 0).then_some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_numbers_and_realtime() {
        assert_eq!(parse("15", false), Ok(libc::SIGTERM));
        assert_eq!(parse("term", false), Ok(libc::SIGTERM));
        assert_eq!(parse("SIGUSR1", false), Ok(libc::SIGUSR1));
        assert_eq!(parse("RTMIN+2", false), Ok(libc::SIGRTMIN() + 2));
        assert_eq!(parse("SIGRTMAX", false), Ok(libc::SIGRTMAX()));
        assert_eq!(parse("0", true), Ok(0));
        assert!(parse("0", false).is_err());
        assert!(parse("65", false).is_err());
        assert!(parse("RTMAX+1", false).is_err());
        assert!(parse("BOGUS", false).is_err());
        assert!(parse("RTMIN+x", false).is_err());
        for reserved in ["32", "33"] {
            let err = parse(reserved, true).unwrap_err();
            assert!(err.contains("reserved by the C library"), "{err}");
        }
        let mut r = Rewrites::default();
        assert!(r.add("1:32").unwrap_err().contains("signal 32 is reserved"));
    }

    #[test]
    fn names_round_trip() {
        for sig in 1..=MAX_SIGNAL {
            if sig == 32 || sig == 33 {
                continue;
            }
            assert_eq!(parse(&name(sig), false), Ok(sig), "{}", name(sig));
        }
    }

    #[test]
    fn rewrites_map_and_drop() {
        let mut r = Rewrites::default();
        r.add("TERM:QUIT").unwrap();
        r.add("USR1:0").unwrap();
        assert_eq!(r.apply(libc::SIGTERM), Some(libc::SIGQUIT));
        assert_eq!(r.apply(libc::SIGUSR1), None);
        assert_eq!(r.apply(libc::SIGHUP), Some(libc::SIGHUP));
        assert!(r.add("TERM").is_err());
        assert!(r.add("TERM:NOPE").is_err());
    }
}
