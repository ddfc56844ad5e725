//! HSTS (RFC 6797): the header parser, the store, persistence, the preload import and the
//! http→https upgrade.
//!
//! Imports point down only:
//!
//! - bottom: [`host`] (host-name rules) and [`header`] (the STS parser), which import nothing
//!   else of the crate;
//! - then [`learn`] (what a response teaches), [`preload`] (Chromium lists) and [`upgrade`]
//!   (the http→https mapping);
//! - then [`store`] (the trait and the in-memory store);
//! - on top: [`load`] (lists + store file → store), [`persist`] (the store file) and
//!   [`interop`] (curl, wget, Chromium and JSON files).

pub mod header;
pub mod host;
pub mod interop;
pub mod learn;
pub mod load;
pub mod persist;
pub mod preload;
pub mod store;
pub mod upgrade;
