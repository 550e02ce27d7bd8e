//! Reaping zombies and finding the processes drainit is responsible for.

use std::collections::HashMap;
use std::fs;
use std::io;

use libc::pid_t;
use log::{debug, warn};

/// One process that exited and was reaped.
pub struct Reaped {
    pub pid: pid_t,
    /// Exit code, or 128+N when killed by signal N.
    pub code: i32,
}

/// Reaps one exited child without blocking. `Ok(None)` means children are
/// still running; `Err` with ECHILD means there are none left at all.
///
/// Only children of the calling thread are waited for (`__WNOTHREAD`): the
/// checks thread runs its own commands and must get their status itself.
/// Orphans are reparented to the main thread, which calls this.
pub fn reap_one() -> io::Result<Option<Reaped>> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid writes only to `status`. (nix's wrapper cannot tell
    // a child killed by a real-time signal, whose 128+N drainit reports.)
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WNOTHREAD) };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(Reaped {
            pid,
            code: exit_code(status),
        })),
    }
}

fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

/// A process seen in /proc.
#[derive(Clone, Debug)]
pub struct Process {
    pub pid: pid_t,
    pub ppid: pid_t,
    pub pgid: pid_t,
    pub comm: String,
}

/// All descendants of `root`, found through /proc. `None` when /proc is not
/// mounted (or not this PID namespace's), so the caller can fall back.
pub fn descendants(root: pid_t) -> Option<Vec<Process>> {
    // A foreign /proc lists another namespace's processes by their pids
    // there: as PID 1, "children of 1" were the host's daemons, which the
    // stop signal was then sent to by those numbers in our namespace.
    if !proc_is_ours() {
        return None;
    }
    let mut by_parent: HashMap<pid_t, Vec<Process>> = HashMap::new();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<pid_t>().ok())
        else {
            continue;
        };
        // A process may exit between read_dir and this read: skip it.
        if let Some(p) = read_stat(pid) {
            by_parent.entry(p.ppid).or_default().push(p);
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for child in by_parent.remove(&parent).unwrap_or_default() {
            frontier.push(child.pid);
            found.push(child);
        }
    }
    Some(found)
}

/// Whether /proc describes this PID namespace (it does not when /proc is
/// missing, or is the host's /proc seen from a new namespace).
fn proc_is_ours() -> bool {
    let me = std::process::id();
    fs::read_link("/proc/self").is_ok_and(|p| p.to_str() == Some(&me.to_string()))
}

fn read_stat(pid: pid_t) -> Option<Process> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &stat)
}

/// Parses `pid (comm) state ppid pgrp ...`; comm may itself hold spaces
/// and parentheses, so the fields are counted from the last ')'.
fn parse_stat(pid: pid_t, stat: &str) -> Option<Process> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut fields = stat.get(close + 1..)?.split_whitespace();
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    if state == "Z" {
        // Zombies are waiting for us, not running: never signal them.
        debug!("pid {pid} ({comm}) is a zombie");
        return None;
    }
    Some(Process {
        pid,
        ppid,
        pgid,
        comm,
    })
}

/// Sends `sig` to each process, logging (never failing on) errors: a
/// process may be gone already (ESRCH) or not ours to signal (EPERM).
pub fn signal_all(processes: &[Process], sig: libc::c_int) {
    for p in processes {
        if let Err(e) = crate::signals::send(p.pid, sig) {
            if e.raw_os_error() != Some(libc::ESRCH) {
                warn!(
                    "could not send {} to pid {} ({}): {e}",
                    crate::signals::name(sig),
                    p.pid,
                    p.comm
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let p = parse_stat(42, "42 (a) b (c)) S 7 42 42 0 -1").unwrap();
        assert_eq!((p.ppid, p.pgid, p.comm.as_str()), (7, 42, "a) b (c)"));
        assert!(parse_stat(42, "42 (x) Z 1 42").is_none());
        assert!(parse_stat(42, "garbage").is_none());
    }

    #[test]
    fn finds_own_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id() as pid_t;
        let found = descendants(me).unwrap();
        assert!(found
            .iter()
            .any(|p| p.pid == child.id() as pid_t && p.comm == "sleep"));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
