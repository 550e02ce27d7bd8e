//! The health endpoint's HTTP/1.1 server: one thread, one epoll set, and
//! `conn` for everything HTTP.
//!
//! A thread per connection (tiny_http's way) let 2,000 idle clients make
//! 2,000 threads in PID 1; docs/http-server.md says why that crate went.
//! Here connections are capped (at the cap, the least recently active one
//! is dropped, so a flood of idle sockets cannot lock the proxy's probes
//! out), each has a deadline (`conn` sets it), and the thread sleeps in
//! epoll_wait until the earliest deadline, or without a timeout when no
//! connection is open: an idle keep-alive client costs one wake-up, when
//! its idle timeout expires.
//!
//! Bytes read from a socket are never dropped: the loop reads only what
//! the connection has room for, and stops reading it (the kernel then
//! pushes back on the peer) while its answers wait to be sent.
//!
//! The same loop serves drainit's Unix control socket, whose clients are
//! taken only when the kernel says they run as drainit's user or root.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;
use std::time::{Duration, Instant};

use log::debug;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::resource::{getrlimit, Resource};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::Uid;

use super::conn::{Conn, Limits, Peer, Reply, Request};
use crate::logger::Throttle;

/// A socket the server accepts connections on.
pub enum Listener {
    Tcp(TcpListener),
    /// drainit's control socket.
    Unix(UnixListener),
}

/// An accepted connection.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l) => l.set_nonblocking(true),
        }
    }

    /// The next connection and who is on it; `Ok(None)` for one refused.
    fn accept(&self) -> io::Result<Option<(Stream, Peer)>> {
        match self {
            Listener::Tcp(l) => {
                let (stream, addr) = l.accept()?;
                let _ = stream.set_nodelay(true);
                Ok(Some((Stream::Tcp(stream), Peer::Tcp(addr.ip()))))
            }
            Listener::Unix(l) => {
                let (stream, _) = l.accept()?;
                Ok(
                    is_trusted_local(&stream)
                        .then_some((Stream::Unix(stream), Peer::ControlSocket)),
                )
            }
        }
    }
}

/// Whether the process on the other end of the control socket runs as
/// root or as drainit's user. The socket's mode (0600) already keeps
/// others out; this holds even if that mode was changed.
fn is_trusted_local(stream: &UnixStream) -> bool {
    match getsockopt(stream, PeerCredentials) {
        Ok(cred) if cred.uid() == 0 || cred.uid() == Uid::effective().as_raw() => true,
        Ok(cred) => {
            static REFUSED: Throttle = Throttle::new();
            REFUSED.warn(|| {
                // A client in another PID namespace has no pid here.
                let pid = Some(cred.pid()).filter(|p| *p > 0);
                let pid = pid.map_or(String::new(), |p| format!(" (pid {p})"));
                format!(
                    "refused a control socket client running as uid {}{pid}",
                    cred.uid()
                )
            });
            false
        }
        Err(_) => false,
    }
}

impl Stream {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(true),
            Stream::Unix(s) => s.set_nonblocking(true),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// At most 1,024 connections, fewer when the descriptor limit is low
/// (drainit does not raise it: its child would inherit the change).
fn connection_cap() -> usize {
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from(soft.saturating_sub(64) / 2)
        .unwrap_or(1024)
        .clamp(16, 1024)
}

/// `none`/`off`, `HOST:PORT`, `:PORT` or `PORT`.
pub fn parse_addr(value: &str) -> Result<Option<SocketAddr>, String> {
    let v = value.trim();
    if matches!(v, "none" | "off" | "") {
        return Ok(None);
    }
    let full = if let Some(port) = v.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if v.parse::<u16>().is_ok() {
        format!("0.0.0.0:{v}")
    } else {
        v.to_string()
    };
    let bad = || format!("'{value}' is not an address (expected HOST:PORT, :PORT or none)");
    full.to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .map(Some)
        .ok_or_else(bad)
}

/// epoll tokens at and above this one are listeners (the index is the
/// difference); connections take the ones below.
const LISTENERS: u64 = u64::MAX - 16;

/// Serves `handler` on `listeners` on the calling thread; returns only
/// with the error that stopped it.
pub fn serve(
    listeners: &[Listener],
    limits: Limits,
    handler: &dyn Fn(&Request) -> Reply,
) -> io::Error {
    match prepare(listeners) {
        Ok(epoll) => run(listeners, epoll, limits, handler),
        Err(e) => e,
    }
}

fn prepare(listeners: &[Listener]) -> io::Result<Epoll> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for (token, listener) in (LISTENERS..).zip(listeners) {
        listener.set_nonblocking()?;
        epoll.add(listener.fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))?;
    }
    Ok(epoll)
}

fn run(
    listeners: &[Listener],
    epoll: Epoll,
    limits: Limits,
    handler: &dyn Fn(&Request) -> Reply,
) -> io::Error {
    let mut server = Server {
        epoll,
        listeners,
        limits,
        cap: connection_cap(),
        conns: HashMap::new(),
        next_token: 0,
    };
    let mut events = vec![EpollEvent::empty(); 256];
    let mut next_deadline = None;
    loop {
        let timeout = timeout_until(next_deadline, Instant::now());
        let n = match server.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return e.into(),
        };
        let now = Instant::now();
        // Connections first, then new ones: a probe accepted in the last
        // round is answered before a batch of newcomers can evict it.
        let mut ready = Vec::new();
        for event in events.iter().take(n) {
            match event.data() {
                token if token >= LISTENERS => ready.push(token - LISTENERS),
                token => server.service(token, event.events(), now, handler),
            }
        }
        for index in ready {
            server.accept_some(index, now, handler);
        }
        next_deadline = server.expire(now);
    }
}

/// epoll_wait's timeout until `deadline`, in milliseconds rounded up:
/// rounded down, the thread would wake just before the deadline, find
/// nothing due, and sleep again for the last fraction of a millisecond.
fn timeout_until(deadline: Option<Instant>, now: Instant) -> EpollTimeout {
    let Some(deadline) = deadline else {
        return EpollTimeout::NONE;
    };
    let millis = deadline
        .saturating_duration_since(now)
        .as_nanos()
        .div_ceil(1_000_000);
    EpollTimeout::try_from(millis).unwrap_or(EpollTimeout::MAX)
}

/// A connection's socket beside its protocol state.
struct Entry {
    stream: Stream,
    peer: Peer,
    conn: Conn,
    /// Waiting for the socket to take output (EPOLLOUT) rather than input.
    writing: bool,
}

/// What the loop waits for next on a connection.
#[derive(PartialEq, Eq)]
enum Next {
    Read,
    Write,
    Close,
}

struct Server<'l> {
    epoll: Epoll,
    listeners: &'l [Listener],
    limits: Limits,
    cap: usize,
    conns: HashMap<u64, Entry>,
    next_token: u64,
}

impl Server<'_> {
    /// Accepts at most a quarter of the cap per round: accepting a whole
    /// flood at once evicted the connections accepted earlier in the same
    /// round, probes included, before their requests were even read. The
    /// listener is level-triggered, so the rest waits for the next round.
    fn accept_some(&mut self, index: u64, now: Instant, handler: &dyn Fn(&Request) -> Reply) {
        let Some(listener) = usize::try_from(index)
            .ok()
            .and_then(|i| self.listeners.get(i))
        else {
            return;
        };
        for _ in 0..(self.cap / 4).max(1) {
            match listener.accept() {
                Ok(Some((stream, peer))) => self.adopt(stream, peer, now, handler),
                Ok(None) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or a transient error:
                    // make room and let the next readiness event retry.
                    static ACCEPT_FAILED: Throttle = Throttle::new();
                    ACCEPT_FAILED.warn(|| format!("health server cannot accept: {e}"));
                    if !self.evict_oldest() {
                        thread::sleep(Duration::from_millis(50));
                    }
                    return;
                }
            }
        }
    }

    /// Takes a new connection and answers what it has sent already: a
    /// probe's request is usually there by now, and answered at once it
    /// cannot be the oldest connection evicted to make room.
    fn adopt(
        &mut self,
        stream: Stream,
        peer: Peer,
        now: Instant,
        handler: &dyn Fn(&Request) -> Reply,
    ) {
        if self.conns.len() >= self.cap {
            self.evict_oldest();
        }
        if stream.set_nonblocking().is_err() {
            return;
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1) % LISTENERS;
        if let Err(e) = self
            .epoll
            .add(stream.fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))
        {
            debug!("cannot watch a health connection: {e}");
            return;
        }
        let conn = Conn::new(Some(peer), now, &self.limits);
        self.conns.insert(
            token,
            Entry {
                stream,
                peer,
                conn,
                writing: false,
            },
        );
        self.service(token, EpollFlags::EPOLLIN, now, handler);
    }

    /// Drops the connection that has been quiet longest. Returns false when
    /// there was none.
    fn evict_oldest(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .min_by_key(|(_, e)| e.conn.last_active())
            .map(|(t, _)| *t);
        let Some(token) = oldest else {
            return false;
        };
        debug!(
            "health server at {} connections: dropping the least active",
            self.conns.len()
        );
        self.close(token);
        true
    }

    fn close(&mut self, token: u64) {
        if let Some(entry) = self.conns.remove(&token) {
            let _ = self.epoll.delete(entry.stream.fd());
        }
    }

    fn service(
        &mut self,
        token: u64,
        flags: EpollFlags,
        now: Instant,
        handler: &dyn Fn(&Request) -> Reply,
    ) {
        let Some(entry) = self.conns.get_mut(&token) else {
            return;
        };
        let next = if flags.intersects(EpollFlags::EPOLLERR) {
            Next::Close
        } else {
            entry.drive(&self.limits, now, handler)
        };
        if next == Next::Close {
            self.close(token);
            return;
        }
        // The interest set changes only when a write stalls or completes;
        // most requests are answered in one write and need no epoll_ctl.
        let writing = next == Next::Write;
        if entry.writing != writing {
            entry.writing = writing;
            let interest = if writing {
                EpollFlags::EPOLLOUT
            } else {
                EpollFlags::EPOLLIN
            };
            let _ = self
                .epoll
                .modify(entry.stream.fd(), &mut EpollEvent::new(interest, token));
        }
    }

    /// Closes the connections past their deadline; returns the next deadline.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        for (token, entry) in &self.conns {
            let deadline = entry.conn.deadline();
            if deadline <= now {
                expired.push(*token);
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        for token in expired {
            self.close(token);
        }
        next
    }
}

impl Entry {
    /// Sends and answers what is pending, reads once (at most what the
    /// connection has room for), and sends and answers again. Data left in
    /// the socket is reported again by the level-triggered epoll.
    fn drive(
        &mut self,
        limits: &Limits,
        now: Instant,
        handler: &dyn Fn(&Request) -> Reply,
    ) -> Next {
        match self.settle(limits, now, handler) {
            Next::Read => {}
            other => return other,
        }
        if !self.fill(limits, now) {
            return Next::Close;
        }
        self.settle(limits, now, handler)
    }

    /// Writes answers and answers buffered requests until the socket takes
    /// no more or nothing is left to answer.
    fn settle(
        &mut self,
        limits: &Limits,
        now: Instant,
        handler: &dyn Fn(&Request) -> Reply,
    ) -> Next {
        loop {
            match self.flush() {
                Next::Read => {}
                other => return other,
            }
            if let Some(why) = self.conn.answer(now, limits, handler) {
                match self.peer {
                    Peer::Tcp(ip) => debug!("bad request from {ip}: {why}"),
                    Peer::ControlSocket => debug!("bad request on the control socket: {why}"),
                }
            }
            if self.conn.output().is_empty() {
                break;
            }
        }
        if self.conn.finished() {
            Next::Close
        } else {
            Next::Read
        }
    }

    /// Writes pending output: Read once it is all out, Write when the
    /// socket is full, Close when the connection broke.
    fn flush(&mut self) -> Next {
        while !self.conn.output().is_empty() {
            match self.stream.write(self.conn.output()) {
                Ok(0) => return Next::Close,
                Ok(n) => self.conn.sent(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Write,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        Next::Read
    }

    /// Reads what the connection has room for. False when it broke.
    fn fill(&mut self, limits: &Limits, now: Instant) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            let want = self.conn.room(limits).min(buf.len());
            if want == 0 {
                return true;
            }
            match self.stream.read(&mut buf[..want]) {
                Ok(0) => {
                    self.conn.end();
                    return true;
                }
                Ok(n) => {
                    self.conn.receive(&buf[..n], now, limits);
                    // A short read emptied the socket; asking again would
                    // only hear EAGAIN.
                    if n < want {
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}
