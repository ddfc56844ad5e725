//! HSTS (RFC 6797): the header parser, the store, persistence, the preload import and the
//! http→https upgrade.

pub mod fleet;
pub mod header;
pub mod learn;
pub mod persist;
pub mod preload;
pub mod store;
pub mod upgrade;
