//! hudsucker-peer: a no-op MITM proxy on hudsucker 0.25, the "hudsucker" column of
//! bench/run.sh. It is hudsucker's own `noop` example with three changes a benchmark on
//! loopback needs: the CA is read from files (the bench's, so the load client trusts it), the
//! upstream TLS client trusts the bench's origin CA instead of the web's roots, and every host
//! name resolves to 127.0.0.1, so nothing is looked up and nothing leaves the machine.
//!
//! TLS on both sides uses rustls with ring, as strictproxy does, so the two proxies pay the
//! same for the same handshake arithmetic and the comparison is about the proxies.
//!
//! Usage: `hudsucker-peer LISTEN CA_CERT_PEM CA_KEY_PEM UPSTREAM_CA_PEM [LEAF_CACHE_SIZE]`.
//! It runs until SIGTERM or Ctrl-C.

use hudsucker::certificate_authority::RcgenAuthority;
use hudsucker::rcgen::{Issuer, KeyPair};
use hudsucker::Proxy;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::future::{ready, Ready};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Resolves every name to 127.0.0.1 (the connector puts in the URI's port).
#[derive(Clone, Copy)]
struct Loopback;

impl tower_service::Service<Name> for Loopback {
    type Response = std::iter::Once<SocketAddr>;
    type Error = std::io::Error;
    type Future = Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _name: Name) -> Self::Future {
        ready(Ok(std::iter::once(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            0,
        )))))
    }
}

async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let [listen, ca_cert, ca_key, upstream_ca, rest @ ..] = args else {
        return Err(
            "usage: hudsucker-peer LISTEN CA_CERT_PEM CA_KEY_PEM UPSTREAM_CA_PEM [LEAF_CACHE_SIZE]"
                .into(),
        );
    };
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| format!("{listen}: not an IP:port"))?;
    let cache_size: u64 = match rest.first() {
        Some(n) => n.parse().map_err(|_| format!("{n}: not a count"))?,
        None => 1_000,
    };
    let read = |path: &String| std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
    let key = KeyPair::from_pem(&read(ca_key)?).map_err(|e| format!("{ca_key}: {e}"))?;
    let issuer =
        Issuer::from_ca_cert_pem(&read(ca_cert)?, key).map_err(|e| format!("{ca_cert}: {e}"))?;
    let ca = RcgenAuthority::new(issuer, cache_size, rustls::crypto::ring::default_provider());

    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(upstream_ca).map_err(|e| format!("{upstream_ca}: {e}"))?;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{upstream_ca}: {e}"))?;
        roots.add(cert).map_err(|e| format!("{upstream_ca}: {e}"))?;
    }
    // What hudsucker's with_rustls_connector builds, with these roots and this resolver.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(Loopback);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let proxy = Proxy::builder()
            .with_addr(listen)
            .with_ca(ca)
            .with_http_connector(https)
            .with_graceful_shutdown(shutdown_signal())
            .build()
            .map_err(|e| e.to_string())?;
        proxy.start().await.map_err(|e| e.to_string())
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hudsucker-peer: {err}");
            ExitCode::FAILURE
        }
    }
}
