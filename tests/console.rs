//! The web console in a real browser (issue 13): headless Chromium, driven through the DevTools
//! protocol over a WebSocket (tokio-tungstenite and serde_json, no driver binary), loads the
//! console from the admin listener while a real client (reqwest) sends traffic through the
//! proxy. Everything is asserted from the page's DOM: rows appear live with their status,
//! action and findings; a row's detail shows the headers with `Authorization` masked; an HSTS
//! entry added through the form makes the next plain-HTTP request get the proxy's 307, and
//! deleting it through the page undoes that. Screenshots go to target/console-*.png for a
//! person to look at.
//!
//! Chromium only ever loads 127.0.0.1: every other name resolves nowhere
//! (`--host-resolver-rules`), and background networking is off. Skipped, saying so, when
//! /usr/bin/chromium is missing — except under `CI=true`, where a skip would be a false green.

mod common;

use base64::Engine as _;
use common::{start_proxy, Origin, TestProxy};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const CHROMIUM: &str = "/usr/bin/chromium";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium and one page in it, attached over the DevTools protocol.
struct Browser {
    child: Child,
    ws: Ws,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn launch(url: &str, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "about:blank",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .env("HOME", profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        // Chromium writes its port and browser endpoint here once it listens.
        let active = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let text = loop {
            if let Ok(text) = std::fs::read_to_string(&active) {
                if text.lines().count() >= 2 {
                    break text;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its DevTools port"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut lines = text.lines();
        let port = lines.next().unwrap().trim();
        let path = lines.next().unwrap().trim();
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}"))
            .await
            .unwrap();
        let mut browser = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        browser.resize(width, height).await;
        browser.call("Page.navigate", json!({"url": url})).await;
        browser
    }

    /// Sends one command (to the page once attached) and waits for its answer, skipping events.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method}"))
                .expect("devtools socket closed")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }

    async fn resize(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 700}),
        )
        .await;
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its JSON value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Polls `expression` until it is truthy; returns its value and how long it took.
    async fn wait_for(&mut self, expression: &str, limit: Duration) -> (Value, Duration) {
        let start = Instant::now();
        // Not there yet (the page still loading) is not an error here.
        let guarded = format!(
            "(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"
        );
        loop {
            let value = self.eval(&guarded).await;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value != json!(0)
                && value != json!("");
            if truthy {
                return (value, start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "not true within {limit:?}: {expression}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn screenshot(&mut self, path: &Path) {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        std::fs::write(path, png).unwrap();
        println!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // By PID: this Chromium only (its helpers exit with it).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The folder cargo builds into: the test binary lives in `<target>/<profile>/deps/`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn chromium_present() -> bool {
    if Path::new(CHROMIUM).is_file() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {CHROMIUM} is missing: .ci/run should have installed chromium"
    );
    println!("skipped: chromium not installed (apt-get install chromium)");
    false
}

/// The rows the page shows, as `{id, url, status, action, findings}`.
const ROWS: &str = r#"[...document.querySelectorAll('#rows > .tr')].map(tr => ({
    id: Number(tr.dataset.id),
    url: tr.querySelector('.c-url').textContent,
    status: tr.querySelector('.c-status').textContent,
    action: tr.querySelector('.c-action').textContent,
    findings: [...tr.querySelectorAll('.c-find .badge')].map(b => b.textContent)}))"#;

async fn send(proxy: &TestProxy, method: reqwest::Method, url: &str) -> reqwest::Response {
    proxy
        .client()
        .request(method, url)
        .header("authorization", "Bearer s3cret-token")
        .header("cookie", "session=abc123")
        .body(if url.contains("/status/") { "a=1" } else { "" })
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_live_traffic_findings_and_manages_hsts() {
    if !chromium_present() {
        return;
    }
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let admin = proxy.proxy.admin_addr.unwrap();
    let mut page = Browser::launch(&format!("http://{admin}/"), 1280, 800).await;
    page.wait_for(
        "document.getElementById('live').textContent === 'live'",
        Duration::from_secs(15),
    )
    .await;

    // Live rows: a plain GET with credentials, and a POST answered 302 (method_change_risk).
    let port = origin.port();
    let hello = format!("http://plain.test:{port}/hello");
    // The page notes when each row enters the DOM, to compare with the exchange's end.
    page.eval(
        "window.__seen = {}; new MutationObserver(list => { for (const m of list) \
         for (const n of m.addedNodes) if (n.dataset && n.dataset.id && !window.__seen[n.dataset.id]) \
         window.__seen[n.dataset.id] = Date.now(); }).observe(document.getElementById('rows'), {childList: true})",
    )
    .await;
    let response = send(&proxy, reqwest::Method::GET, &hello).await;
    assert_eq!(response.status(), 200);
    let (row_id, _) = page
        .wait_for(
            &format!("({ROWS}.find(r => r.url === '{hello}') || {{}}).id"),
            Duration::from_secs(5),
        )
        .await;
    let record = proxy
        .records()
        .await
        .into_iter()
        .find(|r| r["id"] == row_id)
        .unwrap();
    let ended = time::OffsetDateTime::parse(
        record["ts"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
        + Duration::from_secs_f64(record["duration_ms"].as_f64().unwrap() / 1000.0);
    let shown = page.eval(&format!("window.__seen['{row_id}']")).await;
    let latency_ms = shown.as_f64().unwrap() - (ended.unix_timestamp_nanos() as f64 / 1e6);
    println!("row in the DOM {latency_ms:.0} ms after its exchange ended");
    // Issue 13: within one second of the exchange's end.
    assert!(latency_ms < 1000.0, "{latency_ms} ms");
    let redirect = format!("http://plain.test:{port}/status/302?location=/next");
    let response = send(&proxy, reqwest::Method::POST, &redirect).await;
    assert_eq!(response.status(), 302);
    // A redirect followed by hand: the detail shows the chain it belongs to.
    let hop = format!("http://plain.test:{port}/status/301?location=/landing");
    let landing = format!("http://plain.test:{port}/landing");
    assert_eq!(proxy.get(&hop).await.status(), 301);
    assert_eq!(proxy.get(&landing).await.status(), 200);
    for i in 0..20 {
        send(
            &proxy,
            reqwest::Method::GET,
            &format!("http://plain.test:{port}/page/{i}"),
        )
        .await;
    }
    let (rows, _) = page
        .wait_for(
            &format!("(rows => rows.length >= 24 && rows)({ROWS})"),
            Duration::from_secs(5),
        )
        .await;
    let rows = rows.as_array().unwrap();
    assert!(
        rows[0]["url"].as_str().unwrap().ends_with("/page/19"),
        "newest on top: {rows:#?}"
    );
    let get = rows.iter().find(|r| r["url"] == hello.as_str()).unwrap();
    assert_eq!(get["status"], "200");
    assert_eq!(get["action"], "forwarded");
    assert_eq!(get["findings"], json!([]));
    let post = rows.iter().find(|r| r["url"] == redirect.as_str()).unwrap();
    assert_eq!(post["status"], "302");
    assert_eq!(post["findings"], json!(["method_change_risk"]));
    page.screenshot(&target_dir().join("console-traffic.png"))
        .await;

    // The detail of the GET: headers, with the credentials masked.
    let detail = page
        .eval(&format!(
            "document.querySelector('#rows [data-id=\"{}\"]').click(); document.getElementById('detail').innerText",
            get["id"]
        ))
        .await;
    let detail = detail.as_str().unwrap();
    assert!(detail.contains("authorization"), "{detail}");
    assert!(detail.contains("[redacted]"), "{detail}");
    assert!(
        !detail.contains("s3cret-token") && !detail.contains("abc123"),
        "{detail}"
    );
    let lower = detail.to_lowercase();
    assert!(lower.contains("request headers") && lower.contains("response headers"));

    // The finding's detail, with its fix sentence.
    let detail = page
        .eval(&format!(
            "document.querySelector('#rows [data-id=\"{}\"]').click(); document.getElementById('detail').innerText",
            post["id"]
        ))
        .await;
    let detail = detail.as_str().unwrap();
    assert!(detail.contains("method_change_risk"), "{detail}");
    assert!(detail.contains("Fix: use 303"), "{detail}");

    let landing_row = rows.iter().find(|r| r["url"] == landing.as_str()).unwrap();
    let detail = page
        .eval(&format!(
            "document.querySelector('#rows [data-id=\"{}\"]').click(); document.getElementById('detail').innerText",
            landing_row["id"]
        ))
        .await;
    let detail = detail.as_str().unwrap();
    assert!(detail.to_lowercase().contains("redirect chain"), "{detail}");
    assert!(detail.contains(&format!("301 GET {hop}")), "{detail}");
    assert!(detail.contains(&format!("200 GET {landing}")), "{detail}");
    // Back to the finding for its picture.
    page.eval(&format!(
        "document.querySelector('#rows [data-id=\"{}\"]').click()",
        post["id"]
    ))
    .await;
    page.screenshot(&target_dir().join("console-finding.png"))
        .await;

    // Filters: the finding kind leaves only the POST.
    let filtered = page
        .eval(&format!(
            "(() => {{ const s = document.getElementById('f-finding'); s.value = 'method_change_risk'; \
             s.dispatchEvent(new Event('input')); const r = {ROWS}; s.value = ''; \
             s.dispatchEvent(new Event('input')); return r; }})()"
        ))
        .await;
    assert_eq!(filtered.as_array().unwrap().len(), 1, "{filtered}");

    // HSTS: add an entry through the form …
    page.eval("document.getElementById('tab-hsts').click()")
        .await;
    page.eval(
        "document.getElementById('a-domain').value = 'plain.test'; \
         document.querySelector('#hsts-add button[type=submit]').click()",
    )
    .await;
    page.wait_for(
        "document.getElementById('a-ok') && document.getElementById('a-ok').textContent",
        Duration::from_secs(5),
    )
    .await;
    // … and the next plain-HTTP request gets the proxy's 307, the origin never sees it.
    let before = origin.seen().len();
    let upgraded = proxy
        .get(format!("http://sub.plain.test:{port}/after"))
        .await;
    assert_eq!(upgraded.status(), 307);
    assert_eq!(
        upgraded.headers()["location"],
        format!("https://sub.plain.test:{port}/after").as_str()
    );
    assert_eq!(origin.seen().len(), before);
    // The query panel names the deciding superdomain entry.
    page.eval(
        "document.getElementById('q-host').value = 'sub.plain.test'; \
         document.querySelector('#hsts-query button[type=submit]').click()",
    )
    .await;
    let (text, _) = page
        .wait_for(
            "document.getElementById('q-enforced') && document.getElementById('q-result').innerText",
            Duration::from_secs(5),
        )
        .await;
    let text = text.as_str().unwrap();
    assert!(text.contains("Enforced"), "{text}");
    assert!(text.contains("superdomain"), "{text}");
    assert!(text.contains("manual"), "{text}");
    page.wait_for(
        "[...document.querySelectorAll('#l-rows td')].some(td => td.textContent === 'plain.test')",
        Duration::from_secs(5),
    )
    .await;
    page.screenshot(&target_dir().join("console-hsts.png"))
        .await;

    // Delete it through the page: plain HTTP is forwarded again.
    page.eval("document.querySelector('#l-rows button[aria-label=\"Delete plain.test\"]').click()")
        .await;
    page.wait_for(
        "![...document.querySelectorAll('#l-rows td')].some(td => td.textContent === 'plain.test')",
        Duration::from_secs(5),
    )
    .await;
    let forwarded = proxy.get(format!("http://plain.test:{port}/again")).await;
    assert_eq!(forwarded.status(), 200);

    // Findings panel: counted by kind and host, linking to the exchange.
    page.eval("document.getElementById('tab-findings').click()")
        .await;
    let (text, _) = page
        .wait_for(
            "document.getElementById('h-rows').innerText",
            Duration::from_secs(5),
        )
        .await;
    let text = text.as_str().unwrap();
    assert!(
        text.contains("method_change_risk") && text.contains("plain.test"),
        "{text}"
    );
    assert!(text.contains(&format!("#{}", post["id"])), "{text}");

    // CA panel: the fingerprint and the install steps.
    page.eval("document.getElementById('tab-ca').click()").await;
    let (fp, _) = page
        .wait_for(
            "document.getElementById('ca-fp').textContent",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(fp.as_str().unwrap().len(), 95, "{fp}");
    let steps = page
        .eval("document.getElementById('ca-steps').innerText")
        .await;
    assert!(steps.as_str().unwrap().contains("Firefox"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_rows_and_a_fast_stream_do_not_freeze_the_page() {
    if !chromium_present() {
        return;
    }
    let origin = Origin::http().await;
    let proxy = start_proxy(None, |_| {}).await;
    let admin = proxy.proxy.admin_addr.unwrap();
    let mut page = Browser::launch(&format!("http://{admin}/"), 390, 844).await;
    page.wait_for(
        "document.getElementById('live').textContent === 'live'",
        Duration::from_secs(15),
    )
    .await;
    // The page measures its longest main-thread stall while the traffic runs.
    page.eval(
        "window.__gap = 0; (function tick(last) { requestAnimationFrame(now => { \
         window.__gap = Math.max(window.__gap, now - last); tick(now); }); })(performance.now()); \
         window.__long = 0; new PerformanceObserver(list => { for (const e of list.getEntries()) \
         window.__long = Math.max(window.__long, e.duration); }).observe({entryTypes: ['longtask']})",
    )
    .await;
    page.eval(r#"window.__t = {}; for (const name of ['draw','add','redraw','loadFindings','status','trim']) {
        const f = window[name]; window[name] = function (...a) { const t = performance.now(); const r = f.apply(this, a);
        if (name === 'draw') void document.body.offsetHeight;
        const d = performance.now() - t; const e = window.__t[name] || [0, 0, 0]; e[0]++; e[1] += d; e[2] = Math.max(e[2], d); window.__t[name] = e; return r; }; }"#).await;
    let client = proxy.client();
    let started = Instant::now();
    let total = 1200;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let client = client.clone();
        let port = origin.port();
        tasks.push(tokio::spawn(async move {
            for i in 0..total / 8 {
                client
                    .get(format!("http://plain.test:{port}/load/{w}/{i}"))
                    .send()
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let (shown, _) = page
        .wait_for(
            "(n => n >= 1000 && n)(document.querySelectorAll('#rows > .tr').length)",
            Duration::from_secs(10),
        )
        .await;
    let gap = page.eval("window.__gap").await.as_f64().unwrap();
    let long = page.eval("window.__long").await.as_f64().unwrap();
    println!("PERF {}", page.eval("JSON.stringify(window.__t)").await);
    println!(
        "{total} exchanges at {rate:.0}/s; {shown} rows shown; longest frame gap {gap:.0} ms, \
         longest task {long:.0} ms"
    );
    assert_eq!(shown, 1000, "the page keeps at most 1,000 rows");
    // On an idle machine the longest gap is a few frames; the bound is loose because CI
    // machines are shared (measured 967 ms at a load average of 18 on 2 cores), and still
    // catches a page that rebuilds or re-lays out the whole table per event (several seconds).
    assert!(gap < 2000.0, "the page stalled {gap} ms");
    page.screenshot(&target_dir().join("console-phone.png"))
        .await;
}
