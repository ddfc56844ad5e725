//! Criterion benchmarks for leaf minting: a cold mint (a new host: one ECDSA P-256 signature
//! with the shared leaf key), a cached lookup (a repeated CONNECT), and a cached per-host TLS
//! server configuration, which is what an intercepted handshake asks for.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use strictproxy::ca::{Interceptor, LeafCache, LeafIssuer, LocalCa};

fn minting(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Arc::new(LocalCa::load_or_create(dir.path()).expect("CA"));
    let mut group = c.benchmark_group("leaf");

    // Every iteration names a host never seen before, so nothing is cached.
    let counter = AtomicU64::new(0);
    group.bench_function("mint_cold", |b| {
        b.iter(|| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            ca.issue(black_box(&format!("h{n}.bench.test")))
                .expect("leaf")
        })
    });

    let cache = LeafCache::new(ca.clone(), 1024);
    cache.get("secure.test").expect("leaf");
    group.bench_function("cached", |b| {
        b.iter(|| cache.get(black_box("secure.test")).expect("leaf"))
    });

    let interceptor = Interceptor::new(LeafCache::new(ca.clone(), 1024)).expect("interceptor");
    interceptor.server_config("secure.test").expect("config");
    group.bench_function("server_config_cached", |b| {
        b.iter(|| {
            interceptor
                .server_config(black_box("secure.test"))
                .expect("config")
        })
    });
    group.finish();
}

criterion_group!(benches, minting);
criterion_main!(benches);
