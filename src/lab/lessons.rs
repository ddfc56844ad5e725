//! The lessons `strictproxy lab` prints: pure text from the run's addresses and paths.

use super::*;

/// Quotes a word for a POSIX shell when it needs it, so that every printed command runs
/// verbatim when pasted (temp folders and `--ca-dir` may hold spaces).
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The text `strictproxy lab` prints: where everything is, then each lesson's commands, each
/// command on a line starting with `  $ ` and followed by what to look for.
pub fn lessons(info: &LabInfo) -> String {
    let p = ProxyArgs {
        proxy: info.proxy,
        ca: shell_quote(&info.proxy_ca.display().to_string()),
    };
    let r = ProxyArgs {
        proxy: info.rewrite_proxy,
        ca: p.ca.clone(),
    };
    let Ports {
        hsts,
        plain,
        shop,
        evil,
    } = info.ports;
    let form = shell_quote(LOGIN_FORM);
    let shop_url = |path: &str| format!("https://{SHOP_HOST}:{shop}{path}");
    let mut t = String::new();
    let mut line = |text: &str| {
        t.push_str(text);
        t.push('\n');
    };

    line("strictproxy lab: every site, proxy and lesson below runs on 127.0.0.1; nothing leaves this machine.");
    if let Some(wanted) = info.fallback_from {
        line(&format!(
            "note: {wanted} is already in use (another proxy?), so the lab proxy took a free port: {}",
            info.proxy
        ));
    }
    line("");
    if let Some(admin) = info.admin {
        line(&format!(
            "  web console      http://{admin}/   (open it in a browser: live traffic, findings, HSTS store)"
        ));
    }
    line(&format!(
        "  lab proxy        http://{}   (--redirect-policy log)",
        info.proxy
    ));
    line(&format!(
        "  rewrite proxy    http://{}   (--redirect-policy rewrite, for lesson 5)",
        info.rewrite_proxy
    ));
    if let Some(admin) = info.admin {
        line(&format!("  admin API        http://{admin}/hsts"));
    }
    line(&format!(
        "  proxy CA         {}   (what curl --cacert and a browser trust)",
        info.proxy_ca.display()
    ));
    line(&format!(
        "  lab origin CA    {}   (made for this run; only the proxies trust it, as --upstream-ca)",
        info.lab_ca.display()
    ));
    line(&format!(
        "  traffic log      {}",
        info.traffic_log.display()
    ));
    line(&format!(
        "  rewrite log      {}",
        info.rewrite_log.display()
    ));
    line(&format!(
        "  HSTS store       {}   (fresh for this run)",
        info.hsts_store.display()
    ));
    line(&format!(
        "  demo origins     {HSTS_HOST}:{hsts} (https and http on one port)  {PLAIN_HOST}:{plain} (http)  {SHOP_HOST}:{shop} (https)  {EVIL_HOST}:{evil} (https)"
    ));
    line("                   the proxies map these names to 127.0.0.1 (--resolve); each request that reaches one prints an `origin` line here.");
    line("");

    line("Lesson 1: HSTS is learned only over HTTPS");
    line(&p.cmd(&format!("-i http://{HSTS_HOST}:{hsts}/")));
    line("    look for: 200 from the origin with Strict-Transport-Security, which the proxy ignores because it came in clear and");
    line("    could have been forged (RFC 6797 §8.1): the console shows the finding sts_over_http. Run it twice: still not learned.");
    line(&p.cmd_tls(&format!("-i https://{HSTS_HOST}:{hsts}/")));
    line("    look for: the same header, over HTTPS whose certificate the proxy verified: now it knows hsts.lab.test is HTTPS-only.");
    match info.admin {
        // --noproxy: the admin API is not to be reached through a proxy set in http_proxy.
        Some(admin) => {
            line(&format!(
                "  $ curl --noproxy '*' http://{admin}/hsts/{HSTS_HOST}"
            ));
            line(&format!("    look for: \"enforced\":true and the learned entry (the admin API; the store file {} follows within 2 s).", info.hsts_store.display()));
        }
        None => {
            line(&format!(
                "  $ cat {}",
                shell_quote(&info.hsts_store.display().to_string())
            ));
            line("    look for: the learned entry for hsts.lab.test (the store file is written within 2 seconds of a change).");
        }
    }
    line("");

    line("Lesson 2: then the plain-HTTP URL never leaves the proxy: 307 Internal Redirect");
    line(&p.cmd(&format!("-i http://{HSTS_HOST}:{hsts}/")));
    line("    look for: HTTP/1.1 307 Internal Redirect, Non-Authoritative-Reason: HSTS and Location https://…, answered by the");
    line("    proxy itself, as Chromium does inside the browser: no new `origin` line appears here, the request was never sent.");
    line(&p.cmd_tls(&format!("-L http://{HSTS_HOST}:{hsts}/")));
    line("    look for: curl follows the 307 and gets the page over HTTPS.");
    line(&p.cmd(&format!("-i http://{PLAIN_HOST}:{plain}/")));
    line("    look for: 200 in clear: plain.lab.test never sent HSTS over HTTPS, so the proxy forwards it as it is.");
    line("");

    line("Lesson 3: a login POST turned into a GET by a 302, kept by a 307");
    line(&p.cmd_tls(&format!("-L -d {form} {}", shop_url("/login-302"))));
    line("    look for: `received: GET, no body`: curl, like every browser, followed the 302 with a GET and dropped the form;");
    line("    the console shows method_change_risk with the fix (303 to switch to GET on purpose, 307 to keep POST).");
    line(&p.cmd_tls(&format!("-L -d {form} {}", shop_url("/login-307"))));
    line("    look for: `received: POST, 27 body bytes`: a 307 repeats the same method with the same body (RFC 9110 §15.4.8).");
    line("");

    line("Lesson 4: a 307 that hands the password to another origin, and why 303 is the fix");
    line(&p.cmd_tls(&format!("-L -d {form} {}", shop_url("/login-307-away"))));
    line("    look for: `evil.lab.test /collect received: POST … password=hunter2`: the 307 made the client re-send the login to");
    line("    another origin; the console shows cross_origin_body_replay.");
    line(&p.cmd_tls(&format!("-L -d {form} {}", shop_url("/login-303-away"))));
    line("    look for: `received: GET, no body`: a 303 tells every client to follow with a GET and no body, so the password");
    line("    stays with the shop (RFC 9110 §15.4.4). Send 303 after a form, 307/308 only to the same origin.");
    line("");

    line("Lesson 5: what --redirect-policy rewrite changes");
    line(&r.cmd_tls(&format!("-i -L -d {form} {}", shop_url("/login-302"))));
    line("    look for: a 307 (`HTTP/2 307`) where the shop sent 302, then `received: POST, 27 body bytes`: the rewrite proxy turns an");
    line("    ambiguous 301/302 after a POST into 308/307, so every client keeps the method and the body; its log line says");
    line("    \"rewritten_from\":302. It never rewrites one that points to another origin: that would create lesson 4's leak.");
    line("");

    line("Lesson 6: the finding lines and the report");
    line("    The console above shows one WARN line per finding: its kind, then the sentence that says what to fix.");
    line(&format!(
        "  $ grep -h '\"kind\"' {} {}",
        shell_quote(&info.traffic_log.display().to_string()),
        shell_quote(&info.rewrite_log.display().to_string())
    ));
    line("    look for: the same findings in the traffic logs, one JSON object per exchange with \"findings\":[{\"kind\",\"detail\"}].");
    line(&format!(
        "  $ {} report {}",
        shell_quote(&info.exe),
        shell_quote(&info.traffic_log.display().to_string())
    ));
    line("    look for: the exchanges by action (forwarded, hsts_internal_redirect), every finding with its fix, and the");
    line("    hosts that sent Strict-Transport-Security.");
    line("");

    line(&format!(
        "In a browser: set the HTTP and HTTPS proxy to 127.0.0.1 port {}, trust {} (see README, \"Trust the CA\"),",
        info.proxy.port(),
        info.proxy_ca.display()
    ));
    line(&format!(
        "then open https://{HSTS_HOST}:{hsts}/, http://{HSTS_HOST}:{hsts}/ and https://{SHOP_HOST}:{shop}/ (the login forms)."
    ));
    line("Ctrl-C stops the lab; its files are kept for the report.");
    line("");
    t
}

/// The proxy part of a curl command.
struct ProxyArgs {
    proxy: SocketAddr,
    ca: String,
}

impl ProxyArgs {
    /// A command for a plain-HTTP URL: no CA needed.
    fn cmd(&self, rest: &str) -> String {
        format!("  $ curl -x http://{} {rest}", self.proxy)
    }

    /// A command that may reach HTTPS: curl must trust the proxy CA.
    fn cmd_tls(&self, rest: &str) -> String {
        format!(
            "  $ curl -x http://{} --cacert {} {rest}",
            self.proxy, self.ca
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> LabInfo {
        LabInfo {
            proxy: "127.0.0.1:8080".parse().unwrap(),
            fallback_from: None,
            rewrite_proxy: "127.0.0.1:40001".parse().unwrap(),
            admin: None,
            proxy_ca: PathBuf::from("/tmp/my certs/ca.pem"),
            lab_ca: PathBuf::from("/tmp/lab/lab-ca.pem"),
            traffic_log: PathBuf::from("/tmp/lab/traffic.jsonl"),
            rewrite_log: PathBuf::from("/tmp/lab/traffic-rewrite.jsonl"),
            hsts_store: PathBuf::from("/tmp/lab/hsts.json"),
            dir: PathBuf::from("/tmp/lab"),
            ports: Ports {
                hsts: 1001,
                plain: 1002,
                shop: 1003,
                evil: 1004,
            },
            exe: "/usr/bin/strictproxy".into(),
        }
    }

    #[test]
    fn shell_quoting() {
        // (word, as printed)
        let rows = [
            ("/tmp/a/ca.pem", "/tmp/a/ca.pem"),
            ("/tmp/my certs/ca.pem", "'/tmp/my certs/ca.pem'"),
            (
                "user=alice&password=hunter2",
                "'user=alice&password=hunter2'",
            ),
            ("it's", r"'it'\''s'"),
            ("", "''"),
        ];
        for (word, quoted) in rows {
            assert_eq!(shell_quote(word), quoted, "{word}");
        }
    }

    #[test]
    fn lessons_come_in_the_issue_order() {
        let text = lessons(&info());
        let commands: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("  $ "))
            .collect();
        let expect = [
            "curl -x http://127.0.0.1:8080 -i http://hsts.lab.test:1001/",
            "curl -x http://127.0.0.1:8080 --cacert '/tmp/my certs/ca.pem' -i https://hsts.lab.test:1001/",
            "cat /tmp/lab/hsts.json",
            "curl -x http://127.0.0.1:8080 -i http://hsts.lab.test:1001/",
            "curl -x http://127.0.0.1:8080 --cacert '/tmp/my certs/ca.pem' -L http://hsts.lab.test:1001/",
            "curl -x http://127.0.0.1:8080 -i http://plain.lab.test:1002/",
            "curl -x http://127.0.0.1:8080 --cacert '/tmp/my certs/ca.pem' -L -d 'user=alice&password=hunter2' https://shop.lab.test:1003/login-302",
            "curl -x http://127.0.0.1:8080 --cacert '/tmp/my certs/ca.pem' -L -d 'user=alice&password=hunter2' https://shop.lab.test:1003/login-307",
            "curl -x http://127.0.0.1:8080 --cacert '/tmp/my certs/ca.pem' -L -d 'user=alice&password=hunter2' https://shop.lab.test:1003/login-307-away",
            "curl -x http://127.0.0.1:8080 --cacert '/tmp/my certs/ca.pem' -L -d 'user=alice&password=hunter2' https://shop.lab.test:1003/login-303-away",
            "curl -x http://127.0.0.1:40001 --cacert '/tmp/my certs/ca.pem' -i -L -d 'user=alice&password=hunter2' https://shop.lab.test:1003/login-302",
            "grep -h '\"kind\"' /tmp/lab/traffic.jsonl /tmp/lab/traffic-rewrite.jsonl",
            "/usr/bin/strictproxy report /tmp/lab/traffic.jsonl",
        ];
        assert_eq!(commands, expect);
        // Every command is followed by what to look for (except the grep's own line).
        assert!(text.contains("Lesson 6"));
    }

    #[test]
    fn fallback_and_admin_are_said() {
        let mut info = info();
        info.fallback_from = Some("127.0.0.1:8080".parse().unwrap());
        info.proxy = "127.0.0.1:45555".parse().unwrap();
        info.admin = Some("127.0.0.1:8081".parse().unwrap());
        let text = lessons(&info);
        assert!(text.contains("127.0.0.1:8080 is already in use"), "{text}");
        assert!(text.contains("curl -x http://127.0.0.1:45555 "), "{text}");
        assert!(text.contains("$ curl --noproxy '*' http://127.0.0.1:8081/hsts/hsts.lab.test"));
        assert!(
            text.contains("web console      http://127.0.0.1:8081/"),
            "{text}"
        );
    }
}
