//! HSTS files shared with the real curl and wget installed here (issue 14 item 3): what
//! strictproxy exports makes curl and wget switch to https:// by themselves, and what curl and
//! wget learned from a local HTTPS origin imports with the right entries. Everything stays on
//! 127.0.0.1: curl is pointed at the local origin with `--resolve`, wget (which has no such
//! flag) through a small CONNECT forwarder started here. Skipped, saying so, where a tool is
//! missing.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use strictproxy::hsts::interop::{export_store, import, import_into, Format};
use strictproxy::hsts::store::{now_unix, HstsStore, MemoryStore, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NAMES: [&str; 4] = [
    "www.curl.test",
    "www.wget.test",
    "learn.curl.test",
    "learn.wget.test",
];

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        eprintln!("skipped: `{tool}` is not installed");
    }
    found
}

/// Runs a tool off the async runtime, with no proxy or config from the environment.
async fn run(program: &'static str, args: Vec<String>, home: &Path) -> Output {
    let home = home.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(program);
        cmd.args(&args).env("HOME", &home);
        for var in [
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
            "no_proxy",
            "NO_PROXY",
            "CURL_HOME",
            "WGETRC",
        ] {
            cmd.env_remove(var);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A forward proxy for wget that sends every CONNECT to the local TLS origin and answers
/// any plain request itself with 599, counting them: wget has no `--resolve`.
struct Forwarder {
    addr: SocketAddr,
    plain: Arc<AtomicUsize>,
    connects: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Forwarder {
    async fn start(origin: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let plain = Arc::new(AtomicUsize::new(0));
        let connects = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (plain2, connects2) = (plain.clone(), connects.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (plain, connects) = (plain2.clone(), connects2.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    if let Some(rest) = head.strip_prefix("CONNECT ") {
                        let authority = rest.split(' ').next().unwrap_or("").to_owned();
                        connects.lock().unwrap().push(authority);
                        let Ok(mut upstream) = TcpStream::connect(origin).await else {
                            return;
                        };
                        let _ = client
                            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                            .await;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    } else {
                        plain.fetch_add(1, Ordering::SeqCst);
                        let _ = client
                            .write_all(b"HTTP/1.1 599 Plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        Forwarder {
            addr,
            plain,
            connects,
        }
    }

    fn wget_args(&self) -> Vec<String> {
        let proxy = format!("http://{}", self.addr);
        vec![
            "--no-config".into(),
            "-e".into(),
            "use_proxy=on".into(),
            "-e".into(),
            format!("http_proxy={proxy}"),
            "-e".into(),
            format!("https_proxy={proxy}"),
            "--tries=1".into(),
            "--timeout=10".into(),
        ]
    }
}

fn private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// (a) The curl file strictproxy exports makes the real curl switch to https by itself.
#[tokio::test]
async fn curl_reads_the_exported_file_and_upgrades_by_itself() {
    if !have("curl") {
        return;
    }
    let ca = TestCa::with_names(&NAMES);
    let origin = Origin::https_h1(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    store.add_manual("curl.test", true, 3600).unwrap();
    let file = dir.path().join("curl-hsts.txt");
    std::fs::write(&file, export_store(&store, Format::Curl, now_unix())).unwrap();

    let port = origin.port();
    let out = run(
        "curl",
        vec![
            "-sS".into(),
            "-v".into(),
            "--hsts".into(),
            file.display().to_string(),
            "--cacert".into(),
            ca.ca_pem_path.display().to_string(),
            "--resolve".into(),
            format!("www.curl.test:{port}:127.0.0.1"),
            "-w".into(),
            "\n%{url_effective}\n".into(),
            // curl keeps an explicit port when it upgrades; the origin speaks only TLS there.
            format!("http://www.curl.test:{port}/from-curl"),
        ],
        dir.path(),
    )
    .await;
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("Switched from HTTP to HTTPS due to HSTS"),
        "{all}"
    );
    assert!(
        all.contains(&format!("https://www.curl.test:{port}/from-curl")),
        "{all}"
    );
    assert_eq!(origin.count("/from-curl"), 1);

    // Without the file, the same URL goes out in clear (and fails against a TLS port).
    let plain = run(
        "curl",
        vec![
            "-sS".into(),
            "--resolve".into(),
            format!("www.curl.test:{port}:127.0.0.1"),
            format!("http://www.curl.test:{port}/no-hsts"),
        ],
        dir.path(),
    )
    .await;
    assert!(!plain.status.success(), "{}", text(&plain));
}

/// (b) The wget database strictproxy exports makes the real wget switch to https by itself.
#[tokio::test]
async fn wget_reads_the_exported_file_and_upgrades_by_itself() {
    if !have("wget") {
        return;
    }
    let ca = TestCa::with_names(&NAMES);
    let origin = Origin::https_h1(&ca).await;
    let forwarder = Forwarder::start(origin.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    store.add_manual("wget.test", true, 3600).unwrap();
    let file = dir.path().join("wget-hsts");
    std::fs::write(&file, export_store(&store, Format::Wget, now_unix())).unwrap();
    // wget ignores a database others may write to.
    private(&file);

    let mut args = forwarder.wget_args();
    args.extend([
        "-d".into(),
        format!("--hsts-file={}", file.display()),
        format!("--ca-certificate={}", ca.ca_pem_path.display()),
        "-O".into(),
        "-".into(),
        // wget applies a port-0 entry to the default port only.
        "http://www.wget.test/from-wget".into(),
    ]);
    let out = run("wget", args, dir.path()).await;
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("URL transformed to HTTPS due to an HSTS policy"),
        "{all}"
    );
    assert_eq!(forwarder.plain.load(Ordering::SeqCst), 0, "{all}");
    assert_eq!(*forwarder.connects.lock().unwrap(), ["www.wget.test:443"]);
    assert_eq!(origin.count("/from-wget"), 1);
}

/// (c) Files written by real curl and wget runs against a local HTTPS origin sending STS
/// import with the right entries; wget's entry for a non-default port is skipped, counted.
#[tokio::test]
async fn files_written_by_curl_and_wget_import_with_the_right_entries() {
    let ca = TestCa::with_names(&NAMES);
    let origin = Origin::https_h1(&ca).await;
    let port = origin.port();
    let dir = tempfile::tempdir().unwrap();
    let sts = "max-age=7200; includeSubDomains";
    let query: String = url::form_urlencoded::byte_serialize(sts.as_bytes()).collect();

    if have("curl") {
        let file = dir.path().join("curl-hsts.txt");
        let out = run(
            "curl",
            vec![
                "-sS".into(),
                "--hsts".into(),
                file.display().to_string(),
                "--cacert".into(),
                ca.ca_pem_path.display().to_string(),
                "--resolve".into(),
                format!("learn.curl.test:{port}:127.0.0.1"),
                format!("https://learn.curl.test:{port}/sts?v={query}"),
            ],
            dir.path(),
        )
        .await;
        assert!(out.status.success(), "{}", text(&out));
        let written = std::fs::read_to_string(&file).unwrap();
        let imported = import(&written, Format::Curl, now_unix()).unwrap();
        assert_eq!(imported.entries.len(), 1, "{written}");
        let e = &imported.entries[0];
        assert_eq!(
            (e.domain.as_str(), e.include_subdomains),
            ("learn.curl.test", true)
        );
        assert!((7100..=7200).contains(&e.max_age), "{written}");
        let store = MemoryStore::new();
        assert_eq!(import_into(&store, &imported, true), 1);
        assert_eq!(
            store.lookup("x.learn.curl.test").unwrap().source,
            Source::Learned
        );
    }

    if have("wget") {
        let forwarder = Forwarder::start(origin.addr).await;
        let file = dir.path().join("wget-hsts");
        // Once on the default port, once on an explicit one (which wget keys by port).
        for url in [
            format!("https://learn.wget.test/sts?v={query}"),
            format!("https://www.wget.test:{port}/sts?v={query}"),
        ] {
            let mut args = forwarder.wget_args();
            args.extend([
                format!("--hsts-file={}", file.display()),
                format!("--ca-certificate={}", ca.ca_pem_path.display()),
                "-O".into(),
                "-".into(),
                url,
            ]);
            let out = run("wget", args, dir.path()).await;
            assert!(out.status.success(), "{}", text(&out));
        }
        let written = std::fs::read_to_string(&file).unwrap();
        let imported = import(&written, Format::Wget, now_unix()).unwrap();
        assert_eq!(imported.skipped_ports, 1, "{written}");
        assert_eq!(imported.entries.len(), 1, "{written}");
        let e = &imported.entries[0];
        assert_eq!(
            (e.domain.as_str(), e.include_subdomains),
            ("learn.wget.test", true)
        );
        assert!((7100..=7200).contains(&e.max_age), "{written}");
        let store = MemoryStore::new();
        assert_eq!(import_into(&store, &imported, false), 1);
        assert_eq!(
            store.lookup("learn.wget.test").unwrap().source,
            Source::Manual
        );
    }
}
