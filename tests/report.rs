//! `strictproxy report` as a QA team runs it: on a known traffic log, the printed counts by
//! action and status, the findings grouped by kind and host, the STS senders with their
//! preload verdict, and a HAR 1.2 file that parses.

mod common;

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

// --- The CI gate, JUnit and HAR (issue 14 items 1 and 2) ---

/// Runs the built binary's `report` with `args` (the log first) and returns (exit code,
/// stdout, stderr).
fn report(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_strictproxy"))
        .arg("report")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

macro_rules! os {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new($a)),*] };
}

/// A test that needs an outside tool skips with a reason here, and fails when CI=true (CI must
/// have every tool: .ci/run installs them).
fn tool_missing(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true and {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn fail_on_exit_codes_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("traffic.jsonl");
    std::fs::write(&log, LOG).unwrap();
    let log = log.to_str().unwrap();

    // (args after the log, exit code, text the output must hold)
    #[rustfmt::skip]
    let rows: &[(&[&str], i32, &str)] = &[
        (&[], 0, "Findings: 2"),
        (&["--fail-on", "method_change_risk"], 1, "FAILED --fail-on method_change_risk: 2 findings (2 method_change_risk)"),
        (&["--fail-on", "https_downgrade,redirect_loop"], 0, "passed --fail-on https_downgrade,redirect_loop: no such finding"),
        (&["--fail-on", "redirect_loop, method_change_risk"], 1, "2 findings (2 method_change_risk)"),
        (&["--fail-on", "all"], 1, "FAILED --fail-on all: 2 findings"),
        (&["--fail-on", "all", "--format", "markdown"], 1, "❌ FAILED --fail-on all"),
        (&["--format", "markdown"], 0, "### Findings: 2"),
        // Usage mistakes: exit 2, with the valid names.
        (&["--fail-on", "nope"], 2, "unknown finding kind \"nope\" in --fail-on: expected \"all\" or a comma-separated list of method_change_risk, cross_origin_body_replay"),
        (&["--fail-on", "method_change_risk,"], 2, "unknown finding kind \"\""),
        (&["--format", "yaml"], 2, "unknown report format \"yaml\": expected \"text\", \"json\" or \"markdown\""),
    ];
    for (args, code, needle) in rows {
        let mut all = vec![std::ffi::OsStr::new(log)];
        all.extend(args.iter().map(std::ffi::OsStr::new));
        let (got, stdout, stderr) = report(&all);
        assert_eq!(got, *code, "{args:?}\n{stdout}\n{stderr}");
        assert!(
            stdout.contains(needle) || stderr.contains(needle),
            "{args:?}: no {needle:?} in\n{stdout}\n{stderr}"
        );
    }

    // JSON: one object on stdout, the gate inside it, the gate's line on stderr.
    let (code, stdout, stderr) = report(os![
        log,
        "--format",
        "json",
        "--fail-on",
        "method_change_risk"
    ]);
    assert_eq!(code, 1, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["records"], 7);
    assert_eq!(v["gate"]["failed"], true);
    assert_eq!(v["gate"]["hits"]["method_change_risk"], 2);
    assert_eq!(v["findings"]["method_change_risk"]["count"], 2);
    assert_eq!(v["sts_hosts"]["secure.test"]["preload_ready"], true);
    assert_eq!(
        v["sts_hosts"]["weak.test"]["failed_rules"],
        serde_json::json!([
            "max-age 600 < 31536000",
            "no includeSubDomains",
            "no preload"
        ])
    );
    assert!(
        stderr.contains("FAILED --fail-on method_change_risk"),
        "{stderr}"
    );
}

/// A log with findings whose sentences hold every character XML must escape, two findings on
/// one host and one on another, and a host without findings.
const JUNIT_LOG: &str = r#"{"ts":"2026-11-21T10:00:00.000Z","client":"127.0.0.1:5000","method":"POST","url":"https://shop.test/login?a=1&b=<2>","status":302,"duration_ms":3,"request_bytes":20,"response_bytes":0,"action":"forwarded","findings":[{"kind":"method_change_risk","detail":"POST answered 302 → use 303 <fix> & \"quote\" 'x' \u0001 ]]>"}]}
{"ts":"2026-11-21T10:00:01.000Z","client":"127.0.0.1:5000","method":"PUT","url":"https://shop.test/item","status":301,"duration_ms":3,"request_bytes":20,"response_bytes":0,"action":"forwarded","findings":[{"kind":"method_change_risk","detail":"PUT answered 301 → use 308"}]}
{"ts":"2026-11-21T10:00:02.000Z","client":"127.0.0.1:5000","method":"GET","url":"https://news.test/","status":302,"duration_ms":3,"request_bytes":0,"response_bytes":0,"action":"forwarded","findings":[{"kind":"https_downgrade","detail":"GET https://news.test/ answered 302 with Location http://cdn.test/"}]}
{"ts":"2026-11-21T10:00:03.000Z","client":"127.0.0.1:5000","method":"GET","url":"https://clean.test/","status":200,"duration_ms":3,"request_bytes":0,"response_bytes":5,"action":"forwarded","findings":[]}
"#;

const CLEAN_LOG: &str = r#"{"ts":"2026-11-21T10:00:03.000Z","client":"127.0.0.1:5000","method":"GET","url":"https://clean.test/","status":200,"duration_ms":3,"request_bytes":0,"response_bytes":5,"action":"forwarded","findings":[]}
"#;

/// Validates `xml` against the JUnit schema fixture with xmllint; false when xmllint is missing.
fn xmllint_validates(xml: &std::path::Path) -> bool {
    let out = match Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(fixture("junit.xsd"))
        .arg(xml)
        .output()
    {
        Ok(out) => out,
        Err(_) => {
            tool_missing("xmllint is not installed (Debian: apt-get install libxml2-utils)");
            return false;
        }
    };
    assert!(
        out.status.success(),
        "xmllint refused {}:\n{}\n{}",
        xml.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(xml).unwrap_or_default()
    );
    true
}

#[test]
fn junit_report_validates_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("traffic.jsonl");
    std::fs::write(&log, JUNIT_LOG).unwrap();
    let xml = dir.path().join("report.xml");
    let (code, stdout, stderr) = report(os![
        log.as_os_str(),
        "--fail-on",
        "method_change_risk",
        "--junit",
        xml.as_os_str()
    ]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let text = std::fs::read_to_string(&xml).unwrap();
    // One suite per kind; the gated kind fails, with one failure element per finding carrying
    // the method, the URL and the fix; the other kind's finding is listed but skipped.
    assert_eq!(text.matches("<testsuite ").count(), 8, "{text}");
    assert!(text.contains("<testsuites name=\"strictproxy\" tests=\"24\" failures=\"1\" errors=\"0\" skipped=\"1\""), "{text}");
    assert_eq!(text.matches("<failure ").count(), 2, "{text}");
    assert!(
        text.contains("message=\"POST https://shop.test/login?a=1&amp;b=&lt;2&gt;\""),
        "{text}"
    );
    assert!(
        text.contains("use 303 &lt;fix&gt; &amp; &quot;quote&quot; &apos;x&apos; \u{FFFD} ]]&gt;"),
        "{text}"
    );
    assert!(
        text.contains(
            "PUT https://shop.test/item at 2026-11-21T10:00:01.000Z&#10;PUT answered 301 → use 308"
        ),
        "{text}"
    );
    assert!(
        text.contains("<skipped message=\"1 https_downgrade finding (not in --fail-on)\"/>"),
        "{text}"
    );
    assert!(text.contains("<testcase classname=\"strictproxy.method_change_risk\" name=\"clean.test\" time=\"0\"/>"), "{text}");
    if !xmllint_validates(&xml) {
        return;
    }

    // A clean run: every suite green, still a valid report.
    std::fs::write(&log, CLEAN_LOG).unwrap();
    let (code, _, stderr) = report(os![
        log.as_os_str(),
        "--fail-on",
        "all",
        "--junit",
        xml.as_os_str()
    ]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&xml).unwrap();
    assert!(
        text.contains("tests=\"8\" failures=\"0\" errors=\"0\" skipped=\"0\""),
        "{text}"
    );
    xmllint_validates(&xml);
}

/// A newer log: headers, version, server address, id; credentials in clear (an operator who
/// turned the log's redaction off) and one already redacted.
const HAR_LOG: &str = r#"{"ts":"2026-11-21T10:00:00.000Z","client":"127.0.0.1:5000","method":"POST","url":"https://shop.test/login?next=%2Fcart&lang=fr","status":307,"duration_ms":3.25,"request_bytes":27,"response_bytes":0,"action":"forwarded","findings":[{"kind":"method_change_risk","detail":"POST https://shop.test/login answered 302 → use 303"}],"rewritten_from":302,"id":7,"http_version":"HTTP/1.1","server_ip":"127.0.0.1","request_headers":[["Host","shop.test"],["Authorization","Bearer s3cr3t-token"],["Cookie","sid=c00kie-secret; theme=dark"],["Proxy-Authorization","Basic cHJveHk6cHJveHktc2VjcmV0"],["Content-Type","application/x-www-form-urlencoded"]],"response_headers":[["Location","/welcome"],["Set-Cookie","sid=n3w-secret; HttpOnly"],["Content-Type","text/html; charset=utf-8"]]}
{"ts":"2026-11-21T10:00:01.000Z","client":"127.0.0.1:5000","method":"GET","url":"https://shop.test/welcome","status":200,"duration_ms":1.5,"request_bytes":0,"response_bytes":12,"action":"forwarded","findings":[],"id":8,"http_version":"HTTP/2","server_ip":"::1","request_headers":[["cookie","[redacted]"]],"response_headers":[["content-type","text/plain"],["strict-transport-security","max-age=31536000"]],"sts":"max-age=31536000"}
{"ts":"2026-11-21T10:00:02.000Z","client":"127.0.0.1:5000","method":"GET","url":"http://news.test/","status":307,"duration_ms":0.1,"request_bytes":0,"response_bytes":0,"action":"hsts_internal_redirect","findings":[]}
{"ts":"2026-11-21T10:00:03.000Z","client":"127.0.0.1:5003","method":"CONNECT","url":"bank.test:443","status":200,"duration_ms":900.0,"request_bytes":500,"response_bytes":4000,"action":"tunnel","findings":[]}
"#;

const SECRETS: [&str; 4] = [
    "s3cr3t-token",
    "c00kie-secret",
    "n3w-secret",
    "cHJveHk6cHJveHktc2VjcmV0",
];

/// Runs tests/fixtures/har_check.py (jsonschema + haralyzer) on a HAR; None when a tool is
/// missing (skipped, or failed under CI=true).
fn har_check(har: &std::path::Path) -> Option<serde_json::Value> {
    let out = match Command::new("python3")
        .arg(fixture("har_check.py"))
        .arg(fixture("har-1.2.schema.json"))
        .arg(har)
        .output()
    {
        Ok(out) => out,
        Err(_) => {
            tool_missing("python3 is not installed");
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        tool_missing(stderr.trim());
        return None;
    }
    assert!(
        out.status.success(),
        "HAR check failed for {}:\n{stderr}",
        har.display()
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn har_opens_in_haralyzer_passes_the_schema_and_hides_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("traffic.jsonl");
    std::fs::write(&log, HAR_LOG).unwrap();
    let har = dir.path().join("run.har");
    let (code, stdout, stderr) = report(os![log.as_os_str(), "--har", har.as_os_str()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let text = std::fs::read_to_string(&har).unwrap();
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} in the HAR:\n{text}");
    }
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let login = &v["log"]["entries"][0];
    assert_eq!(login["_strictproxy"]["action"], "forwarded");
    assert_eq!(login["_strictproxy"]["rewritten_from"], 302);
    assert_eq!(login["_strictproxy"]["id"], 7);
    assert_eq!(
        login["_strictproxy"]["findings"][0]["kind"],
        "method_change_risk"
    );
    assert_eq!(login["request"]["cookies"], serde_json::json!([]));

    if let Some(seen) = har_check(&har) {
        assert_eq!(seen["version"], "1.2");
        assert_eq!(seen["creator"]["name"], "strictproxy");
        let e = &seen["entries"][0];
        assert_eq!(e["url"], "https://shop.test/login?next=%2Fcart&lang=fr");
        assert_eq!(e["method"], "POST");
        assert_eq!(e["status"], 307);
        assert_eq!(e["statusText"], "Temporary Redirect");
        assert_eq!(e["httpVersion"], "HTTP/1.1");
        assert_eq!(e["serverAddress"], "127.0.0.1");
        assert_eq!(e["redirectURL"], "/welcome");
        assert_eq!(e["mimeType"], "text/html; charset=utf-8");
        assert_eq!(e["time"], 3.25);
        assert_eq!(e["startTime"], "2026-11-21T10:00:00+00:00");
        assert_eq!(
            e["queryString"],
            serde_json::json!([{"name": "next", "value": "/cart"}, {"name": "lang", "value": "fr"}])
        );
        assert_eq!(
            e["requestHeaders"],
            serde_json::json!([
                {"name": "Host", "value": "shop.test"},
                {"name": "Authorization", "value": "[redacted]"},
                {"name": "Cookie", "value": "[redacted]"},
                {"name": "Proxy-Authorization", "value": "[redacted]"},
                {"name": "Content-Type", "value": "application/x-www-form-urlencoded"},
            ])
        );
        assert_eq!(
            e["responseHeaders"][1],
            serde_json::json!({"name": "Set-Cookie", "value": "[redacted]"})
        );
        assert_eq!(seen["entries"][1]["httpVersion"], "HTTP/2");
        assert_eq!(seen["entries"][1]["serverAddress"], "::1");
        assert_eq!(seen["entries"][2]["redirectURL"], "https://news.test/");
        assert_eq!(seen["entries"][3]["url"], "https://bank.test:443/");
    } else {
        return;
    }

    // --no-redact keeps what the log holds; a value the log already redacted stays redacted.
    let (code, _, stderr) = report(os![
        log.as_os_str(),
        "--har",
        har.as_os_str(),
        "--no-redact"
    ]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&har).unwrap();
    assert!(text.contains("Bearer s3cr3t-token"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["log"]["entries"][0]["request"]["cookies"],
        serde_json::json!([{"name": "sid", "value": "c00kie-secret"}, {"name": "theme", "value": "dark"}])
    );
    assert_eq!(
        v["log"]["entries"][0]["response"]["cookies"],
        serde_json::json!([{"name": "sid", "value": "n3w-secret"}])
    );
    assert_eq!(
        v["log"]["entries"][1]["request"]["headers"][0]["value"],
        "[redacted]"
    );
    assert_eq!(
        v["log"]["entries"][1]["request"]["cookies"],
        serde_json::json!([])
    );
    har_check(&har);

    // An older log (no headers) still gives a valid HAR.
    std::fs::write(&log, LOG).unwrap();
    let (code, _, stderr) = report(os![log.as_os_str(), "--har", har.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    har_check(&har);

    // The schema is no rubber stamp: a HAR without response headers is refused.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&har).unwrap()).unwrap();
    v["log"]["entries"][0]["response"]
        .as_object_mut()
        .unwrap()
        .remove("headers");
    let broken = dir.path().join("broken.har");
    std::fs::write(&broken, v.to_string()).unwrap();
    let out = Command::new("python3")
        .arg(fixture("har_check.py"))
        .arg(fixture("har-1.2.schema.json"))
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'headers' is a required property"));
}

/// Issue 11 item 6: the HAR and the JUnit report are created 0600 under umask 022, and an
/// existing world-readable one is made private when rewritten.
#[cfg(unix)]
#[test]
fn har_and_junit_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("traffic.jsonl");
    std::fs::write(&log, HAR_LOG).unwrap();
    let har = dir.path().join("run.har");
    let xml = dir.path().join("report.xml");
    std::fs::write(&xml, "old").unwrap();
    std::fs::set_permissions(&xml, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" report \"$1\" --har \"$2\" --junit \"$3\"")
        .arg(env!("CARGO_BIN_EXE_strictproxy"))
        .arg(&log)
        .arg(&har)
        .arg(&xml)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [&har, &xml] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

/// End to end: a real proxy's traffic log (headers included) becomes a HAR that haralyzer opens
/// and the schema accepts, with the client's credentials masked.
#[tokio::test]
async fn a_real_runs_log_becomes_a_har_without_credentials() {
    let origin = common::Origin::http().await;
    let proxy = common::start_proxy(None, |_| {}).await;
    let url = format!(
        "http://origin.test:{}/status/302?location=%2Fnext&q=1",
        origin.port()
    );
    let response = proxy
        .client()
        .post(&url)
        .header("authorization", "Bearer e2e-s3cret")
        .header("cookie", "sid=e2e-c00kie")
        .body("user=alice")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let records = proxy.records().await;
    assert_eq!(records.len(), 1);

    let har = proxy.dir.path().join("run.har");
    let out = Command::new(env!("CARGO_BIN_EXE_strictproxy"))
        .arg("report")
        .arg(&proxy.traffic_log)
        .arg("--har")
        .arg(&har)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&har).unwrap();
    assert!(
        !text.contains("e2e-s3cret") && !text.contains("e2e-c00kie"),
        "{text}"
    );
    let Some(seen) = har_check(&har) else { return };
    let e = &seen["entries"][0];
    assert_eq!(e["method"], "POST");
    assert_eq!(e["status"], 302);
    assert_eq!(e["redirectURL"], "/next");
    assert_eq!(
        e["queryString"][1],
        serde_json::json!({"name": "q", "value": "1"})
    );
    let names: Vec<String> = e["requestHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_ascii_lowercase())
        .collect();
    assert!(names.contains(&"authorization".to_string()), "{names:?}");
    assert!(names.contains(&"cookie".to_string()), "{names:?}");
}
