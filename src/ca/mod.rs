//! The local CA behind TLS interception: load or create `ca.pem` + `ca-key.pem`, mint leaf
//! certificates that every major browser and OS accepts, cache them per host, and hand the
//! proxy one ready `rustls::ServerConfig` per intercepted name.
//!
//! The layers, from the bottom up (the shape hudsucker uses: a CA behind a trait, a cached
//! decorator around it), one file each:
//!
//! - this file: the [`LeafIssuer`] trait everything above depends on, [`CaError`], and
//!   [`leaf_name`], the pure decision of which name a leaf is minted for;
//! - [`local`]: [`LocalCa`] owns the CA files on disk (and their permissions) and the CA key,
//!   and implements [`LeafIssuer`]: every call mints a fresh leaf;
//! - [`cache`]: [`LeafCache`], a bounded, concurrent decorator over any `Arc<dyn LeafIssuer>`,
//!   so a repeated CONNECT to the same host mints nothing (on a generic bounded LRU map);
//! - [`intercept`]: [`Interceptor`] turns a leaf into an `Arc<rustls::ServerConfig>` (ALPN, one
//!   shared session cache and ticketer so clients can resume), also cached per name.
//!
//! Everything certificate-shaped here carries a comment naming the RFC clause or the client
//! behaviour it answers, because each of these details is one some client rejects when wrong.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

pub mod cache;
pub mod intercept;
pub mod local;

pub use cache::LeafCache;
pub use intercept::Interceptor;
pub use local::{LocalCa, CA_CERT_FILE, CA_KEY_FILE};

/// The CA certificate as it is served to clients: by the local pages
/// (`http://strictproxy.local/`) and by the admin API. Built once at start.
#[derive(Clone, Debug)]
pub struct CaMaterial {
    /// PEM, for `/ca.pem`.
    pub pem: bytes::Bytes,
    /// DER, for `/ca.crt` (what Windows and Android expect).
    pub der: bytes::Bytes,
    /// Where the certificate file is on disk (for the banner).
    pub path: PathBuf,
}

impl CaMaterial {
    /// The served forms of `ca`'s certificate.
    pub fn of(ca: &LocalCa) -> CaMaterial {
        CaMaterial {
            pem: bytes::Bytes::copy_from_slice(ca.cert_pem().as_bytes()),
            der: bytes::Bytes::copy_from_slice(ca.cert_der()),
            path: ca.cert_path().to_path_buf(),
        }
    }
}

/// Default number of hosts whose leaf (and server config) is kept; a browsing session touches a
/// few hundred hosts, so this keeps every one of them warm while bounding memory.
pub const DEFAULT_LEAF_CACHE_CAPACITY: usize = 1000;

/// A cached leaf older than this is minted again, so a proxy that runs for months never serves
/// a leaf near its `notAfter` (leaves live for 178 days forward of their minting).
pub const LEAF_REFRESH_AFTER: Duration = Duration::from_secs(30 * 86_400);

/// Everything that can go wrong in the CA; each variant names the file or host involved and,
/// where the user can fix it, how. All are the proxy's own failures (not the client's or the
/// upstream's): at start-up they stop the process, per connection they end the interception.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file or directory of the CA could not be read, written or created.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Only one of `ca.pem` and `ca-key.pem` exists; generating a new pair would silently
    /// replace a CA the user already trusts.
    #[error(
        "found {} but not {}: restore the missing file, or delete {} to generate a new CA \
         (clients must then trust the new ca.pem)",
        present.display(), missing.display(), present.display()
    )]
    OnlyOneFile { present: PathBuf, missing: PathBuf },
    /// The CA key is open to group or others (Unix mode bits).
    #[error(
        "the CA key {} has mode {mode:04o}, which lets group or others read or change it; \
         anyone who can read it can impersonate every site to every client that trusts the CA. \
         Fix it with: chmod 600 {}",
        path.display(), path.display()
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    /// `ca.pem` is not a usable CA certificate.
    #[error("cannot use the CA certificate {}: {reason}", path.display())]
    BadCert { path: PathBuf, reason: String },
    /// `ca-key.pem` is not a usable private key.
    #[error("cannot use the CA key {}: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    /// A leaf signed with the key does not verify against the certificate.
    #[error(
        "a test leaf signed with {} does not verify against {}: {reason}; the key does not \
         belong to that certificate",
        key.display(), cert.display()
    )]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// The CA certificate is past its `notAfter`.
    #[error(
        "the CA certificate {} expired on {not_after}: delete {} and {} to generate a new CA \
         (clients must then trust the new ca.pem)",
        path.display(), path.display(), key.display()
    )]
    Expired {
        path: PathBuf,
        key: PathBuf,
        not_after: OffsetDateTime,
    },
    /// Key or certificate generation failed.
    #[error("cannot generate the CA: {0}")]
    Generate(#[source] rcgen::Error),
    /// The name to mint for is neither a valid DNS name nor an IP address.
    #[error("cannot mint a certificate for {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    /// Signing a leaf failed.
    #[error("cannot mint a certificate for {name}: {source}")]
    Mint {
        name: String,
        #[source]
        source: rcgen::Error,
    },
    /// rustls refused a key or configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// Mints leaf certificates. The proxy and [`LeafCache`] depend on this trait only, so a test or
/// another CA backend can stand in for [`LocalCa`].
pub trait LeafIssuer: Send + Sync {
    /// A certificate chain (leaf first, then the CA) and its signing key, for `name`: a DNS name
    /// or an IP address literal without brackets, as [`leaf_name`] returns it. Leaves must stay
    /// valid for longer than [`LEAF_REFRESH_AFTER`], after which [`LeafCache`] asks again.
    fn issue(&self, name: &str) -> Result<Arc<CertifiedKey>, CaError>;
}

/// The name to mint a leaf for: the TLS SNI when the client sent one, else the CONNECT host.
///
/// The SNI wins because it is the name the client will check the certificate against; a client
/// that connects to an IP literal sends no SNI (RFC 6066 §3 forbids IP addresses there), and
/// then the CONNECT host is what it checks. The name is put in the one form the cache keys on:
/// IPv6 brackets removed (RFC 3986 §3.2.2 uses them only inside URIs), lower case (DNS names
/// compare case-insensitively, RFC 4343), and no trailing dot (RFC 6066 §3: the SNI carries none,
/// and a SAN must not either, RFC 5280 §4.2.1.6).
pub fn leaf_name(sni: Option<&str>, connect_host: &str) -> String {
    let raw = match sni {
        Some(sni) if !sni.is_empty() => sni,
        _ => connect_host,
    };
    let unbracketed = raw
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(raw);
    let undotted = unbracketed.strip_suffix('.').unwrap_or(unbracketed);
    undotted.to_ascii_lowercase()
}

/// The ring provider every rustls object in this module is built with (the crate pins *ring*;
/// naming it explicitly keeps us independent of any process-wide default).
fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A fresh CA in a temporary folder, for the tests of every layer.
#[cfg(test)]
pub(crate) fn test_ca() -> (tempfile::TempDir, LocalCa) {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(&dir.path().join("certs")).unwrap();
    (dir, ca)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_name_table() {
        let rows: &[(Option<&str>, &str, &str)] = &[
            // The SNI is the name the client verifies: it wins over the CONNECT host.
            (Some("secure.test"), "10.0.0.1", "secure.test"),
            // No SNI (RFC 6066 §3: never sent for an IP literal): the CONNECT host.
            (None, "127.0.0.1", "127.0.0.1"),
            // An IPv6 CONNECT authority is bracketed (RFC 3986 §3.2.2); the SAN holds no brackets.
            (None, "[::1]", "::1"),
            (None, "[2001:db8::1]", "2001:db8::1"),
            // An empty SNI is treated as absent.
            (Some(""), "example.com", "example.com"),
            // DNS names compare case-insensitively (RFC 4343): one cache key per host.
            (Some("WWW.Example.COM"), "x", "www.example.com"),
            (None, "Example.COM", "example.com"),
            // A fully-qualified trailing dot is dropped (RFC 6066 §3, RFC 5280 §4.2.1.6).
            (None, "example.com.", "example.com"),
        ];
        for (sni, host, want) in rows {
            assert_eq!(leaf_name(*sni, host), *want, "sni={sni:?} host={host}");
        }
    }
}
