//! The TLS server side of interception: [`Interceptor`] turns the leaf for a name into a
//! ready `Arc<rustls::ServerConfig>`, cached per name, all sharing one session cache and one
//! ticketer so that clients resume.

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::ServerConfig;

use super::cache::BoundedMap;
use super::{ring_provider, CaError, LeafCache};

/// Entries of the TLS session cache shared by every per-host config (rustls' own default is
/// 256, sized for one server name rather than a whole browsing session).
const SESSION_CACHE_ENTRIES: usize = 4096;

/// A cached server config and the leaf it serves, to notice when the leaf was re-minted.
#[derive(Clone)]
struct CachedConfig {
    config: Arc<ServerConfig>,
    leaf: Arc<CertifiedKey>,
}

/// Builds and caches the TLS server side of interception: one `Arc<ServerConfig>` per name,
/// all sharing one session cache and one ticketer so a client resumes instead of paying for a
/// full handshake on every new connection.
pub struct Interceptor {
    cache: LeafCache,
    configs: BoundedMap<CachedConfig>,
    provider: Arc<CryptoProvider>,
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn ProducesTickets>,
}

impl fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interceptor")
            .field("cache", &self.cache)
            .field("configs", &self.configs.len())
            .finish_non_exhaustive()
    }
}

impl Interceptor {
    /// An interceptor over `cache`; it keeps as many server configs as the cache keeps leaves.
    /// Fails only if the ticket key cannot be generated (no system randomness).
    pub fn new(cache: LeafCache) -> Result<Interceptor, CaError> {
        let capacity = cache.capacity();
        Ok(Interceptor {
            cache,
            configs: BoundedMap::new(capacity),
            provider: ring_provider(),
            sessions: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
            // Stateless TLS 1.3 / RFC 5077 tickets under one rotating key shared by all
            // configs; the per-name configs would otherwise each hold a key of their own.
            ticketer: rustls::crypto::ring::Ticketer::new()?,
        })
    }

    /// The server config for `name` (from [`leaf_name`]): the leaf for that name, ALPN `h2`
    /// then `http/1.1`, and the shared session cache and ticketer.
    pub fn server_config(&self, name: &str) -> Result<Arc<ServerConfig>, CaError> {
        let leaf = self.cache.get(name)?;
        let current = |cached: &CachedConfig| Arc::ptr_eq(&cached.leaf, &leaf);
        if let Some(cached) = self.configs.get(name, current) {
            return Ok(cached.config);
        }
        let config = self.build(Arc::clone(&leaf))?;
        let cached = CachedConfig {
            config,
            leaf: Arc::clone(&leaf),
        };
        Ok(self.configs.insert(name, cached, current).config)
    }

    fn build(&self, leaf: Arc<CertifiedKey>) -> Result<Arc<ServerConfig>, CaError> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(leaf)));
        // h2 first: a client that offers both gets HTTP/2, as from the real origin; one that
        // offers no ALPN gets HTTP/1.1 (RFC 7301 §3.2, RFC 9113 §3.2).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.session_storage = Arc::clone(&self.sessions);
        config.ticketer = Arc::clone(&self.ticketer);
        Ok(Arc::new(config))
    }

    /// The leaf cache, for its hit and miss counters.
    pub fn leaf_cache(&self) -> &LeafCache {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::test_ca as new_ca;
    use crate::ca::{leaf_name, LocalCa, LEAF_REFRESH_AFTER};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::RootCertStore;
    use std::net::Ipv4Addr;
    use std::time::{Duration, SystemTime};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn server_configs_are_cached_and_share_sessions_and_tickets() {
        let (_dir, ca) = new_ca();
        let interceptor = Interceptor::new(LeafCache::new(Arc::new(ca), 10)).unwrap();
        let a = interceptor.server_config("a.test").unwrap();
        let a_again = interceptor.server_config("a.test").unwrap();
        let b = interceptor.server_config("b.test").unwrap();
        assert!(Arc::ptr_eq(&a, &a_again));
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&a.session_storage, &b.session_storage));
        assert!(Arc::ptr_eq(&a.ticketer, &b.ticketer));
        assert!(a.ticketer.enabled());
        assert_eq!(a.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert_eq!(interceptor.leaf_cache().misses(), 2);
        assert_eq!(interceptor.leaf_cache().hits(), 1);
    }

    #[test]
    fn server_config_follows_a_reminted_leaf() {
        let (_dir, ca) = new_ca();
        let interceptor = Interceptor::new(LeafCache::new(Arc::new(ca), 10)).unwrap();
        let first = interceptor.server_config("old.test").unwrap();
        interceptor.cache.set_minted_for_test(
            "old.test",
            SystemTime::now() - LEAF_REFRESH_AFTER - Duration::from_secs(1),
        );
        let second = interceptor.server_config("old.test").unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(interceptor.configs.len(), 1);
    }

    /// A client that trusts only ca.pem, as a browser would after the user installed it.
    fn client_config(ca: &LocalCa) -> Arc<rustls::ClientConfig> {
        let mut roots = RootCertStore::empty();
        let pem = std::fs::read_to_string(ca.cert_path()).unwrap();
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Accepts one connection the way the proxy will: read the ClientHello, pick the name with
    /// leaf_name, then finish the handshake with that name's config. Answers "ok".
    async fn serve_one(
        listener: &tokio::net::TcpListener,
        interceptor: &Interceptor,
        connect_host: &str,
    ) {
        let (tcp, _) = listener.accept().await.unwrap();
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
        let start = acceptor.await.unwrap();
        let name = leaf_name(start.client_hello().server_name(), connect_host);
        let config = interceptor.server_config(&name).unwrap();
        let mut tls = start.into_stream(config).await.unwrap();
        tls.write_all(b"ok").await.unwrap();
        tls.shutdown().await.unwrap();
    }

    async fn connect(
        addr: std::net::SocketAddr,
        client: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
    ) -> (Option<Vec<u8>>, Option<rustls::HandshakeKind>) {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(client)
            .connect(server_name, tcp)
            .await
            .unwrap();
        let mut body = Vec::new();
        tls.read_to_end(&mut body).await.unwrap();
        assert_eq!(body, b"ok");
        let (_, conn) = tls.get_ref();
        (
            conn.alpn_protocol().map(<[u8]>::to_vec),
            conn.handshake_kind(),
        )
    }

    #[tokio::test]
    async fn a_client_trusting_ca_pem_completes_a_handshake_with_h2_and_resumes() {
        let (_dir, ca) = new_ca();
        let client = client_config(&ca);
        let interceptor = Interceptor::new(LeafCache::new(Arc::new(ca), 10)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name = ServerName::try_from("secure.test").unwrap();

        let server = async {
            // The CONNECT host differs: the SNI must win.
            serve_one(&listener, &interceptor, "10.9.8.7").await;
            serve_one(&listener, &interceptor, "10.9.8.7").await;
        };
        let clients = async {
            let first = connect(addr, client.clone(), name.clone()).await;
            let second = connect(addr, client.clone(), name.clone()).await;
            (first, second)
        };
        let ((), (first, second)) = tokio::join!(server, clients);
        assert_eq!(first.0.as_deref(), Some(&b"h2"[..]));
        assert_eq!(first.1, Some(rustls::HandshakeKind::Full));
        // The second connection resumes with the ticket from the first (the shared ticketer).
        assert_eq!(second.1, Some(rustls::HandshakeKind::Resumed));
        assert_eq!(interceptor.leaf_cache().misses(), 1);
        assert_eq!(interceptor.leaf_cache().hits(), 1);
    }

    #[tokio::test]
    async fn an_ip_literal_without_sni_gets_an_ip_san_the_client_accepts() {
        let (_dir, ca) = new_ca();
        let client = client_config(&ca);
        let interceptor = Interceptor::new(LeafCache::new(Arc::new(ca), 10)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        let ((), (alpn, _)) = tokio::join!(
            serve_one(&listener, &interceptor, "127.0.0.1"),
            connect(addr, client, name)
        );
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
        assert_eq!(interceptor.leaf_cache().len(), 1);
        assert!(interceptor.leaf_cache().get("127.0.0.1").is_ok());
        assert_eq!(interceptor.leaf_cache().misses(), 1);
    }

    #[tokio::test]
    async fn a_client_offering_only_http11_gets_http11() {
        let (_dir, ca) = new_ca();
        let mut client = (*client_config(&ca)).clone();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let interceptor = Interceptor::new(LeafCache::new(Arc::new(ca), 10)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name = ServerName::try_from("secure.test").unwrap();
        let ((), (alpn, _)) = tokio::join!(
            serve_one(&listener, &interceptor, "secure.test"),
            connect(addr, Arc::new(client), name)
        );
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    }
}
