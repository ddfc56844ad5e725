//! `strictproxy lab`, driven as a user would: start the binary, read the commands it prints,
//! run them verbatim with curl through the printed proxy, check that each lesson shows what
//! it promises (HSTS learned over HTTPS only; the 307 Internal Redirect without the origin
//! being reached; 302 turns a POST into a GET, 307 keeps it; the cross-origin 307 replays the
//! password and is reported; the rewrite proxy turns the 302 into a 307), then Ctrl-C (SIGINT)
//! and check that it exits 0 promptly. Everything stays on 127.0.0.1: the lab's names are
//! resolved by the lab proxy itself, and curl only ever talks to the proxy.

mod common;

use common::finding_kinds;
use common::lab_process::LabProcess;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs one printed command verbatim in `sh`, with no proxy from the environment (the
/// command names its own), and returns its stdout. Fails the test if it does not succeed.
fn run(command: &str) -> String {
    let output = Command::new("timeout")
        .args(["60", "sh", "-c", command])
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    assert!(
        output.status.success(),
        "`{command}` failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn curl_available() -> bool {
    Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Reads a traffic log until `ready` holds for its records (each line reaches the file within
/// a second of its exchange's end).
fn records_until(path: &Path, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let records: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("every traffic log line is JSON"))
            .collect();
        if ready(&records) || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn find<'a>(records: &'a [Value], method: &str, url: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["method"] == method && r["url"] == url)
        .collect()
}

#[test]
fn every_lesson_shows_what_it_promises_and_ctrl_c_stops_cleanly() {
    assert!(
        curl_available(),
        "this test runs the lab's printed curl commands: install curl (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let mut lab = LabProcess::start("127.0.0.1:0", &ca_dir);

    // The header: real ports (not :0), and the files where the lab says they are.
    let proxy = lab.field("lab proxy");
    let rewrite_proxy = lab.field("rewrite proxy");
    assert!(proxy.starts_with("http://127.0.0.1:") && !proxy.ends_with(":0"));
    assert!(rewrite_proxy.starts_with("http://127.0.0.1:") && rewrite_proxy != proxy);
    let proxy_ca = PathBuf::from(lab.field("proxy CA"));
    assert_eq!(proxy_ca, ca_dir.join("ca.pem"));
    assert!(proxy_ca.is_file());
    assert!(PathBuf::from(lab.field("lab origin CA")).is_file());
    let traffic_log = PathBuf::from(lab.field("traffic log"));
    let rewrite_log = PathBuf::from(lab.field("rewrite log"));
    let origins = lab
        .lines()
        .into_iter()
        .find(|l| l.contains("demo origins"))
        .unwrap();
    let port_of = |host: &str| -> u16 {
        let at = origins.find(&format!("{host}:")).unwrap() + host.len() + 1;
        origins[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let hsts = port_of("hsts.lab.test");
    let shop = port_of("shop.lab.test");
    let evil = port_of("evil.lab.test");

    // The commands, in the lesson order, each through a printed proxy.
    let commands = lab.commands();
    let expected = [
        format!("-i http://hsts.lab.test:{hsts}/"),
        format!("-i https://hsts.lab.test:{hsts}/"),
        "/hsts/hsts.lab.test".to_string(),
        format!("-i http://hsts.lab.test:{hsts}/"),
        format!("-L http://hsts.lab.test:{hsts}/"),
        "http://plain.lab.test:".to_string(),
        format!("https://shop.lab.test:{shop}/login-302"),
        format!("https://shop.lab.test:{shop}/login-307"),
        format!("https://shop.lab.test:{shop}/login-307-away"),
        format!("https://shop.lab.test:{shop}/login-303-away"),
        format!("https://shop.lab.test:{shop}/login-302"),
        "grep".to_string(),
        " report ".to_string(),
    ];
    assert_eq!(commands.len(), expected.len(), "{commands:#?}");
    for (command, part) in commands.iter().zip(&expected) {
        assert!(command.contains(part.as_str()), "`{command}` lacks {part}");
    }
    for command in &commands[..11] {
        if command.contains("/hsts/") {
            continue;
        }
        let through = if command.contains(&rewrite_proxy) {
            &rewrite_proxy
        } else {
            &proxy
        };
        assert!(
            command.starts_with(&format!("curl -x {through} ")),
            "{command}"
        );
    }
    assert!(commands[10].contains(&rewrite_proxy));

    // Lesson 1: STS over plain HTTP is ignored; over verified HTTPS it is learned.
    let out = run(&commands[0]);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{out}"
    );
    assert!(out.contains("over plain HTTP"), "{out}");
    let out = run(&commands[1]);
    assert!(out.contains("over HTTPS"), "{out}");
    let out = run(&commands[2]);
    let entry: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(entry["enforced"], true, "{out}");
    assert_eq!(entry["entry"]["domain"], "hsts.lab.test", "{out}");

    // Lesson 2: the plain-HTTP URL is answered by the proxy itself.
    let out = run(&commands[3]);
    let head = out.to_ascii_lowercase();
    assert!(out.starts_with("HTTP/1.1 307 Internal Redirect"), "{out}");
    assert!(head.contains("non-authoritative-reason: hsts"), "{out}");
    assert!(
        head.contains(&format!("location: https://hsts.lab.test:{hsts}/")),
        "{out}"
    );
    let out = run(&commands[4]);
    assert!(out.contains("over HTTPS"), "{out}");
    let out = run(&commands[5]);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("plain.lab.test over plain HTTP"), "{out}");
    // Origin lines are printed in order: once plain.lab.test's is there, every earlier one is
    // too. hsts.lab.test was reached in clear exactly once, by lesson 1, never after learning.
    lab.wait_for_line(
        "origin  plain.lab.test (http) received GET /",
        Duration::from_secs(5),
    );
    let clear_hits = lab
        .origin_lines()
        .iter()
        .filter(|l| l.starts_with("origin  hsts.lab.test (http)"))
        .count();
    assert_eq!(clear_hits, 1, "{:#?}", lab.origin_lines());

    // Lesson 3: 302 turns the login POST into a GET without the form; 307 keeps both.
    let out = run(&commands[6]);
    assert_eq!(out.trim(), "shop.lab.test /welcome received: GET, no body");
    let out = run(&commands[7]);
    assert_eq!(
        out.trim(),
        "shop.lab.test /welcome received: POST, 27 body bytes: user=alice&password=hunter2"
    );

    // Lesson 4: the cross-origin 307 hands the password to evil.lab.test; 303 does not.
    let out = run(&commands[8]);
    assert_eq!(
        out.trim(),
        "evil.lab.test /collect received: POST, 27 body bytes: user=alice&password=hunter2"
    );
    let out = run(&commands[9]);
    assert_eq!(out.trim(), "evil.lab.test /collect received: GET, no body");

    // Lesson 5: the rewrite proxy sends 307 where the shop sent 302, so the POST survives.
    let out = run(&commands[10]);
    assert!(out.contains(" 307"), "{out}");
    assert!(!out.contains(" 302"), "{out}");
    assert!(
        out.contains("shop.lab.test /welcome received: POST, 27 body bytes"),
        "{out}"
    );

    // What the traffic logs recorded for those lessons.
    let url = |path: &str| format!("https://shop.lab.test:{shop}{path}");
    let plain_hsts = format!("http://hsts.lab.test:{hsts}/");
    let records = records_until(&traffic_log, |r| {
        r.iter().any(|x| {
            x["url"] == format!("https://evil.lab.test:{evil}/collect") && x["method"] == "GET"
        })
    });
    let clear = find(&records, "GET", &plain_hsts);
    assert_eq!(clear.len(), 3, "{records:#?}");
    assert_eq!(clear[0]["action"], "forwarded");
    assert_eq!(finding_kinds(clear[0]), ["sts_over_http"]);
    for redirect in &clear[1..] {
        assert_eq!(redirect["action"], "hsts_internal_redirect");
        assert_eq!(redirect["status"], 307);
    }
    let login_302 = find(&records, "POST", &url("/login-302"));
    assert_eq!(login_302[0]["status"], 302);
    assert_eq!(finding_kinds(login_302[0]), ["method_change_risk"]);
    let away_307 = find(&records, "POST", &url("/login-307-away"));
    assert_eq!(finding_kinds(away_307[0]), ["cross_origin_body_replay"]);
    let away_303 = find(&records, "POST", &url("/login-303-away"));
    assert!(finding_kinds(away_303[0]).is_empty(), "{:#?}", away_303[0]);
    let evil_post = find(
        &records,
        "POST",
        &format!("https://evil.lab.test:{evil}/collect"),
    );
    assert_eq!(evil_post[0]["request_bytes"], 27);

    // Wait for the record this lesson is about, not for any record: under load the rewrite
    // proxy's log may hold an earlier exchange before this one reaches the file.
    let rewritten = records_until(&rewrite_log, |r| {
        !find(r, "POST", &url("/login-302")).is_empty()
    });
    let rewritten = find(&rewritten, "POST", &url("/login-302"));
    assert_eq!(rewritten[0]["status"], 307);
    assert_eq!(rewritten[0]["rewritten_from"], 302);

    // Lesson 6: the console's finding lines, the grep and the report.
    let console = lab.stderr();
    for kind in [
        "sts_over_http",
        "method_change_risk",
        "cross_origin_body_replay",
    ] {
        assert!(console.contains(kind), "no {kind} line on the console");
    }
    let out = run(&commands[11]);
    assert_eq!(out.lines().count(), 4, "{out}");
    let out = run(&commands[12]);
    assert!(out.contains("hsts_internal_redirect"), "{out}");
    assert!(out.contains("cross_origin_body_replay"), "{out}");
    assert!(out.contains("method_change_risk"), "{out}");

    // Ctrl-C: a clean, prompt exit with status 0.
    let started = Instant::now();
    let status = lab.stop("INT", Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(15));
    lab.wait_for_line("lab stopped", Duration::from_secs(5));
}

#[test]
fn a_taken_port_falls_back_to_a_free_one_and_says_so() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut lab = LabProcess::start(&addr, &dir.path().join("ca"));
    let note = lab.wait_for_line("is already in use", Duration::from_secs(1));
    assert!(note.contains(&addr), "{note}");
    let proxy = lab.field("lab proxy");
    assert!(proxy.starts_with("http://127.0.0.1:"));
    assert_ne!(proxy, format!("http://{addr}"));
    // The commands name the port the lab really took.
    assert!(lab.commands()[0].starts_with(&format!("curl -x {proxy} ")));
    let status = lab.stop("TERM", Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
}

#[test]
fn a_non_loopback_listener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_strictproxy"))
        .args(["--listen", "0.0.0.0:0", "--allow-open", "lab", "--ca-dir"])
        .arg(dir.path().join("ca"))
        .env("TMPDIR", dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("loopback only"), "{err}");
}
