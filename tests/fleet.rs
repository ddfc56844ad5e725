//! A fleet of proxies sharing one HSTS store on Redis: real `redis-server` processes, each
//! started by the test on a free loopback port with persistence off, and real proxies on
//! loopback. Learned on one instance → enforced by the others; deletions, `max-age=0`,
//! manual-over-learned, a Redis outage and restart, a new instance starting cold, concurrent
//! conflicting headers, and expiry.
//!
//! Skipped (with the reason printed) where `redis-server` is not installed, except under
//! `CI=true`, where that is a failure.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A `redis-server` on 127.0.0.1, killed (by PID) when dropped.
struct Redis {
    port: u16,
    child: Option<Child>,
    /// For a TLS-only server: the certificate and key files, and the folder holding them.
    tls: Option<(String, String, tempfile::TempDir)>,
}

impl Redis {
    /// Starts one on a free port; `None` (test skipped) when redis-server is missing.
    async fn start() -> Option<Redis> {
        if !Path::new(REDIS_SERVER).exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{REDIS_SERVER} is missing: install the redis-server package"
            );
            eprintln!("skipped: {REDIS_SERVER} is not installed (apt-get install redis-server)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            port,
            child: None,
            tls: None,
        };
        redis.restart().await;
        Some(redis)
    }

    /// Starts one that speaks only TLS, with a certificate for 127.0.0.1 from `ca`.
    async fn start_tls(ca: &TestCa) -> Option<Redis> {
        use base64::Engine as _;
        let pem = |label: &str, der: &[u8]| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                lines.join("\n")
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("redis.crt");
        let key = dir.path().join("redis.key");
        std::fs::write(&cert, pem("CERTIFICATE", &ca.cert_chain[0])).unwrap();
        std::fs::write(&key, pem("PRIVATE KEY", &ca.key_der)).unwrap();
        let mut redis = Redis::start_with(Some((
            cert.display().to_string(),
            key.display().to_string(),
            dir,
        )))
        .await?;
        redis.restart().await;
        Some(redis)
    }

    async fn start_with(tls: Option<(String, String, tempfile::TempDir)>) -> Option<Redis> {
        let mut redis = Redis::start().await?;
        redis.kill();
        redis.tls = tls;
        Some(redis)
    }

    /// (Re)starts the server on the same port, empty, and waits until it answers.
    async fn restart(&mut self) {
        let mut command = Command::new(REDIS_SERVER);
        command.args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]);
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some((cert, key, _)) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--tls-cert-file", cert, "--tls-key-file", key])
                .args(["--tls-auth-clients", "no"]),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        if self.tls.is_some() {
            // Ready once the TLS port accepts connections.
            let port = self.port;
            eventually(
                "redis-server listens",
                Duration::from_secs(10),
                || async move {
                    tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_ok()
                },
            )
            .await;
            return;
        }
        let url = self.url();
        eventually("redis-server answers PING", Duration::from_secs(10), || {
            let url = url.clone();
            async move {
                let Ok(client) = redis::Client::open(url) else {
                    return false;
                };
                let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                    return false;
                };
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            }
        })
        .await;
    }

    /// Kills the server and waits for it to be gone.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// The hash stored for `domain` (empty when absent).
    async fn record(&self, domain: &str) -> std::collections::HashMap<String, String> {
        redis::cmd("HGETALL")
            .arg(format!("strictproxy:hsts:{domain}"))
            .query_async(&mut self.conn().await)
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 10 ms until it holds, failing after `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A proxy of the fleet at `url`, with a local store file in its own folder.
async fn instance(ca: &TestCa, url: &str) -> TestProxy {
    let url = url.to_owned();
    let dir = tempfile::tempdir().unwrap();
    let mut o = overrides(dir.path(), Some(ca));
    o.hsts_store = Some(dir.path().join("hsts.json"));
    o.hsts_redis = Some(url);
    start_proxy_in(dir, o).await
}

fn admin(proxy: &TestProxy) -> SocketAddr {
    proxy.proxy.admin_addr.unwrap()
}

/// `GET /hsts/{host}` on the instance's admin API.
async fn status(proxy: &TestProxy, host: &str) -> serde_json::Value {
    reqwest::get(format!("http://{}/hsts/{host}", admin(proxy)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn enforced(proxy: &TestProxy, host: &str) -> bool {
    status(proxy, host).await["enforced"] == true
}

async fn wait_enforced(proxy: &TestProxy, host: &str, want: bool, within: Duration) {
    eventually(
        &format!("{host} enforced={want} on {}", proxy.addr()),
        within,
        || async move { enforced(proxy, host).await == want },
    )
    .await;
}

/// Teaches `proxy` the header `value` from the HTTPS origin at `host`.
async fn learn(proxy: &TestProxy, host: &str, origin: &Origin, value: &str) {
    let url = format!(
        "https://{host}:{}/sts?v={}",
        origin.port(),
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
    );
    assert_eq!(proxy.get(url).await.status(), 200);
}

/// A plain-HTTP GET through `proxy`; the status.
async fn plain_get(proxy: &TestProxy, host: &str, origin: &Origin, path: &str) -> u16 {
    proxy
        .get(format!("http://{host}:{}{path}", origin.port()))
        .await
        .status()
        .as_u16()
}

async fn metric(proxy: &TestProxy, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", admin(proxy)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn learned_deleted_forgotten_and_manual_entries_reach_every_instance() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    // The ACL user the README documents: limited to the prefix, and enough for everything.
    let mut conn = redis.conn().await;
    let acl: Vec<&str> = "SETUSER strictproxy on >fleet-secret resetkeys ~strictproxy:hsts:* resetchannels -@all +@read +@write +@stream +@scripting +time +ping +hello"
        .split(' ')
        .collect();
    let _: () = redis::cmd("ACL")
        .arg(&acl)
        .query_async(&mut conn)
        .await
        .unwrap();
    let url = format!("redis://strictproxy:fleet-secret@127.0.0.1:{}", redis.port);

    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let plain = Origin::http().await;
    let a = instance(&ca, &url).await;
    let b = instance(&ca, &url).await;
    let fleet = a.proxy.fleet.as_ref().unwrap();
    assert!(!fleet.shown_url().contains("fleet-secret"));
    assert!(fleet.shown_url().contains("***"));
    assert_eq!(metric(&a, "strictproxy_hsts_backend_up").await, 1.0);

    // Learned on A → B answers the plain-HTTP URL with the 307 within 1 s; the origin never
    // sees that request.
    learn(
        &a,
        "secure.test",
        &secure,
        "max-age=3600; includeSubDomains",
    )
    .await;
    let learned_at = Instant::now();
    wait_enforced(&b, "secure.test", true, Duration::from_secs(1)).await;
    eprintln!("learn on A → enforced on B: {:?}", learned_at.elapsed());
    assert_eq!(
        plain_get(&b, "sub.secure.test", &plain, "/via-b").await,
        307
    );
    assert_eq!(plain.count("/via-b"), 0, "the origin must not see it");
    assert_eq!(redis.record("secure.test").await["s"], "learned");
    assert!(metric(&b, "strictproxy_hsts_backend_remote_changes_total").await >= 1.0);
    assert!(metric(&b, "strictproxy_hsts_backend_lag_seconds").await < 1.0);

    // DELETE on B → A forwards again.
    let deleted = reqwest::Client::new()
        .delete(format!("http://{}/hsts/secure.test", admin(&b)))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    wait_enforced(&a, "secure.test", false, Duration::from_secs(1)).await;
    assert_eq!(
        plain_get(&a, "secure.test", &plain, "/after-delete").await,
        200
    );
    assert_eq!(plain.count("/after-delete"), 1);
    assert_eq!(redis.record("secure.test").await["s"], "deleted");

    // max-age=0 learned on B → A forgets.
    learn(&a, "secure.test", &secure, "max-age=3600").await;
    wait_enforced(&b, "secure.test", true, Duration::from_secs(1)).await;
    learn(&b, "secure.test", &secure, "max-age=0").await;
    wait_enforced(&a, "secure.test", false, Duration::from_secs(1)).await;

    // A manual entry outranks a learned one on every instance: the header B then sees
    // changes nothing, anywhere.
    let put = reqwest::Client::new()
        .put(format!("http://{}/hsts/other.test", admin(&a)))
        .json(&serde_json::json!({"include_subdomains": false, "max_age": 86400}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    eventually("manual entry on B", Duration::from_secs(1), || async {
        status(&b, "other.test").await["entry"]["source"] == "manual"
    })
    .await;
    learn(&b, "other.test", &secure, "max-age=60; includeSubDomains").await;
    learn(&b, "other.test", &secure, "max-age=0").await;
    for proxy in [&a, &b] {
        let entry = &status(proxy, "other.test").await["entry"];
        assert_eq!(entry["source"], "manual");
        assert_eq!(entry["include_subdomains"], false);
    }
    assert_eq!(redis.record("other.test").await["s"], "manual");

    // The hsts subcommands act on the shared store directly.
    let output = Command::new(env!("CARGO_BIN_EXE_strictproxy"))
        .args([
            "hsts",
            "add",
            "cli.test",
            "--max-age",
            "600",
            "--hsts-redis",
            &url,
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    wait_enforced(&a, "cli.test", true, Duration::from_secs(1)).await;
    wait_enforced(&b, "cli.test", true, Duration::from_secs(1)).await;
    let output = Command::new(env!("CARGO_BIN_EXE_strictproxy"))
        .args(["hsts", "list", "--hsts-redis", &url])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(
        listed.contains("cli.test") && listed.contains("other.test"),
        "{listed}"
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("fleet-secret"));

    // The ACL really limits the user to the prefix.
    let limited = redis::Client::open(url.as_str()).unwrap();
    let mut limited = limited.get_multiplexed_async_connection().await.unwrap();
    let outside: Result<Option<String>, _> = redis::cmd("GET")
        .arg("elsewhere")
        .query_async(&mut limited)
        .await;
    assert!(outside.is_err(), "NOPERM expected outside the prefix");
}

/// The Lua script's rules, one row per sequence of writes on one key, against a real Redis.
#[tokio::test]
async fn the_script_applies_the_store_rules_atomically() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let mut conn = redis.conn().await;
    let script = strictproxy::hsts::fleet::script::apply_script();
    // (op, includeSubDomains, max_age s, observed this many ms ago)
    type Write = (&'static str, bool, u64, u64);
    // (case, the writes in order, the (kind, includeSubDomains) left in Redis, if any)
    type Row<'a> = (&'a str, &'a [Write], Option<(&'a str, &'a str)>);
    let rows: &[Row] = &[
        // RFC 6797 §8.1.1: a newer observation replaces the entry ...
        (
            "newer learned wins",
            &[("learned", false, 60, 5000), ("learned", true, 60, 0)],
            Some(("learned", "1")),
        ),
        // ... and an older one, arriving late (a queue replayed), never does.
        (
            "older learned loses",
            &[("learned", false, 60, 0), ("learned", true, 60, 5000)],
            Some(("learned", "0")),
        ),
        // The operator's entry outranks a site's header, whenever it was seen.
        (
            "manual replaces learned",
            &[("learned", true, 60, 0), ("manual", false, 60, 5000)],
            Some(("manual", "0")),
        ),
        (
            "learned never replaces manual",
            &[("manual", false, 60, 5000), ("learned", true, 60, 0)],
            Some(("manual", "0")),
        ),
        (
            "older manual loses",
            &[("manual", false, 60, 0), ("manual", true, 60, 5000)],
            Some(("manual", "0")),
        ),
        // §6.1.1 max-age=0 forgets a learned entry only.
        (
            "forget removes learned",
            &[("learned", true, 60, 1000), ("forget", false, 0, 0)],
            Some(("deleted", "0")),
        ),
        (
            "forget spares manual",
            &[("manual", true, 60, 1000), ("forget", false, 0, 0)],
            Some(("manual", "1")),
        ),
        // A deletion leaves a tombstone: an older write cannot resurrect the entry ...
        (
            "tombstone blocks older",
            &[("delete", false, 0, 0), ("learned", true, 60, 5000)],
            Some(("deleted", "0")),
        ),
        // ... a newer observation can.
        (
            "newer after delete",
            &[("delete", false, 0, 5000), ("learned", true, 60, 0)],
            Some(("learned", "1")),
        ),
        (
            "older delete loses",
            &[("learned", true, 60, 0), ("delete", false, 0, 5000)],
            Some(("learned", "1")),
        ),
        // A seed from a local copy fills only an empty key.
        (
            "seed fills a gap",
            &[("seed-manual", true, 60, 0)],
            Some(("manual", "1")),
        ),
        (
            "seed never overwrites",
            &[("learned", false, 60, 5000), ("seed-learned", true, 60, 0)],
            Some(("learned", "0")),
        ),
        (
            "seed never resurrects",
            &[("delete", false, 0, 0), ("seed-learned", true, 60, 0)],
            Some(("deleted", "0")),
        ),
        // A write whose max-age ran out while queued writes nothing.
        ("expired in the queue", &[("learned", true, 1, 2000)], None),
    ];
    for (i, (name, writes, expected)) in rows.iter().enumerate() {
        let domain = format!("row{i}.test");
        let key = format!("strictproxy:hsts:{domain}");
        for &(op, incl, max_age, age_ms) in writes.iter() {
            let _: redis::Value = script
                .key(&key)
                .key("strictproxy:hsts::stream")
                .arg(op)
                .arg(if incl { "1" } else { "0" })
                .arg(max_age)
                .arg(age_ms)
                .arg("test")
                .arg(600_000)
                .arg(1000)
                .arg(&domain)
                .invoke_async(&mut conn)
                .await
                .unwrap();
        }
        let record = redis.record(&domain).await;
        let got = record
            .get("s")
            .map(|s| (s.as_str(), record.get("i").map_or("", String::as_str)));
        assert_eq!(got, *expected, "{name}");
        if expected.is_some() {
            let pttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(pttl > 0, "{name}: every key has a TTL");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_is_not_an_outage_and_a_cold_instance_gets_everything() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let url = redis.url();
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let plain = Origin::http().await;
    let a = instance(&ca, &url).await;
    let b = instance(&ca, &url).await;
    learn(&a, "other.test", &secure, "max-age=3600").await;
    wait_enforced(&b, "other.test", true, Duration::from_secs(1)).await;

    redis.kill();
    for proxy in [&a, &b] {
        eventually("backend_up 0", Duration::from_secs(10), || async {
            metric(proxy, "strictproxy_hsts_backend_up").await == 0.0
        })
        .await;
    }
    // Both keep enforcing, and keep learning, with no failed client request.
    learn(
        &a,
        "secure.test",
        &secure,
        "max-age=3600; includeSubDomains",
    )
    .await;
    for proxy in [&a, &b] {
        assert_eq!(plain_get(proxy, "other.test", &plain, "/down").await, 307);
    }
    assert_eq!(plain_get(&a, "sub.secure.test", &plain, "/down").await, 307);
    assert_eq!(plain.count("/down"), 0);
    assert!(metric(&a, "strictproxy_hsts_backend_queued_writes").await >= 1.0);

    // Redis comes back empty: A replays what it queued, both offer what Redis lost, B
    // converges and nothing is lost.
    redis.restart().await;
    wait_enforced(&b, "sub.secure.test", true, Duration::from_secs(15)).await;
    assert_eq!(plain_get(&b, "sub.secure.test", &plain, "/back").await, 307);
    for proxy in [&a, &b] {
        eventually("backend_up 1", Duration::from_secs(10), || async {
            metric(proxy, "strictproxy_hsts_backend_up").await == 1.0
        })
        .await;
    }
    eventually(
        "both entries back in Redis",
        Duration::from_secs(5),
        || async {
            redis
                .record("other.test")
                .await
                .get("s")
                .map(String::as_str)
                == Some("learned")
                && redis
                    .record("secure.test")
                    .await
                    .get("s")
                    .map(String::as_str)
                    == Some("learned")
        },
    )
    .await;
    assert_eq!(
        metric(&a, "strictproxy_hsts_backend_queued_writes").await,
        0.0
    );

    // A new instance with an empty local file enforces everything A and B learned, from its
    // first request, and says how many entries it loaded.
    let c = instance(&ca, &url).await;
    assert_eq!(
        c.proxy.fleet.as_ref().unwrap().first_sync(),
        strictproxy::hsts::fleet::sync::FirstSync::Loaded(2)
    );
    assert_eq!(
        metric(&c, "strictproxy_hsts_backend_loaded_entries").await,
        2.0
    );
    assert_eq!(plain_get(&c, "other.test", &plain, "/cold").await, 307);
    assert_eq!(
        plain_get(&c, "deep.sub.secure.test", &plain, "/cold").await,
        307
    );
    assert_eq!(plain.count("/cold"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_starts_while_redis_is_down_and_joins_later() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let url = redis.url();
    redis.kill();
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let a = instance(&ca, &url).await;
    assert_eq!(
        a.proxy.fleet.as_ref().unwrap().first_sync(),
        strictproxy::hsts::fleet::sync::FirstSync::Unreachable
    );
    learn(&a, "secure.test", &secure, "max-age=3600").await;
    assert!(enforced(&a, "secure.test").await);
    redis.restart().await;
    eventually(
        "the queued write reaches Redis",
        Duration::from_secs(15),
        || async {
            redis
                .record("secure.test")
                .await
                .get("s")
                .map(String::as_str)
                == Some("learned")
        },
    )
    .await;
    let b = instance(&ca, &url).await;
    assert!(enforced(&b, "secure.test").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rediss_is_verified_with_the_upstream_ca() {
    let ca = TestCa::new();
    let Some(redis) = Redis::start_tls(&ca).await else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let secure = Origin::https(&ca).await;
    // The test CA is an --upstream-ca of these instances: the server verifies.
    let a = instance(&ca, &url).await;
    let b = instance(&ca, &url).await;
    assert_eq!(metric(&a, "strictproxy_hsts_backend_up").await, 1.0);
    learn(&a, "secure.test", &secure, "max-age=3600").await;
    wait_enforced(&b, "secure.test", true, Duration::from_secs(1)).await;
    // Without it, the server's certificate is not trusted: no connection, proxy still up.
    let dir = tempfile::tempdir().unwrap();
    let mut o = overrides(dir.path(), None);
    o.hsts_redis = Some(url.clone());
    let untrusting = start_proxy_in(dir, o).await;
    assert_eq!(
        untrusting.proxy.fleet.as_ref().unwrap().first_sync(),
        strictproxy::hsts::fleet::sync::FirstSync::Unreachable
    );
    assert!(!enforced(&untrusting, "secure.test").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicting_headers_learned_at_once_converge_to_the_newest() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let url = redis.url();
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let a = instance(&ca, &url).await;
    let b = instance(&ca, &url).await;
    for round in 0..5 {
        let (va, vb) = (
            format!("max-age={}; includeSubDomains", 1000 + round),
            format!("max-age={}", 2000 + round),
        );
        tokio::join!(
            learn(&a, "secure.test", &secure, &va),
            learn(&b, "secure.test", &secure, &vb)
        );
    }
    // Whatever won, every copy and Redis end with the same entry.
    eventually("A, B and Redis agree", Duration::from_secs(2), || async {
        let record = redis.record("secure.test").await;
        let (ea, eb) = (
            status(&a, "secure.test").await["entry"].clone(),
            status(&b, "secure.test").await["entry"].clone(),
        );
        let incl = record.get("i").map(|i| i == "1");
        ea["include_subdomains"] == eb["include_subdomains"]
            && ea["source"] == eb["source"]
            && ea["include_subdomains"].as_bool() == incl
            && ea["expires_at"]
                .as_u64()
                .zip(eb["expires_at"].as_u64())
                .is_some_and(|(x, y)| x.abs_diff(y) <= 1)
    })
    .await;
    // The newest observation won: a later header on A decides everywhere.
    learn(&a, "secure.test", &secure, "max-age=500").await;
    eventually(
        "B takes A's newest header",
        Duration::from_secs(1),
        || async {
            let e = status(&b, "secure.test").await["entry"].clone();
            e["include_subdomains"] == false
                && e["expires_at"].as_u64().unwrap_or(0)
                    <= strictproxy::hsts::store::now_unix() + 501
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_entry_is_gone_from_redis_and_every_instance() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let url = redis.url();
    let ca = TestCa::new();
    let secure = Origin::https(&ca).await;
    let a = instance(&ca, &url).await;
    let b = instance(&ca, &url).await;
    learn(&a, "secure.test", &secure, "max-age=2").await;
    wait_enforced(&b, "secure.test", true, Duration::from_secs(1)).await;
    eventually("gone after max-age", Duration::from_secs(6), || async {
        redis.record("secure.test").await.is_empty()
            && !enforced(&a, "secure.test").await
            && !enforced(&b, "secure.test").await
    })
    .await;
}

/// The fleet benchmark (bench/fleet.sh runs it in release mode): learn-on-A →
/// enforce-on-B latency over many hosts, and the local-307 throughput of an instance with
/// Redis off and one with Redis on, measured in alternating rounds of the same run.
/// `FLEET_BENCH_HOSTS` (default 1000), `FLEET_BENCH_SECS` per round (default 3),
/// `FLEET_BENCH_CONNS` client connections (default 32).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: bench/fleet.sh"]
async fn fleet_benchmark() {
    let env = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let hosts = env("FLEET_BENCH_HOSTS", 1000);
    let secs = env("FLEET_BENCH_SECS", 3) as u64;
    let conns = env("FLEET_BENCH_CONNS", 32);
    let Some(redis) = Redis::start().await else {
        return;
    };
    let url = redis.url();
    let names: Vec<String> = (0..hosts).map(|i| format!("h{i}.bench.test")).collect();
    let ca = TestCa::with_names(&["*.bench.test"]);
    let secure = Origin::https(&ca).await;
    let start = |redis_url: Option<String>| {
        let names = names.clone();
        let ca = &ca;
        async move {
            let dir = tempfile::tempdir().unwrap();
            let mut o = overrides(dir.path(), Some(ca));
            o.resolve = names.iter().map(|n| format!("{n}=127.0.0.1")).collect();
            o.traffic_log = None;
            o.hsts_redis = redis_url;
            start_proxy_in(dir, o).await
        }
    };
    let a = start(Some(url.clone())).await;
    let b = start(Some(url.clone())).await;
    let off = start(None).await;

    // Latency: one host at a time, learned through A's interception. The clock starts when
    // A's local copy enforces the host and stops when B's does (neither has a store file, so
    // each store's change signal is ours to wait on).
    let client = a.client();
    let (a_store, b_store) = (a.proxy.shared.hsts.clone(), b.proxy.shared.hsts.clone());
    let wait_for = |store: std::sync::Arc<dyn strictproxy::hsts::store::HstsStore>,
                    name: String| async move {
        let since = Instant::now();
        while !store.is_enforced(&name) {
            let _ =
                tokio::time::timeout(Duration::from_millis(100), store.changed().notified()).await;
            assert!(
                since.elapsed() < Duration::from_secs(5),
                "{name} never learned"
            );
        }
        Instant::now()
    };
    let mut latencies = Vec::with_capacity(hosts);
    for name in &names {
        let request = client
            .get(format!(
                "https://{name}:{}/sts?v=max-age%3D3600",
                secure.port()
            ))
            .send();
        let request = tokio::spawn(request);
        let on_a = wait_for(a_store.clone(), name.clone()).await;
        let on_b = wait_for(b_store.clone(), name.clone()).await;
        latencies.push(on_b.saturating_duration_since(on_a));
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "learn-on-A -> enforce-on-B over {hosts} hosts: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(50).as_secs_f64() * 1e3,
        pct(99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );

    // Throughput: the same entries, manual on the Redis-off instance.
    for name in &names {
        off.proxy.shared.hsts.add_manual(name, false, 3600).unwrap();
    }
    let mut totals = [(0u64, 0f64); 2];
    // ABBA order (off, on, on, off, …), so that a load that drifts during the run (other
    // processes on the machine) weighs on both modes alike.
    for round in 0..8 {
        let which = [0, 1, 1, 0][round % 4];
        let proxy = if which == 0 { &off } else { &b };
        let (count, elapsed) = hammer_307(proxy.addr(), &names, conns, secs).await;
        totals[which].0 += count;
        totals[which].1 += elapsed;
    }
    let rate = |(count, secs): (u64, f64)| count as f64 / secs;
    let (off_rate, on_rate) = (rate(totals[0]), rate(totals[1]));
    println!(
        "local 307 throughput, {conns} keep-alive connections, 4 x {secs} s each, ABBA order: Redis off {off_rate:.0} req/s, Redis on {on_rate:.0} req/s ({:+.1} %)",
        (on_rate / off_rate - 1.0) * 100.0
    );
    println!(
        "remote changes applied on B: {}",
        metric(&b, "strictproxy_hsts_backend_remote_changes_total").await
    );
}

/// Plain-HTTP GETs to enforced hosts over `conns` keep-alive connections for `secs`
/// seconds; every answer must be the 307. Returns (responses, seconds).
async fn hammer_307(proxy: SocketAddr, names: &[String], conns: usize, secs: u64) -> (u64, f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let names = names.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut buf = vec![0u8; 4096];
            let mut count = 0u64;
            let mut i = c;
            while Instant::now() < deadline {
                let name = &names[i % names.len()];
                i += conns;
                let request = format!("GET http://{name}/x HTTP/1.1\r\nHost: {name}\r\n\r\n");
                stream.write_all(request.as_bytes()).await.unwrap();
                // The 307 has no body: the head is the whole response.
                let mut filled = 0;
                loop {
                    let n = stream.read(&mut buf[filled..]).await.unwrap();
                    assert!(n > 0, "connection closed");
                    filled += n;
                    if find(&buf[..filled], b"\r\n\r\n").is_some() {
                        break;
                    }
                }
                assert!(buf.starts_with(b"HTTP/1.1 307"), "not a 307");
                count += 1;
            }
            count
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    (total, started.elapsed().as_secs_f64())
}
