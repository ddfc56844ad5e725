//! strictproxy — a forward proxy that gives every client behind it what a careful browser
//! gives its own user: HSTS enforced and learned (RFC 6797), and redirects made correct
//! (RFC 9110 §15.4), with a JSON-lines traffic log for QA runs and classes.
//!
//! The decisions (upgrade, learn, audit, rewrite) are pure functions over `http` types in
//! [`hsts`] and [`redirect`]; the I/O around them lives in [`proxy`], [`traffic`],
//! [`hsts::persist`] and [`admin`].

// Nothing that came from the network or a file may panic the proxy.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod ca;
pub mod config;
pub mod console_format;
pub mod feed;
pub mod finding;
pub mod hsts;
pub mod install_guide;
pub mod lab;
pub mod log_writer;
pub mod metrics;
pub mod private_file;
pub mod proxy;
pub mod redirect;
pub mod report;
pub mod server;
pub mod traffic;
