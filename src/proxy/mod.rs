//! The proxy: everything that touches sockets on the client and upstream sides.
//!
//! - [`listener`]: accept loop, connection cap, graceful shutdown
//! - [`route`]: the pure router (admission, target, loops, local pages, HSTS upgrade)
//! - [`pipeline`]: the I/O per request (route, forward, learn, audit, log)
//! - [`connect`]: CONNECT — blind tunnel or TLS interception
//! - [`upstream`]: pooled clients, `--resolve`, verified TLS
//! - [`target`], [`headers`], [`guard`]: pure parsing and checks used by the router
//! - [`idle`], [`head_timeout`]: the idle timeout and the slowloris guard on client I/O
//! - [`park`]: idle HTTP/1.1 connections hold their socket and nothing of hyper's
//! - [`respond`], [`pages`]: the answers the proxy makes itself
//! - [`state`]: what connections share, split by what needs it
//!
//! `crate::server` wires them together.

pub mod body;
pub mod connect;
pub mod destination;
pub mod errors;
pub mod exchange;
pub mod guard;
pub mod head_timeout;
pub mod headers;
pub mod idle;
pub mod listener;
pub mod outcome;
pub mod pages;
pub mod park;
pub mod pipeline;
pub mod pool;
pub mod prefixed;
pub mod resolve;
pub mod respond;
pub mod route;
pub mod state;
pub mod target;
pub mod upstream;
