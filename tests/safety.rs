//! Fail-safe destinations over real sockets (issue 11 items 1, 2, 14): the admin API is never
//! reachable through the proxy, DNS answers into local ranges are refused, the operator's own
//! mappings keep working for loopback clients, and a host with an empty label is never sent.
//! DNS goes through the resolver seam (`server::Options::resolver`), never `--resolve` or the
//! hosts file, which are the operator's own mappings.

mod common;

use common::{overrides, raw_exchange, Origin, TestProxy};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use strictproxy::config::{Config, Overrides};
use strictproxy::proxy::resolve::{HostsFile, Resolve};
use strictproxy::server::{start_with, Options};

/// A DNS that answers the names it was given, and nothing else.
struct TestDns(HashMap<&'static str, IpAddr>);

impl Resolve for TestDns {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        let answer = self.0.get(host).map(|ip| vec![SocketAddr::new(*ip, port)]);
        Box::pin(async move {
            answer.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such test name"))
        })
    }
}

fn dns(rows: &[(&'static str, &str)]) -> Arc<dyn Resolve> {
    Arc::new(TestDns(
        rows.iter()
            .map(|(name, ip)| (*name, ip.parse().unwrap()))
            .collect(),
    ))
}

async fn start(
    tweak: impl FnOnce(&mut Overrides),
    resolver: Arc<dyn Resolve>,
    hosts: &str,
) -> TestProxy {
    let dir = tempfile::tempdir().unwrap();
    let mut o = overrides(dir.path(), None);
    tweak(&mut o);
    let traffic_log = dir.path().join("traffic.jsonl");
    let config = Config::load(None, &o).unwrap();
    let options = Options {
        resolver: Some(resolver),
        hosts: Some(HostsFile::parse(hosts)),
    };
    let proxy = start_with(config, options).await.unwrap();
    TestProxy {
        proxy,
        dir,
        traffic_log,
    }
}

async fn get(proxy: SocketAddr, method: &str, url: &str) -> String {
    let host = url.split('/').nth(2).unwrap_or_default();
    raw_exchange(
        proxy,
        format!("{method} {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
    .await
}

async fn connect(proxy: SocketAddr, authority: &str) -> String {
    raw_exchange(
        proxy,
        format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes(),
    )
    .await
}

fn status(text: &str) -> &str {
    text.get(9..12).unwrap_or(text)
}

#[tokio::test]
async fn the_admin_api_is_never_reachable_through_the_proxy() {
    let proxy = start(
        |o| o.resolve.push("admin.test=127.0.0.1".into()),
        dns(&[("admin-dns.example", "127.0.0.1")]),
        "127.0.0.1 admin-hosts.test\n",
    )
    .await;
    let admin = proxy.proxy.admin_addr.unwrap();
    let port = admin.port();
    let direct = reqwest::Client::new();
    let put = direct
        .put(format!("http://{admin}/hsts/bank.example"))
        .json(&serde_json::json!({"max_age": 3600}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());

    // Every name form of the admin listener: IP, localhost, [::1], 0.0.0.0, a --resolve'd name,
    // a hosts-file name, and a name whose DNS answer is the admin's address.
    for host in [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "0.0.0.0",
        "admin.test",
        "admin-hosts.test",
        "admin-dns.example",
    ] {
        for method in ["GET", "DELETE"] {
            let text = get(
                proxy.addr(),
                method,
                &format!("http://{host}:{port}/hsts/bank.example"),
            )
            .await;
            assert_eq!(status(&text), "403", "{method} {host}: {text}");
            assert!(text.contains("admin API"), "{host}: {text}");
        }
        let text = connect(proxy.addr(), &format!("{host}:{port}")).await;
        assert_eq!(status(&text), "403", "CONNECT {host}: {text}");
    }
    // Nothing was deleted.
    let entry: serde_json::Value = direct
        .get(format!("http://{admin}/hsts/bank.example"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entry["enforced"], true, "{entry}");
    // The proxy's own listener stays a loop (508), not a 403.
    let own = get(
        proxy.addr(),
        "GET",
        &format!("http://127.0.0.1:{}/", proxy.addr().port()),
    )
    .await;
    assert_eq!(status(&own), "508", "{own}");
    // Every refusal is logged as an error with its URL.
    let records = proxy.records().await;
    assert!(records
        .iter()
        .filter(|r| r["status"] == 403)
        .all(|r| r["action"] == "error" && !r["url"].as_str().unwrap().is_empty()));
}

#[tokio::test]
async fn dns_answers_into_local_ranges_are_refused_for_every_client() {
    let origin = Origin::http().await;
    let port = origin.port();
    let proxy = start(
        |_| {},
        dns(&[
            ("bank.example", "127.0.0.1"),
            ("loop6.example", "::1"),
            ("zero.example", "0.0.0.0"),
            ("metadata.example", "169.254.169.254"),
            ("link6.example", "fe80::1"),
        ]),
        "127.0.0.1 lab-device.test\n",
    )
    .await;
    for (name, rule) in [
        ("bank.example", "loopback"),
        ("loop6.example", "loopback"),
        ("zero.example", "unspecified"),
        ("metadata.example", "link-local"),
        ("link6.example", "link-local"),
    ] {
        let text = get(proxy.addr(), "GET", &format!("http://{name}:{port}/")).await;
        assert_eq!(status(&text), "403", "{name}: {text}");
        assert!(
            text.contains("DNS rebinding") && text.contains(rule),
            "{name}: {text}"
        );
        let text = connect(proxy.addr(), &format!("{name}:{port}")).await;
        assert_eq!(status(&text), "403", "CONNECT {name}: {text}");
    }
    assert_eq!(origin.seen().len(), 0, "nothing reached the origin");

    // The operator's own mappings stay open to a loopback client: an IP literal, localhost,
    // a --resolve name (origin.test, from the test overrides) and a hosts-file name.
    for host in ["127.0.0.1", "localhost", "origin.test", "lab-device.test"] {
        let text = get(proxy.addr(), "GET", &format!("http://{host}:{port}/ok")).await;
        assert_eq!(status(&text), "200", "{host}: {text}");
    }
}

#[tokio::test]
async fn allow_private_destinations_opens_a_range_to_dns_names() {
    let origin = Origin::http().await;
    let proxy = start(
        |o| o.allow_private_destinations = vec!["127.0.0.0/8".into()],
        dns(&[("dev.example", "127.0.0.1")]),
        "",
    )
    .await;
    let text = get(
        proxy.addr(),
        "GET",
        &format!("http://dev.example:{}/ok", origin.port()),
    )
    .await;
    assert_eq!(status(&text), "200", "{text}");
}

#[tokio::test]
async fn a_host_with_an_empty_label_is_never_forwarded() {
    let origin = Origin::http().await;
    let port = origin.port();
    let proxy = start(
        |o| o.resolve.push("known.test=127.0.0.1".into()),
        dns(&[]),
        "",
    )
    .await;
    let admin = proxy.proxy.admin_addr.unwrap();
    let put = reqwest::Client::new()
        .put(format!("http://{admin}/hsts/known.test"))
        .json(&serde_json::json!({"max_age": 3600}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    // Issue 11 item 14: two trailing dots once matched no HSTS entry and still reached
    // known.test in clear. One spelling per host: an empty label is a 400 that says so.
    let text = get(proxy.addr(), "GET", &format!("http://known.test..:{port}/")).await;
    assert_eq!(status(&text), "400", "{text}");
    assert!(text.contains("empty label"), "{text}");
    for spelling in ["known.test.", "KNOWN.test", "Known.Test."] {
        let text = get(proxy.addr(), "GET", &format!("http://{spelling}:{port}/")).await;
        assert_eq!(status(&text), "307", "{spelling}: {text}");
    }
    assert_eq!(origin.seen().len(), 0, "nothing went out in clear");
}

#[tokio::test]
async fn an_operator_exemption_is_the_only_way_out_of_hsts() {
    let origin = Origin::http().await;
    let port = origin.port();
    let proxy = start(
        |o| {
            o.resolve.push("printer.test=127.0.0.1".into());
            o.resolve.push("known.test=127.0.0.1".into());
            o.hsts_exempt = vec!["printer.test".into()];
        },
        dns(&[]),
        "",
    )
    .await;
    let admin = proxy.proxy.admin_addr.unwrap();
    for host in ["printer.test", "known.test"] {
        let put = reqwest::Client::new()
            .put(format!("http://{admin}/hsts/{host}"))
            .json(&serde_json::json!({"max_age": 3600}))
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
    }
    // Known and exempted: forwarded in clear, and the log says why.
    let text = get(
        proxy.addr(),
        "GET",
        &format!("http://printer.test:{port}/ok"),
    )
    .await;
    assert_eq!(status(&text), "200", "{text}");
    // Known and not exempted: still upgraded.
    let text = get(proxy.addr(), "GET", &format!("http://known.test:{port}/ok")).await;
    assert_eq!(status(&text), "307", "{text}");
    assert_eq!(origin.count("/ok"), 1);
    let records = proxy.records().await;
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["hsts_exempt", "hsts_internal_redirect"],
        "{records:?}"
    );
    // The admin API says why the exempted host is not enforced although an entry covers it.
    let status_of = |host: &'static str| async move {
        reqwest::get(format!("http://{admin}/hsts/{host}"))
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let exempted = status_of("printer.test").await;
    assert_eq!(exempted["enforced"], false, "{exempted}");
    assert_eq!(exempted["exempt"], "printer.test", "{exempted}");
    assert!(exempted["entry"].is_object(), "{exempted}");
    assert!(
        exempted["reason"]
            .as_str()
            .unwrap()
            .contains("--hsts-exempt"),
        "{exempted}"
    );
    let known = status_of("known.test").await;
    assert_eq!(known["enforced"], true, "{known}");
    assert!(known.get("exempt").is_none(), "{known}");
}

/// A network namespace with a veth pair to this one, its own addresses only (198.18.0.0/15,
/// the benchmarking range, never routed), removed on drop. Nothing leaves the machine.
struct Netns {
    name: String,
    host_ip: String,
    peer_ip: String,
}

impl Netns {
    fn create() -> Result<Netns, String> {
        let id = std::process::id();
        let name = format!("sp{id}");
        let (a, b) = (id % 250, (id / 250 % 60) * 4);
        let host_ip = format!("198.18.{a}.{}", b + 1);
        let peer_ip = format!("198.18.{a}.{}", b + 2);
        let run = |args: &[&str]| -> Result<(), String> {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("cannot run ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        run(&["netns", "add", &name])?;
        let ns = Netns {
            name: name.clone(),
            host_ip: host_ip.clone(),
            peer_ip: peer_ip.clone(),
        };
        let host_dev = format!("{name}h");
        let peer_dev = format!("{name}p");
        run(&[
            "link", "add", &host_dev, "type", "veth", "peer", "name", &peer_dev, "netns", &name,
        ])?;
        run(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_dev])?;
        run(&["link", "set", &host_dev, "up"])?;
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", name.as_str(), "ip"];
            all.extend_from_slice(args);
            run(&all)
        };
        in_ns(&["addr", "add", &format!("{peer_ip}/30"), "dev", &peer_dev])?;
        in_ns(&["link", "set", &peer_dev, "up"])?;
        in_ns(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `curl` inside the namespace through `proxy`: the status code it got.
    async fn curl(&self, proxy: SocketAddr, url: &str) -> String {
        let out = tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.name, "curl", "-s", "-o", "/dev/null"])
            .args(["-w", "%{http_code}", "--max-time", "10", "-x"])
            .arg(format!("http://{proxy}"))
            .arg(url)
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_the_network_reaches_no_local_range() {
    let netns = match Netns::create() {
        Ok(netns) => netns,
        Err(reason) => {
            // Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2; the pure table test in
            // proxy::destination covers the rule either way.
            let message = format!("skipped: cannot make a network namespace: {reason}");
            if std::env::var_os("STRICTPROXY_REQUIRE_NETNS").is_some() {
                panic!("{message}");
            }
            eprintln!("{message}");
            return;
        }
    };
    let origin = Origin::http().await;
    let port = origin.port();
    let listen = netns.host_ip.clone();
    let proxy = start(
        |o| {
            o.listen = Some(format!("{listen}:0"));
            o.allow_open = Some(true);
        },
        dns(&[("bank.example", "127.0.0.1")]),
        "127.0.0.1 lab-device.test\n",
    )
    .await;
    let admin = proxy.proxy.admin_addr.unwrap().port();
    // From 198.18.x.2, by every kind of name: refused, nothing reaches the origin.
    for url in [
        format!("http://127.0.0.1:{port}/ok"),
        format!("http://localhost:{port}/ok"),
        format!("http://origin.test:{port}/ok"),
        format!("http://lab-device.test:{port}/ok"),
        format!("http://bank.example:{port}/ok"),
        format!("http://169.254.169.254:{port}/ok"),
        format!("http://127.0.0.1:{admin}/hsts"),
    ] {
        assert_eq!(
            netns.curl(proxy.addr(), &url).await,
            "403",
            "{url} from {}",
            netns.peer_ip
        );
    }
    assert_eq!(origin.count("/ok"), 0);
    // allow_private_destinations opens a range to clients on the network.
    let allowing = start(
        |o| {
            o.listen = Some(format!("{}:0", netns.host_ip));
            o.allow_open = Some(true);
            o.allow_private_destinations = vec!["127.0.0.0/8".into()];
        },
        dns(&[]),
        "",
    )
    .await;
    let url = format!("http://origin.test:{port}/ok");
    assert_eq!(netns.curl(allowing.addr(), &url).await, "200", "{url}");
}
