//! Who listens on a TCP port, as /proc tells it: the socket's inode from
//! /proc/net/tcp{,6}, then the process whose descriptor table holds it.
//! Used to name the process that holds a port drainit cannot bind.

use std::fs;

use libc::pid_t;

/// A process that holds a listening socket.
#[derive(Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: pid_t,
    pub comm: String,
}

/// TCP's LISTEN state in /proc/net/tcp.
const LISTEN: &str = "0A";

/// The first process, by pid, that listens on `port` in this network
/// namespace; `None` when /proc does not show one (another PID namespace,
/// or no permission to read other processes' descriptors).
pub fn holder_of(port: u16) -> Option<Holder> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let mut pids: Vec<pid_t> = fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter()
        .find(|&pid| holds_any(pid, &inodes))
        .map(|pid| Holder {
            pid,
            comm: fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_default(),
        })
}

/// Inodes of the sockets listening on `port` in one /proc/net/tcp table:
/// `sl local_address rem_address st ... uid timeout inode`, the address
/// as hex `IP:PORT`.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    let want = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            (local.ends_with(&want) && *state == LISTEN && *inode != "0").then(|| inode.to_string())
        })
        .collect()
}

fn holds_any(pid: pid_t, inodes: &[String]) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|target| {
            let target = target.to_string_lossy();
            target
                .strip_prefix("socket:[")
                .and_then(|rest| rest.strip_suffix(']'))
                .is_some_and(|inode| inodes.iter().any(|i| i == inode))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1FA3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1FA3 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn finds_the_listening_inode_of_a_port() {
        assert_eq!(listening_inodes(TABLE, 8099), vec!["4242".to_string()]);
        assert_eq!(listening_inodes(TABLE, 80), vec!["4444".to_string()]);
        assert!(listening_inodes(TABLE, 8100).is_empty());
    }

    #[test]
    fn names_this_process_as_the_holder() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = holder_of(port).expect("this process listens");
        assert_eq!(holder.pid, std::process::id() as pid_t);
    }
}
