//! HTTP/1.1, both sides, in one place. The server side is `conn` (one
//! connection's protocol, without I/O) and `server` (the epoll loop that
//! feeds it): the health endpoint, PID 1's door to the network. `client`
//! is the GET behind readiness checks and `drainit probe`. File names say
//! which side of HTTP they are on; what routes the requests is `health`.

pub mod client;
pub mod conn;
pub mod server;

pub use conn::{Peer, Reply, Request};
