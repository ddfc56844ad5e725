//! Criterion benchmarks for the HSTS hot paths: STS parsing, loading a preload list the size
//! of today's Chromium list (~150,000 entries), store lookups against it, and the http→https
//! mapping. Run with `cargo bench --bench hsts`; criterion prints each figure.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use http::Uri;
use strictproxy::hsts::header::{parse_sts, StsPolicy};
use strictproxy::hsts::learn::StsUpdate;
use strictproxy::hsts::preload::{parse_preload, synthetic_list};
use strictproxy::hsts::store::{HstsStore, MemoryStore};
use strictproxy::hsts::upgrade::upgrade_uri;

const ENTRIES: usize = 150_000;

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_sts");
    for (name, value) in [
        (
            "typical",
            &b"max-age=31536000; includeSubDomains; preload"[..],
        ),
        ("minimal", &b"max-age=600"[..]),
        (
            "messy",
            &b";; Max-Age = \"63072000\" ; foo=\"bar; baz\"; includeSubDomains ;;"[..],
        ),
        ("invalid", &b"max-age=31536000; max-age=1"[..]),
    ] {
        group.bench_function(name, |b| b.iter(|| parse_sts(black_box(value))));
    }
    group.finish();
}

fn preload_load(c: &mut Criterion) {
    let text = synthetic_list(ENTRIES);
    // One cold, timed load first, so the figure is printed even under `--quick` filters.
    let start = Instant::now();
    let store = MemoryStore::with_preload(parse_preload(&text).unwrap_or_default());
    println!(
        "preload: {} entries ({} applying, {:.1} MB of JSON) parsed and indexed in {:?}",
        ENTRIES,
        store.preload_len(),
        text.len() as f64 / 1e6,
        start.elapsed()
    );

    let mut group = c.benchmark_group("preload");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("parse_150k", |b| b.iter(|| parse_preload(black_box(&text))));
    group.bench_function("parse_and_index_150k", |b| {
        b.iter(|| MemoryStore::with_preload(parse_preload(black_box(&text)).unwrap_or_default()))
    });
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let text = synthetic_list(ENTRIES);
    let store = MemoryStore::with_preload(parse_preload(&text).unwrap_or_default());
    // Some dynamic state too, as a running proxy has.
    for i in 0..1000 {
        store.apply(&StsUpdate::Learn {
            host: format!("learned{i}.test"),
            policy: StsPolicy {
                max_age: 86_400,
                include_subdomains: true,
                preload: false,
            },
        });
    }

    let mut group = c.benchmark_group("lookup_150k");
    for (name, host) in [
        ("hit_exact", "site74000.example"),
        ("hit_learned", "learned500.test"),
        ("miss", "www.not-listed.example.org"),
        // Four labels above the entry that decides: five map probes each side.
        ("subdomain_walk", "a.b.c.d.site74000.example"),
        ("needs_normalizing", "WWW.Site74000.Example."),
        ("ip_literal", "192.0.2.10"),
    ] {
        group.bench_function(name, |b| b.iter(|| store.is_enforced(black_box(host))));
    }
    group.bench_function("lookup_entry_subdomain_walk", |b| {
        b.iter(|| store.lookup(black_box("a.b.c.d.site74000.example")))
    });
    group.finish();
}

fn upgrade(c: &mut Criterion) {
    let mut group = c.benchmark_group("upgrade_uri");
    for (name, uri) in [
        ("http", "http://example.com/path/to/page?query=1&x=2"),
        ("http_port_80", "http://example.com:80/p"),
        ("ws_port", "ws://example.com:8080/chat"),
        ("ip_literal", "http://192.0.2.10/"),
    ] {
        let uri: Uri = match uri.parse() {
            Ok(uri) => uri,
            Err(_) => continue,
        };
        group.bench_function(name, |b| b.iter(|| upgrade_uri(black_box(&uri))));
    }
    group.finish();
}

criterion_group!(benches, parse, preload_load, lookup, upgrade);
criterion_main!(benches);
