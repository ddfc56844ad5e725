//! `strictproxy report` as a QA team runs it: on a known traffic log, the printed counts by
//! action and status, the findings grouped by kind and host, the STS senders with their
//! preload verdict, and a HAR 1.2 file that parses.

use std::process::Command;

const LOG: &str = r#"{"ts":"2026-11-21T10:00:00.000Z","client":"127.0.0.1:5000","method":"POST","url":"https://shop.test/login","status":302,"duration_ms":3.2,"request_bytes":20,"response_bytes":0,"action":"forwarded","findings":[{"kind":"method_change_risk","detail":"POST https://shop.test/login answered 302 → use 303 to switch to GET on purpose, or 307 to keep POST"}]}
{"ts":"2026-11-21T10:00:01.000Z","client":"127.0.0.1:5000","method":"POST","url":"https://shop.test/login","status":307,"duration_ms":2.0,"request_bytes":20,"response_bytes":0,"action":"forwarded","findings":[{"kind":"method_change_risk","detail":"POST https://shop.test/login answered 302 → rewritten"}],"rewritten_from":302}
{"ts":"2026-11-21T10:00:02.000Z","client":"127.0.0.1:5001","method":"GET","url":"https://secure.test/","status":200,"duration_ms":1.0,"request_bytes":0,"response_bytes":100,"action":"forwarded","findings":[],"sts":"max-age=31536000; includeSubDomains; preload"}
{"ts":"2026-11-21T10:00:03.000Z","client":"127.0.0.1:5001","method":"GET","url":"https://weak.test/","status":200,"duration_ms":1.0,"request_bytes":0,"response_bytes":100,"action":"forwarded","findings":[],"sts":"max-age=600"}
{"ts":"2026-11-21T10:00:04.000Z","client":"127.0.0.1:5002","method":"GET","url":"http://secure.test/","status":307,"duration_ms":0.1,"request_bytes":0,"response_bytes":0,"action":"hsts_internal_redirect","findings":[]}
{"ts":"2026-11-21T10:00:05.000Z","client":"127.0.0.1:5003","method":"CONNECT","url":"bank.test:443","status":200,"duration_ms":900.0,"request_bytes":500,"response_bytes":4000,"action":"tunnel","findings":[]}
{"ts":"2026-11-21T10:00:06.000Z","client":"127.0.0.1:5004","method":"GET","url":"http://down.test/","status":502,"duration_ms":0.5,"request_bytes":0,"response_bytes":60,"action":"error","findings":[]}
"#;

#[test]
fn report_prints_the_expected_counts_and_writes_har() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("traffic.jsonl");
    std::fs::write(&log, LOG).unwrap();
    let har = dir.path().join("run.har");
    let output = Command::new(env!("CARGO_BIN_EXE_strictproxy"))
        .arg("report")
        .arg(&log)
        .arg("--har")
        .arg(&har)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line_with = |needle: &str| -> String {
        text.lines()
            .find(|l| l.trim_start().starts_with(needle))
            .unwrap_or_else(|| panic!("no line starting with {needle:?} in:\n{text}"))
            .to_string()
    };
    let count = |needle: &str| -> u64 {
        line_with(needle)
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count on the {needle:?} line:\n{text}"))
    };
    assert!(text.contains("7 exchanges"), "{text}");
    assert_eq!(count("forwarded"), 4);
    assert_eq!(count("hsts_internal_redirect"), 1);
    assert_eq!(count("tunnel"), 1);
    assert_eq!(count("error"), 1);
    assert_eq!(count("200"), 3);
    assert_eq!(count("307"), 2);
    assert_eq!(count("302"), 1);
    assert_eq!(count("502"), 1);
    assert!(text.contains("method_change_risk"), "{text}");
    assert!(text.contains("shop.test"), "{text}");
    // The STS senders and whether each meets the preload requirements.
    let secure = line_with("secure.test:");
    assert!(!secure.contains("not"), "{secure}");
    let weak = line_with("weak.test:");
    assert!(weak.contains("not preload-ready"), "{weak}");

    let har: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&har).unwrap()).unwrap();
    assert_eq!(har["log"]["version"], "1.2");
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 7);
    assert_eq!(entries[0]["request"]["method"], "POST");
    assert_eq!(entries[0]["response"]["status"], 302);
    assert!(entries[0]["startedDateTime"]
        .as_str()
        .unwrap()
        .starts_with("2026-11-21T10:00:00"));
}

#[test]
fn report_on_a_missing_file_says_so() {
    let output = Command::new(env!("CARGO_BIN_EXE_strictproxy"))
        .args(["report", "/nonexistent/traffic.jsonl"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/traffic.jsonl"));
}
