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

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::thread;
use std::time::{Duration, Instant};

use log::debug;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::conn::{Conn, Limits, Reply, Request};
use crate::logger::Throttle;

/// At most 1,024 connections, fewer when the descriptor limit is low
/// (drainit does not raise it: its child would inherit the change).
fn connection_cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `limit`.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    };
    usize::try_from(soft.saturating_sub(64) / 2)
        .unwrap_or(1024)
        .clamp(16, 1024)
}

const LISTENER: u64 = u64::MAX;

/// Serves `handler` on `listener` on the calling thread; returns only
/// with the error that stopped it.
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    handler: &dyn Fn(&Request) -> Reply,
) -> io::Error {
    match prepare(&listener) {
        Ok(epoll) => run(listener, epoll, limits, handler),
        Err(e) => e,
    }
}

fn prepare(listener: &TcpListener) -> io::Result<Epoll> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(
        listener.as_fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, LISTENER),
    )?;
    Ok(epoll)
}

fn run(
    listener: TcpListener,
    epoll: Epoll,
    limits: Limits,
    handler: &dyn Fn(&Request) -> Reply,
) -> io::Error {
    let mut server = Server {
        epoll,
        listener,
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
        let mut listener_ready = false;
        for event in events.iter().take(n) {
            match event.data() {
                LISTENER => listener_ready = true,
                token => server.service(token, event.events(), now, handler),
            }
        }
        if listener_ready {
            server.accept_some(now);
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
    stream: TcpStream,
    peer: IpAddr,
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

struct Server {
    epoll: Epoll,
    listener: TcpListener,
    limits: Limits,
    cap: usize,
    conns: HashMap<u64, Entry>,
    next_token: u64,
}

impl Server {
    /// Accepts at most a quarter of the cap per round: accepting a whole
    /// flood at once evicted the connections accepted earlier in the same
    /// round, probes included, before their requests were even read. The
    /// listener is level-triggered, so the rest waits for the next round.
    fn accept_some(&mut self, now: Instant) {
        for _ in 0..(self.cap / 4).max(1) {
            match self.listener.accept() {
                Ok((stream, peer)) => self.adopt(stream, peer, now),
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

    fn adopt(&mut self, stream: TcpStream, peer: SocketAddr, now: Instant) {
        if self.conns.len() >= self.cap {
            self.evict_oldest();
        }
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1) % LISTENER;
        if let Err(e) = self
            .epoll
            .add(stream.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))
        {
            debug!("cannot watch a health connection: {e}");
            return;
        }
        let conn = Conn::new(Some(peer.ip()), now, &self.limits);
        self.conns.insert(
            token,
            Entry {
                stream,
                peer: peer.ip(),
                conn,
                writing: false,
            },
        );
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
            let _ = self.epoll.delete(entry.stream.as_fd());
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
                .modify(entry.stream.as_fd(), &mut EpollEvent::new(interest, token));
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
                debug!("bad request from {}: {why}", self.peer);
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
