//! HTTP/1.1, both sides, in one place: `server` is the health endpoint's
//! bounded server (PID 1 listens on the network through it), `client` the
//! GET behind readiness checks and `drainit probe`. File names say which
//! side of HTTP they are on; what routes the requests is `health`.

pub mod client;
pub mod server;

pub use server::{Reply, Request};
