//! Who may drain and undrain drainit, and where they can ask.
//!
//! The control socket is a Unix socket owned by drainit's user, mode 0600,
//! whose clients the server checks are that user or root: only the
//! container's own processes reach it, so it needs no other proof.
//!
//! Over TCP, by default, a request from loopback is taken for one from
//! inside the container, as scale-down scripts that `curl
//! localhost:8099/sethealth/ko` expect, unless it carries what a browser or
//! a proxy adds: a page in a browser on a host-networked machine could
//! otherwise drain it (CSRF, DNS rebinding), and so could a mesh sidecar
//! delivering outside traffic from loopback. Loopback is 127.0.0.1, ::1
//! and ::ffff:127.0.0.1 exactly: Istio's sidecar delivers inbound traffic
//! from 127.0.0.6. Everything else needs the bearer token, and
//! `--tcp-control` can make TCP token-only or turn it off.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::http::{Peer, Request};

/// What control over TCP takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpControl {
    /// Loopback without a browser's or proxy's marks, or the token.
    Local,
    /// The token, from anywhere.
    Token,
    /// Nothing opens it; the control socket still works.
    Off,
}

impl TcpControl {
    pub fn parse(value: &str) -> Result<TcpControl, String> {
        match value.trim() {
            "local" => Ok(TcpControl::Local),
            "token" => Ok(TcpControl::Token),
            "off" | "none" => Ok(TcpControl::Off),
            _ => Err(format!("'{value}' is not local, token or off")),
        }
    }
}

/// The control rules in force.
#[derive(Clone, Debug)]
pub struct ControlSettings {
    pub tcp: TcpControl,
    pub token: Option<String>,
}

impl Default for ControlSettings {
    fn default() -> ControlSettings {
        ControlSettings {
            tcp: TcpControl::Local,
            token: None,
        }
    }
}

/// Headers a proxy adds, by prefix, lower case: a request that carries one
/// came from somewhere else, whatever address it arrives from.
const FORWARDING: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "x-envoy-",
    "l5d-",
];

/// Whether `req` may drain or undrain; otherwise why not, for the answer
/// and the log.
pub fn check(req: &Request, settings: &ControlSettings) -> Result<(), &'static str> {
    let ip = match req.peer {
        Some(Peer::ControlSocket) => return Ok(()),
        Some(Peer::Tcp(ip)) => ip,
        None => return Err("the peer is unknown"),
    };
    let token = || has_token(req, settings.token.as_deref());
    match settings.tcp {
        TcpControl::Off => Err("control over TCP is off; use the control socket (drainit drain)"),
        TcpControl::Token if token() => Ok(()),
        TcpControl::Token => Err("control over TCP needs the bearer token"),
        TcpControl::Local if token() => Ok(()),
        TcpControl::Local if !is_loopback(ip) => Err("control needs loopback or the bearer token"),
        TcpControl::Local if from_browser_or_proxy(req) => {
            Err("a request from a browser or through a proxy needs the bearer token")
        }
        TcpControl::Local => Ok(()),
    }
}

/// 127.0.0.1, ::1 or ::ffff:127.0.0.1, and no other address.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4 == Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => {
            v6 == Ipv6Addr::LOCALHOST || v6.to_ipv4_mapped() == Some(Ipv4Addr::LOCALHOST)
        }
    }
}

fn from_browser_or_proxy(req: &Request) -> bool {
    req.headers.iter().any(|(name, value)| {
        let name = name.to_ascii_lowercase();
        name == "origin"
            || (name == "sec-fetch-site" && !value.eq_ignore_ascii_case("none"))
            || FORWARDING.iter().any(|f| name.starts_with(f))
    })
}

/// `Authorization: Bearer TOKEN`, the scheme in any case (RFC 7235).
fn has_token(req: &Request, token: Option<&str>) -> bool {
    let (Some(token), Some(auth)) = (token, req.header("authorization")) else {
        return false;
    };
    auth.split_once(' ').is_some_and(|(scheme, given)| {
        scheme.eq_ignore_ascii_case("bearer")
            && constant_time_eq(given.trim().as_bytes(), token.as_bytes())
    })
}

/// Takes the same time whatever the position of the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token: at least 8 characters, no spaces or control characters.
pub fn parse_token(value: &str) -> Result<String, String> {
    if value.len() < 8 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("expected at least 8 characters without spaces".into());
    }
    Ok(value.to_string())
}

/// The token in a file, such as a mounted Kubernetes Secret; one trailing
/// line end is not part of it.
pub fn read_token_file(path: &str) -> Result<String, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read '{path}': {e}"))?;
    parse_token(text.trim_end_matches(['\n', '\r']))
        .map_err(|e| format!("the token in '{path}': {e}"))
}

/// The control socket's file name in whichever directory holds it.
const SOCKET_NAME: &str = "drainit.sock";

/// Where drainit puts its control socket unless told: /run, or the temp
/// directory when /run is not writable (a non-root user in a FROM scratch
/// image has neither, unless the image or `--tmpfs` provides one). The
/// client subcommands look in the same places.
pub fn default_sockets() -> Vec<PathBuf> {
    let tmp = std::env::var_os("TMPDIR")
        .filter(|t| !t.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let mut dirs = vec![PathBuf::from("/run"), tmp, PathBuf::from("/tmp")];
    dirs.dedup();
    dirs.into_iter().map(|d| d.join(SOCKET_NAME)).collect()
}

/// The control socket, removed again when drainit is done with it.
pub struct ControlSocket {
    pub listener: UnixListener,
    pub file: SocketFile,
}

/// The socket's file: its path, and which file it was (device and inode),
/// so drainit never removes a socket another drainit has put there since.
#[derive(Clone, Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file if it is still the one drainit created.
    pub fn remove(&self) {
        if fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl ControlSocket {
    /// Binds `path`, mode 0600. A socket file nobody serves any more is
    /// replaced; one that another process serves is left alone (`Ok(None)`).
    pub fn bind(path: &Path) -> io::Result<Option<ControlSocket>> {
        if UnixStream::connect(path).is_ok() {
            return Ok(None);
        }
        match fs::symlink_metadata(path) {
            Ok(meta) if is_socket(&meta) => fs::remove_file(path)?,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "it exists and is not a socket",
                ))
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        let meta = fs::symlink_metadata(path)?;
        let file = SocketFile {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
        };
        Ok(Some(ControlSocket { listener, file }))
    }
}

fn is_socket(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_socket()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(peer: Peer, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request {
            method: "GET",
            url: "/sethealth/ko",
            peer: Some(peer),
            headers,
        }
    }

    fn tcp(ip: &str) -> Peer {
        Peer::Tcp(ip.parse().unwrap())
    }

    fn settings(tcp: TcpControl) -> ControlSettings {
        ControlSettings {
            tcp,
            token: Some("s3cret-token".into()),
        }
    }

    #[test]
    fn loopback_means_the_three_addresses_only() {
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.6",
            "127.1.2.3",
            "::ffff:127.0.0.6",
            "::127.0.0.1",
            "10.0.0.1",
        ] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn marks_of_a_browser_or_proxy_need_the_token() {
        let local = settings(TcpControl::Local);
        let lo = tcp("127.0.0.1");
        assert_eq!(
            check(&request(lo, &[("User-Agent", "curl")]), &local),
            Ok(())
        );
        assert_eq!(
            check(&request(lo, &[("Sec-Fetch-Site", "none")]), &local),
            Ok(()),
            "typed into the address bar"
        );
        for mark in [
            ("Origin", "http://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
            ("Forwarded", "for=10.0.0.1"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
            ("X-Envoy-External-Address", "10.0.0.1"),
            ("l5d-client-id", "x"),
        ] {
            assert!(check(&request(lo, &[mark]), &local).is_err(), "{mark:?}");
            let with_token = [mark, ("Authorization", "bearer s3cret-token")];
            assert_eq!(check(&request(lo, &with_token), &local), Ok(()), "{mark:?}");
        }
        assert!(check(&request(tcp("127.0.0.6"), &[]), &local).is_err());
    }

    #[test]
    fn tokens_and_modes() {
        let remote = tcp("10.1.2.3");
        for (auth, ok) in [
            ("Bearer s3cret-token", true),
            ("BEARER s3cret-token", true),
            ("Bearer  s3cret-token ", true),
            ("Bearer s3cret-tokeX", false),
            ("Basic s3cret-token", false),
            ("s3cret-token", false),
        ] {
            let got = check(
                &request(remote, &[("Authorization", auth)]),
                &settings(TcpControl::Local),
            );
            assert_eq!(got.is_ok(), ok, "{auth}");
        }
        let token_only = settings(TcpControl::Token);
        assert!(check(&request(tcp("127.0.0.1"), &[]), &token_only).is_err());
        let off = settings(TcpControl::Off);
        let auth = [("Authorization", "Bearer s3cret-token")];
        assert!(check(&request(tcp("127.0.0.1"), &auth), &off).is_err());
        assert_eq!(check(&request(Peer::ControlSocket, &[]), &off), Ok(()));
    }

    #[test]
    fn token_files_lose_their_line_end() {
        let dir = std::env::temp_dir().join(format!("drainit-token-{}", std::process::id()));
        fs::write(&dir, "s3cret-token\n").unwrap();
        assert_eq!(
            read_token_file(dir.to_str().unwrap()),
            Ok("s3cret-token".into())
        );
        fs::write(&dir, "short\n").unwrap();
        assert!(read_token_file(dir.to_str().unwrap()).is_err());
        fs::remove_file(&dir).unwrap();
        assert!(read_token_file("/nonexistent/token")
            .unwrap_err()
            .contains("cannot read"));
    }
}
