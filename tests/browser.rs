//! A real browser behind strictproxy (issue 7, point 4): headless Chromium, with the proxy's CA
//! trusted through an NSS database in a temporary HOME (never `--ignore-certificate-errors`),
//! loads the lab's HTTPS origin — the proxy learns HSTS — then, with a fresh profile so that
//! Chromium's own HSTS memory cannot be what upgrades the URL, loads its `http://` URL. The
//! traffic log must show the proxy's `307 Internal Redirect` for that load, the page must say it
//! ended on https, and no host but the lab's may appear in the log. A screenshot of the second
//! load is saved as target/browser-hsts.png for a person to look at.
//!
//! Nothing leaves loopback: Chromium's own background requests (time, update, accounts and
//! connectivity checks on Google's hosts) bypass the proxy by `--proxy-bypass-list` and then
//! find no DNS (`--host-resolver-rules`), and the lab's names are resolved by the proxy alone.
//! Skipped, saying so, when /usr/bin/chromium or certutil (libnss3-tools) is missing; `.ci/run`
//! installs both.

mod common;

use common::lab_process::LabProcess;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The lab's names: the only hosts the traffic log may show.
const LAB_HOSTS: [&str; 4] = [
    "hsts.lab.test",
    "plain.lab.test",
    "shop.lab.test",
    "evil.lab.test",
];

/// Google's domains, where Chromium sends its own background requests: sent around the proxy,
/// where the resolver rules then refuse them any address.
const GOOGLE_BYPASS: &str = "*google.com;*googleapis.com;*gstatic.com;*gvt1.com;*gvt2.com;\
                             *googleusercontent.com;*.google;*googlezip.net;*youtube.com;\
                             *doubleclick.net;*chromium.org";

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Runs a program to completion (at most 60 s, through coreutils' `timeout`), failing the
/// test with its output if it fails.
fn run(program: &str, args: &[&str], home: &Path) -> std::process::Output {
    let output = Command::new("timeout")
        .arg("60")
        .arg(program)
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// One Chromium run through the proxy, with a profile of its own.
fn chromium(home: &Path, profile: &str, proxy: &str, action: &[&str], url: &str) -> String {
    let user_data = home.join(profile);
    assert!(!user_data.exists(), "every load gets a fresh profile");
    let mut args = vec![
        "--headless".to_string(),
        "--no-sandbox".to_string(),
        "--disable-gpu".to_string(),
        "--disable-quic".to_string(),
        "--no-first-run".to_string(),
        "--disable-background-networking".to_string(),
        "--disable-component-update".to_string(),
        "--disable-sync".to_string(),
        format!("--user-data-dir={}", user_data.display()),
        format!("--proxy-server={proxy}"),
        format!("--proxy-bypass-list={GOOGLE_BYPASS}"),
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1".to_string(),
    ];
    args.extend(action.iter().map(|a| a.to_string()));
    args.push(url.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(CHROMIUM, &args, home);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the lab's page wrote into `#where` with `location.href`: the URL the browser ended on.
fn final_url(dom: &str) -> Option<String> {
    let start = dom.find("<code id=\"where\">")? + "<code id=\"where\">".len();
    let end = dom[start..].find("</code>")? + start;
    Some(dom[start..end].to_string())
}

/// The host of a logged URL: an absolute URL, or `host:port` for a CONNECT.
fn host_of(url: &str) -> String {
    let parsed = if url.contains("://") {
        url::Url::parse(url)
    } else {
        url::Url::parse(&format!("https://{url}/"))
    };
    parsed
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| url.to_string())
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("every traffic log line is JSON"))
        .collect()
}

/// The folder cargo builds into (`target/`, or CARGO_TARGET_DIR): the test binary lives in
/// `<target>/<profile>/deps/`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

#[test]
fn chromium_is_upgraded_by_the_proxys_307_after_learning_hsts() {
    if !Path::new(CHROMIUM).is_file() || !on_path("certutil") {
        // .ci/run installs both: in CI a skip would be a silent false green.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but {CHROMIUM} or certutil is missing: .ci/run should have installed chromium and libnss3-tools"
        );
        println!(
            "skipped: chromium not installed (needs {CHROMIUM} and certutil: apt-get install chromium libnss3-tools)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ca");
    let lab = LabProcess::start("127.0.0.1:0", &ca_dir);
    let proxy = lab.field("lab proxy");
    let proxy_ca = lab.field("proxy CA");
    let traffic_log = PathBuf::from(lab.field("traffic log"));
    let port = lab.origin_port("hsts.lab.test");
    let https_url = format!("https://hsts.lab.test:{port}/");
    let http_url = format!("http://hsts.lab.test:{port}/");

    // The proxy CA, trusted the way Chromium on Linux reads it: an NSS database in $HOME.
    let home = tmp.path().join("home");
    let nssdb = home.join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    run("certutil", &["-N", "--empty-password", "-d", &db], &home);
    run(
        "certutil",
        &[
            "-A",
            "-t",
            "C,,",
            "-n",
            "strictproxy",
            "-i",
            &proxy_ca,
            "-d",
            &db,
        ],
        &home,
    );

    // Load 1: the HTTPS page. The certificate chain is the proxy's (trusted through NSS);
    // the proxy verified the origin's and learned its Strict-Transport-Security.
    let dom = chromium(&home, "profile-1", &proxy, &["--dump-dom"], &https_url);
    assert!(dom.contains("over HTTPS"), "{dom}");
    assert_eq!(
        final_url(&dom).as_deref(),
        Some(https_url.as_str()),
        "{dom}"
    );

    // Load 2: the http:// URL, in a profile that has never seen the site. Only the proxy
    // knows the host is HTTPS-only.
    let dom = chromium(&home, "profile-2", &proxy, &["--dump-dom"], &http_url);
    assert_eq!(
        final_url(&dom).as_deref(),
        Some(https_url.as_str()),
        "the browser did not end on https:\n{dom}"
    );

    // Load 3: the same, as a picture for a person to look at.
    let shot = target_dir().join("browser-hsts.png");
    let _ = std::fs::remove_file(&shot);
    let screenshot = format!("--screenshot={}", shot.display());
    chromium(
        &home,
        "profile-3",
        &proxy,
        &[&screenshot, "--window-size=1100,600"],
        &http_url,
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    println!("screenshot: {}", shot.display());

    // The traffic log: each http:// load was answered by the proxy's 307 (the origin never
    // saw it), each was followed by an https load, and no other host went through the proxy.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = records(&traffic_log);
        let redirects = log.iter().filter(|r| r["url"] == http_url.as_str()).count();
        if redirects >= 2 || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let plain: Vec<&Value> = log
        .iter()
        .filter(|r| r["url"] == http_url.as_str())
        .collect();
    assert_eq!(plain.len(), 2, "{log:#?}");
    for record in &plain {
        assert_eq!(record["action"], "hsts_internal_redirect", "{record}");
        assert_eq!(record["status"], 307, "{record}");
    }
    let secure_pages = log
        .iter()
        .filter(|r| r["url"] == https_url.as_str() && r["status"] == 200)
        .count();
    assert!(secure_pages >= 3, "{log:#?}");
    for record in &log {
        let url = record["url"].as_str().unwrap();
        let host = host_of(url);
        assert!(
            LAB_HOSTS.contains(&host.as_str()),
            "the proxy saw a host that is not the test's own: {url}"
        );
    }
    // And the origin itself was never reached in clear.
    assert!(
        !lab.lines()
            .iter()
            .any(|l| l.starts_with("origin  hsts.lab.test (http)")),
        "{:#?}",
        lab.lines()
    );
}
