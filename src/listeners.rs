//! Who listens on which TCP port, as /proc tells it: the listening sockets'
//! inodes and ports from /proc/net/tcp{,6}, matched against the socket
//! inodes in processes' descriptor tables. Names the process that holds a
//! port drainit cannot bind, and finds the ports the app serves on, whose
//! traffic the quiet drain watches.

use std::fs;

use libc::pid_t;

/// A process that holds a listening socket.
#[derive(Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: pid_t,
    pub comm: String,
}

/// A listening socket of this network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Listener {
    inode: u64,
    port: u16,
}

/// TCP's LISTEN state in /proc/net/tcp.
const LISTEN: &str = "0A";

/// The first process, by pid, that listens on `port` in this network
/// namespace; `None` when /proc does not show one (another PID namespace,
/// or no permission to read other processes' descriptors).
pub fn holder_of(port: u16) -> Option<Holder> {
    let inodes: Vec<u64> = listeners()
        .into_iter()
        .filter(|l| l.port == port)
        .map(|l| l.inode)
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
        .find(|&pid| socket_inodes(pid).iter().any(|i| inodes.contains(i)))
        .map(|pid| Holder {
            pid,
            comm: fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_default(),
        })
}

/// The TCP ports, IPv4 and IPv6, on which sockets held by `pids` listen:
/// sorted, each once. A process that is gone or whose descriptors cannot
/// be read adds nothing.
pub fn listening_ports(pids: &[pid_t]) -> Vec<u16> {
    let held: Vec<u64> = pids.iter().flat_map(|&pid| socket_inodes(pid)).collect();
    let mut ports: Vec<u16> = listeners()
        .into_iter()
        .filter(|l| held.contains(&l.inode))
        .map(|l| l.port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn listeners() -> Vec<Listener> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .flat_map(|table| listening(&table))
        .collect()
}

/// The listening sockets in one /proc/net/tcp table:
/// `sl local_address rem_address st ... uid timeout inode`, the address
/// as hex `IP:PORT`. Lines that do not parse are skipped.
fn listening(table: &str) -> Vec<Listener> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            let inode = inode.parse().ok().filter(|&i| i != 0)?;
            (*state == LISTEN).then_some(Listener { inode, port })
        })
        .collect()
}

/// The inodes of the sockets in `pid`'s descriptor table.
fn socket_inodes(pid: pid_t) -> Vec<u64> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| socket_inode(&fs::read_link(fd.path()).ok()?.to_string_lossy()))
        .collect()
}

/// `socket:[INODE]`, the link of a socket's descriptor.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1FA3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1FA3 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
   3: 0100007F:0051 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 100 0 0 10 0
   4: 0100007F:ZZZZ 00000000:0000 0A
";

    const TABLE6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5151 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn reads_the_listening_sockets_of_a_table() {
        let listener = |inode, port| Listener { inode, port };
        assert_eq!(
            listening(TABLE),
            vec![listener(4242, 8099), listener(4444, 80)],
            "the established socket, the one without an inode and the broken line are skipped"
        );
        assert_eq!(listening(TABLE6), vec![listener(5151, 8080)]);
    }

    #[test]
    fn reads_a_socket_link() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("socket:[42"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn names_this_process_as_the_holder() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = holder_of(port).expect("this process listens");
        assert_eq!(holder.pid, std::process::id() as pid_t);
    }

    #[test]
    fn finds_the_ports_this_process_listens_on() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        // The same port on a second address: a second listener, one port.
        let b = std::net::TcpListener::bind(("127.0.0.2", port)).unwrap();
        let c = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let me = std::process::id() as pid_t;
        assert_eq!(
            listening_ports(&[]),
            Vec::<u16>::new(),
            "no process, no port"
        );
        let ports = listening_ports(&[me, me]);
        for l in [&b, &c] {
            assert!(ports.contains(&l.local_addr().unwrap().port()), "{ports:?}");
        }
        assert!(
            ports.windows(2).all(|w| w[0] < w[1]),
            "sorted, each once: {ports:?}"
        );
        let connected = std::net::TcpStream::connect(a.local_addr().unwrap()).unwrap();
        let client_port = connected.local_addr().unwrap().port();
        assert!(
            !listening_ports(&[me]).contains(&client_port),
            "a connected socket is not a listener"
        );
    }
}
