//! Has the traffic to the app stopped? Balancers that follow Kubernetes
//! endpoints, cloud target groups or xDS never probe drainit, so the only
//! sign that they have let go of a draining app is that its sockets go
//! quiet: no new connection, no byte received on an established one
//! (issue 15).
//!
//! drainit shares the app's network namespace, so the kernel's own TCP
//! counters answer that: a sock_diag netlink dump (INET_DIAG, sock_diag(7))
//! lists the namespace's TCP sockets, each with its `struct tcp_info`. A
//! [`Sampler`] turns one dump into a [`Snapshot`] of the connections on the
//! app's ports; [`activity`] tells what changed between two snapshots.
//!
//! What the kernel must offer:
//! - `CONFIG_INET_DIAG` and `CONFIG_INET_TCP_DIAG` (built in, or the
//!   modules `inet_diag` and `tcp_diag`, which the kernel loads on the
//!   first dump where it may); without them [`Sampler::sample`] fails
//!   with ENOENT.
//! - Linux 4.2 for `tcpi_bytes_received` (and `tcpi_segs_in`: both came in
//!   that release, so neither can stand in for the other); on an older
//!   kernel `sample` fails with [`io::ErrorKind::Unsupported`]. Socket
//!   cookies have been counters that are never reused since Linux 4.1;
//!   before, they were kernel addresses, which a later socket could reuse.
//! - No privilege: any process may dump the sockets of its own network
//!   namespace, with their tcp_info, as `ss -ti` does for an ordinary user
//!   (tests/traffic.rs samples as uid 65534).
//!
//! What a sample cannot see: a connection that opened and closed entirely
//! between two samples, unless the app closed it first (its TIME_WAIT
//! socket then stays for a minute and shows up as new).

use std::io;
use std::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    self, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

/// One TCP connection to one of the watched ports, as the app's side of it
/// sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// The kernel's socket cookie (`idiag_cookie`).
    pub cookie: u64,
    /// The peer; an IPv4 peer of an IPv6 socket is shown as IPv4.
    pub remote: SocketAddr,
    pub local_port: u16,
    /// `tcpi_bytes_received`: payload bytes received so far (a FIN counts
    /// one). `None` for the sockets the kernel keeps no tcp_info for:
    /// TIME_WAIT and half-open (SYN_RECV) ones.
    pub bytes_received: Option<u64>,
}

impl Connection {
    /// Whether the peer is loopback as drainit's control rules define it
    /// (127.0.0.1, ::1): drainit's own checks, probes run inside the
    /// container. A mesh sidecar's 127.0.0.6 is traffic.
    pub fn is_loopback(&self) -> bool {
        crate::control::is_loopback(self.remote.ip())
    }

    fn identity(&self) -> (u64, SocketAddr) {
        (self.cookie, self.remote)
    }
}

/// The connections on the watched ports at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Ordered by identity (cookie, then peer), for lookups.
    connections: Vec<Connection>,
}

impl Snapshot {
    fn new(mut connections: Vec<Connection>) -> Snapshot {
        connections.sort_unstable_by_key(Connection::identity);
        Snapshot { connections }
    }

    pub fn connections(&self) -> &[Connection] {
        &self.connections
    }

    fn find(&self, c: &Connection) -> Option<&Connection> {
        let at = self
            .connections
            .binary_search_by_key(&c.identity(), Connection::identity)
            .ok()?;
        self.connections.get(at)
    }
}

/// What happened between two snapshots. Peers on loopback are counted
/// apart: they are never traffic, only shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// Connections from remote peers that the earlier snapshot lacked.
    pub new: usize,
    /// Connections from remote peers in both snapshots whose received
    /// byte count grew.
    pub receiving: usize,
    pub loopback_new: usize,
    pub loopback_receiving: usize,
}

impl Activity {
    /// Whether remote peers still send: a new connection, or bytes.
    pub fn is_traffic(&self) -> bool {
        self.new > 0 || self.receiving > 0
    }
}

/// What changed from `prev` to `next`. A connection that is gone is no
/// activity; nor is one that turned into a TIME_WAIT socket and so lost
/// its counters.
pub fn activity(prev: &Snapshot, next: &Snapshot) -> Activity {
    let mut seen = Activity::default();
    for c in &next.connections {
        let (new, receiving) = if c.is_loopback() {
            (&mut seen.loopback_new, &mut seen.loopback_receiving)
        } else {
            (&mut seen.new, &mut seen.receiving)
        };
        match prev.find(c) {
            None => *new += 1,
            Some(p) if grew(p.bytes_received, c.bytes_received) => *receiving += 1,
            Some(_) => {}
        }
    }
    seen
}

fn grew(before: Option<u64>, after: Option<u64>) -> bool {
    matches!((before, after), (Some(b), Some(a)) if a > b)
}

/// Takes [`Snapshot`]s through a sock_diag netlink socket. The socket and
/// its buffer are made on the first sample, so a drainit that never drains
/// holds neither; drop the sampler when the drain ends.
#[derive(Default)]
pub struct Sampler {
    socket: Option<OwnedFd>,
    buf: Vec<u8>,
    seq: u32,
}

impl Sampler {
    pub fn new() -> Sampler {
        Sampler::default()
    }

    /// One dump per address family of the TCP connections whose local port
    /// is one of `ports`. After an error the socket is closed, so the next
    /// sample starts afresh.
    pub fn sample(&mut self, ports: &[u16]) -> io::Result<Snapshot> {
        let mut connections = Vec::new();
        for family in [AF_INET, AF_INET6] {
            match self.dump(family, ports, &mut connections) {
                Err(e) if without_ipv6(family, &e) => {}
                Err(e) => {
                    self.socket = None;
                    return Err(e);
                }
                Ok(()) => {}
            }
        }
        Ok(Snapshot::new(connections))
    }

    fn dump(&mut self, family: u8, ports: &[u16], out: &mut Vec<Connection>) -> io::Result<()> {
        let fd = self.open()?;
        self.seq = self.seq.wrapping_add(1);
        let kernel = NetlinkAddr::new(0, 0);
        socket::sendto(fd, &request(family, self.seq), &kernel, MsgFlags::empty())?;
        loop {
            // MSG_TRUNC: the length of the whole datagram, even when it did
            // not fit.
            let len = socket::recv(fd, &mut self.buf, MsgFlags::MSG_TRUNC)?;
            let datagram = self
                .buf
                .get(..len)
                .ok_or_else(|| invalid("a netlink datagram larger than the buffer"))?;
            if parse(datagram, family, self.seq, ports, out)? == Dump::Done {
                return Ok(());
            }
        }
    }

    fn open(&mut self) -> io::Result<RawFd> {
        if let Some(fd) = &self.socket {
            return Ok(fd.as_raw_fd());
        }
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )?;
        // The kernel answers at once; the timeout only keeps a lost answer
        // from stalling the caller, drainit's signal loop.
        socket::setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(1, 0))?;
        self.buf = vec![0; DATAGRAM_MAX];
        let raw = fd.as_raw_fd();
        self.socket = Some(fd);
        Ok(raw)
    }
}

/// A kernel built without IPv6 has no AF_INET6 handler for sock_diag, and
/// so no IPv6 sockets to find.
fn without_ipv6(family: u8, e: &io::Error) -> bool {
    family == AF_INET6 && e.raw_os_error() == Some(libc::ENOENT)
}

// Netlink and sock_diag constants (linux/netlink.h, linux/sock_diag.h,
// linux/inet_diag.h, include/net/tcp_states.h).
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
const NLMSG_HDRLEN: usize = size_of::<libc::nlmsghdr>();
const RTA_HDRLEN: usize = size_of::<libc::rtattr>();
const INET_DIAG_INFO: u16 = 2;
/// The request's bit for INET_DIAG_INFO: attribute N has bit N - 1.
const INFO_EXT: u8 = 1 << (INET_DIAG_INFO - 1);

/// The kernel never sends a dump datagram larger than 32 KiB (it sizes
/// them to the reader's buffer, capped there).
const DATAGRAM_MAX: usize = 32 * 1024;

/// Every state in which a socket on the app's port is a connection that
/// is, or just was, open: half-open, established, and each closing state.
/// Not LISTEN (the connections waiting in its accept queue are already
/// listed as established), SYN_SENT or CLOSE.
const STATES: u32 = 1 << 1 // ESTABLISHED
    | 1 << 3 // SYN_RECV
    | 1 << 4 // FIN_WAIT1
    | 1 << 5 // FIN_WAIT2
    | 1 << 6 // TIME_WAIT
    | 1 << 8 // CLOSE_WAIT
    | 1 << 9 // LAST_ACK
    | 1 << 11 // CLOSING
    | 1 << 12; // NEW_SYN_RECV

/// struct inet_diag_req_v2: family, protocol, extensions, padding (u8
/// each), the states (u32), then a struct inet_diag_sockid left zero:
/// every socket.
const REQ_LEN: usize = 56;

/// The struct inet_diag_msg that opens each answer: family, state, timer,
/// retrans (u8 each); struct inet_diag_sockid: sport, dport (big-endian
/// u16), src, dst (16 bytes each, big-endian), interface (u32), cookie
/// (2 x u32, low half first); expires, rqueue, wqueue, uid, inode (u32).
const MSG_SPORT: usize = 4;
const MSG_DPORT: usize = 6;
const MSG_DST: usize = 24;
const MSG_COOKIE: usize = 44;
const MSG_LEN: usize = 72;

/// The counter's place in struct tcp_info; the kernel sends the part of
/// the struct it knows, so an older kernel's is shorter.
const BYTES_RECEIVED: usize = offset_of!(libc::tcp_info, tcpi_bytes_received);

/// A dump request (a netlink header, then struct inet_diag_req_v2).
fn request(family: u8, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + REQ_LEN;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    let mut r = Vec::with_capacity(len);
    r.extend_from_slice(&(len as u32).to_ne_bytes());
    r.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r.extend_from_slice(&flags.to_ne_bytes());
    r.extend_from_slice(&seq.to_ne_bytes());
    r.extend_from_slice(&0u32.to_ne_bytes()); // sender port: the kernel fills it in
    r.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, INFO_EXT, 0]);
    r.extend_from_slice(&STATES.to_ne_bytes());
    r.resize(len, 0);
    r
}

#[derive(Debug, PartialEq, Eq)]
enum Dump {
    More,
    Done,
}

/// Reads one datagram of the answer to dump `seq`, adding the connections
/// on `ports` to `out`. Messages of other dumps (left over from one that
/// failed) are skipped.
fn parse(
    datagram: &[u8],
    family: u8,
    seq: u32,
    ports: &[u16],
    out: &mut Vec<Connection>,
) -> io::Result<Dump> {
    let mut rest = datagram;
    while !rest.is_empty() {
        let len = u32::from_ne_bytes(field(rest, offset_of!(libc::nlmsghdr, nlmsg_len))?) as usize;
        let kind = u16::from_ne_bytes(field(rest, offset_of!(libc::nlmsghdr, nlmsg_type))?);
        let msg_seq = u32::from_ne_bytes(field(rest, offset_of!(libc::nlmsghdr, nlmsg_seq))?);
        let payload = rest
            .get(NLMSG_HDRLEN..len)
            .ok_or_else(|| invalid("a netlink message length out of bounds"))?;
        rest = rest.get(align(len)..).unwrap_or_default();
        if msg_seq != seq {
            continue;
        }
        match kind {
            NLMSG_DONE | NLMSG_ERROR => return status(payload),
            SOCK_DIAG_BY_FAMILY => out.extend(connection(payload, family, ports)?),
            _ => {}
        }
    }
    Ok(Dump::More)
}

/// The end of a dump: NLMSG_DONE and NLMSG_ERROR both carry an errno
/// (negated; 0 for success). An old kernel's NLMSG_DONE may carry none.
fn status(payload: &[u8]) -> io::Result<Dump> {
    match field(payload, 0).map(i32::from_ne_bytes) {
        Ok(0) | Err(_) => Ok(Dump::Done),
        Ok(errno) => Err(io::Error::from_raw_os_error(errno.saturating_neg())),
    }
}

/// The connection one struct inet_diag_msg and its attributes describe;
/// `None` when its local port is not watched.
fn connection(msg: &[u8], family: u8, ports: &[u16]) -> io::Result<Option<Connection>> {
    if field::<1>(msg, 0)? != [family] {
        return Err(invalid("an answer for another address family"));
    }
    let local_port = u16::from_be_bytes(field(msg, MSG_SPORT)?);
    if !ports.contains(&local_port) {
        return Ok(None);
    }
    let ip = match family {
        AF_INET => IpAddr::from(Ipv4Addr::from(field::<4>(msg, MSG_DST)?)),
        _ => IpAddr::from(Ipv6Addr::from(field::<16>(msg, MSG_DST)?)),
    };
    let port = u16::from_be_bytes(field(msg, MSG_DPORT)?);
    let low = u32::from_ne_bytes(field(msg, MSG_COOKIE)?);
    let high = u32::from_ne_bytes(field(msg, MSG_COOKIE + 4)?);
    let bytes_received = match tcp_info(msg.get(MSG_LEN..).unwrap_or_default())? {
        Some(info) => Some(u64::from_ne_bytes(
            field(info, BYTES_RECEIVED).map_err(|_| unsupported())?,
        )),
        None => None,
    };
    Ok(Some(Connection {
        cookie: u64::from(low) | u64::from(high) << 32,
        remote: SocketAddr::new(ip.to_canonical(), port),
        local_port,
        bytes_received,
    }))
}

/// The struct tcp_info among a message's attributes, if it has one.
fn tcp_info(mut attributes: &[u8]) -> io::Result<Option<&[u8]>> {
    while !attributes.is_empty() {
        let len = u16::from_ne_bytes(field(attributes, offset_of!(libc::rtattr, rta_len))?);
        let kind = u16::from_ne_bytes(field(attributes, offset_of!(libc::rtattr, rta_type))?);
        let value = attributes
            .get(RTA_HDRLEN..usize::from(len))
            .ok_or_else(|| invalid("an attribute length out of bounds"))?;
        if kind == INET_DIAG_INFO {
            return Ok(Some(value));
        }
        attributes = attributes.get(align(len.into())..).unwrap_or_default();
    }
    Ok(None)
}

/// N bytes at `at`, or an error when the message is too short for them.
fn field<const N: usize>(bytes: &[u8], at: usize) -> io::Result<[u8; N]> {
    at.checked_add(N)
        .and_then(|end| bytes.get(at..end))
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("a netlink message too short for its fields"))
}

/// Netlink messages and attributes start on 4-byte boundaries.
fn align(len: usize) -> usize {
    len.saturating_add(3) & !3
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {what}"))
}

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "sock_diag: this kernel's tcp_info has no tcpi_bytes_received (Linux 4.2 added it)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One datagram of a real AF_INET6 dump (seq 7, Linux 6.18, x86_64)
    /// cut down to the two connections on port 40525 and the NLMSG_DONE:
    /// one to 127.0.0.2 from 127.0.0.1:34332 (IPv4 on a dual-stack
    /// socket) after it sent 18 bytes, one from [::1]:52270, idle.
    const CAPTURED: &[&str] = &[
        "9801000014000200070000000e2600000a0100009e4d861c00000000000000000000ffff7f000002",
        "00000000000000000000ffff7f00000100000000e7a6000000000000000000000000000000000000",
        "0000000030472100050008000000000008000f00000000000c001500010000000000000006001600",
        "120000001c010200010000000007aa01e01c0300409c000000800000180200000000000000000000",
        "00000000000000000000000000000000000000000000000000000000ffff0000cbff00000b000000",
        "05000000ffffff7f0a000000cbff00000300000000000000cbff0000000000001b644fd213000000",
        "ffffffffffffffff000000000000000012000000000000000100000003000000000000000b000000",
        "01000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "01000000000000000000000000000000000000000000000000000000000000000000000000000100",
        "00000100000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000",
        "9801000014000200070000000e2600000a0100009e4dcc2e00000000000000000000000000000001",
        "0000000000000000000000000000000100000000e8a6000000000000000000000000000000000000",
        "0000000032472100050008000000000008000f00000000000c001500010000000000000006001600",
        "120000001c010200010000000007aa01400d03000000000000800000180200000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000100b8ff000006000000",
        "03000000ffffff7f0a000000b8ff00000300000000000000b8ff00000000000076e9e65624000000",
        "ffffffffffffffff0000000000000000000000000000000000000000020000000000000006000000",
        "00000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "01000000000000000000000000000000000000000000000000000000000000000000000000000100",
        "b8ff0000000000000000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000",
        "1400000003000200070000000e26000000000000",
    ];
    const PORT: u16 = 40525;

    fn captured() -> Vec<u8> {
        let hex: String = CAPTURED.concat();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn conn(cookie: u64, remote: &str, bytes_received: Option<u64>) -> Connection {
        Connection {
            cookie,
            remote: remote.parse().unwrap(),
            local_port: PORT,
            bytes_received,
        }
    }

    fn parsed(datagram: &[u8], seq: u32, ports: &[u16]) -> io::Result<(Dump, Vec<Connection>)> {
        let mut out = Vec::new();
        let dump = parse(datagram, AF_INET6, seq, ports, &mut out)?;
        Ok((dump, out))
    }

    /// A netlink message of dump 7.
    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + payload.len()) as u32;
        let mut m = len.to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 2]);
        m.extend_from_slice(&7u32.to_ne_bytes());
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(payload);
        m
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn reads_a_captured_dump() {
        let (dump, found) = parsed(&captured(), 7, &[80, PORT]).unwrap();
        assert_eq!(dump, Dump::Done);
        assert_eq!(
            found,
            vec![
                conn(42727, "127.0.0.1:34332", Some(18)),
                conn(42728, "[::1]:52270", Some(0)),
            ]
        );
        assert!(found.iter().all(Connection::is_loopback));
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn skips_other_ports_and_other_dumps() {
        assert_eq!(parsed(&captured(), 7, &[80]).unwrap(), (Dump::Done, vec![]));
        assert_eq!(
            parsed(&captured(), 8, &[PORT]).unwrap(),
            (Dump::More, vec![]),
            "the answer to an earlier dump, even its NLMSG_DONE, is not this one's"
        );
    }

    #[test]
    fn no_cut_or_corrupted_byte_makes_it_panic() {
        let whole = captured();
        for end in 0..whole.len() {
            if let Ok((dump, _)) = parsed(&whole[..end], 7, &[PORT]) {
                assert_eq!(dump, Dump::More, "a dump cut at {end} cannot be complete");
            }
        }
        for at in 0..whole.len() {
            for value in [0, 1, 0x7f, 0xff] {
                let mut bad = whole.clone();
                bad[at] = value;
                let _ = parsed(&bad, 7, &[PORT]);
            }
        }
    }

    #[test]
    fn an_error_ends_the_dump_with_its_errno() {
        let error = message(NLMSG_ERROR, &(-libc::ENOENT).to_ne_bytes());
        let e = parsed(&error, 7, &[PORT]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let done = message(NLMSG_DONE, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(
            parsed(&done, 7, &[PORT]).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        let bare_done = message(NLMSG_DONE, &[]);
        assert_eq!(
            parsed(&bare_done, 7, &[PORT]).unwrap(),
            (Dump::Done, vec![])
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn a_tcp_info_without_the_byte_count_is_unsupported() {
        let whole = captured();
        // The first connection's struct inet_diag_msg, then the 120-byte
        // tcp_info of Linux 4.1 (it ends with tcpi_bytes_received's
        // predecessor, tcpi_bytes_acked).
        let msg = &whole[NLMSG_HDRLEN..NLMSG_HDRLEN + MSG_LEN];
        let mut payload = msg.to_vec();
        payload.extend_from_slice(&(RTA_HDRLEN as u16 + 120).to_ne_bytes());
        payload.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
        payload.extend_from_slice(&[0; 120]);
        let e = parsed(&message(SOCK_DIAG_BY_FAMILY, &payload), 7, &[PORT]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
        let without_info = message(SOCK_DIAG_BY_FAMILY, msg);
        assert_eq!(
            parsed(&without_info, 7, &[PORT]).unwrap().1,
            vec![conn(42727, "127.0.0.1:34332", None)],
            "a TIME_WAIT socket has no tcp_info"
        );
    }

    #[test]
    fn the_request_asks_for_every_tcp_connection_with_tcp_info() {
        let r = request(AF_INET, 9);
        assert_eq!(r.len(), 72);
        assert_eq!(r[..4], 72u32.to_ne_bytes());
        assert_eq!(r[4..6], SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        assert_eq!(
            r[6..8],
            0x301u16.to_ne_bytes(),
            "NLM_F_REQUEST | NLM_F_DUMP"
        );
        assert_eq!(r[8..12], 9u32.to_ne_bytes());
        assert_eq!(r[16..20], [AF_INET, 6, 0b10, 0], "TCP, with INET_DIAG_INFO");
        let states = u32::from_ne_bytes(r[20..24].try_into().unwrap());
        for (state, wanted) in [(1, true), (6, true), (8, true), (12, true), (10, false)] {
            assert_eq!(states & 1 << state != 0, wanted, "state {state}");
        }
        assert!(r[24..].iter().all(|&b| b == 0), "any socket");
    }

    #[test]
    fn a_kernel_without_ipv6_has_no_ipv6_sockets() {
        let enoent = io::Error::from_raw_os_error(libc::ENOENT);
        assert!(without_ipv6(AF_INET6, &enoent));
        assert!(!without_ipv6(AF_INET, &enoent), "no inet_diag at all");
        assert!(!without_ipv6(
            AF_INET6,
            &io::Error::from_raw_os_error(libc::EPERM)
        ));
    }

    fn snapshot(connections: &[Connection]) -> Snapshot {
        Snapshot::new(connections.to_vec())
    }

    #[test]
    fn a_connection_not_seen_before_is_new() {
        let old = conn(1, "10.0.0.1:1000", Some(5));
        let prev = snapshot(std::slice::from_ref(&old));
        let next = snapshot(&[
            conn(3, "10.0.0.2:1000", Some(0)),
            old,
            conn(2, "127.0.0.1:1000", Some(0)),
            conn(4, "10.0.0.3:1000", None),
        ]);
        let seen = activity(&prev, &next);
        assert_eq!(
            seen,
            Activity {
                new: 2,
                loopback_new: 1,
                ..Activity::default()
            }
        );
        assert!(seen.is_traffic());
    }

    #[test]
    fn the_same_cookie_from_another_peer_is_another_connection() {
        let prev = snapshot(&[conn(1, "10.0.0.1:1000", Some(5))]);
        let next = snapshot(&[conn(1, "10.0.0.1:1001", Some(5))]);
        assert_eq!(activity(&prev, &next).new, 1);
    }

    #[test]
    fn bytes_received_are_activity() {
        let prev = snapshot(&[
            conn(1, "10.0.0.1:1000", Some(5)),
            conn(2, "[::1]:1000", Some(5)),
            conn(3, "10.0.0.1:1001", Some(5)),
        ]);
        let next = snapshot(&[
            conn(1, "10.0.0.1:1000", Some(6)),
            conn(2, "[::1]:1000", Some(9)),
            conn(3, "10.0.0.1:1001", Some(5)),
        ]);
        assert_eq!(
            activity(&prev, &next),
            Activity {
                receiving: 1,
                loopback_receiving: 1,
                ..Activity::default()
            }
        );
    }

    #[test]
    fn idle_closing_and_closed_connections_are_quiet() {
        let prev = snapshot(&[
            conn(1, "10.0.0.1:1000", Some(5)),
            conn(2, "10.0.0.1:1001", Some(5)),
            conn(3, "10.0.0.1:1002", Some(5)),
            conn(4, "10.0.0.1:1003", None),
        ]);
        let next = snapshot(&[
            conn(1, "10.0.0.1:1000", Some(5)),
            conn(2, "10.0.0.1:1001", None),
            conn(4, "10.0.0.1:1003", None),
        ]);
        let seen = activity(&prev, &next);
        assert_eq!(
            seen,
            Activity::default(),
            "idle, now TIME_WAIT, gone, still TIME_WAIT"
        );
        assert!(!seen.is_traffic());
    }

    #[test]
    fn loopback_peers_are_never_traffic_but_a_sidecars_are() {
        let next = snapshot(&[
            conn(1, "127.0.0.1:1000", Some(5)),
            conn(3, "[::1]:1000", Some(5)),
        ]);
        let seen = activity(&Snapshot::default(), &next);
        assert_eq!(seen.loopback_new, 2);
        assert!(!seen.is_traffic());
        // Istio's sidecar delivers outside traffic from 127.0.0.6.
        let next = snapshot(&[conn(2, "127.0.0.6:1000", Some(5))]);
        assert!(activity(&Snapshot::default(), &next).is_traffic());
    }
}
