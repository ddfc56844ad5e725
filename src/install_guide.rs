//! How to trust the proxy's CA on each platform: ONE source for the page the proxy serves at
//! `http://strictproxy.local/` and the CA panel of the web console (`GET /ca` on the admin
//! listener), so the two never drift apart.
//!
//! Steps are plain text where `` `code` `` marks what is typed or clicked literally, or whole
//! commands; each reader renders them (escaped) in its own way.

use serde::Serialize;

/// One step of a platform's instructions.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A sentence; `` `…` `` spans are literal text.
    Text(&'static str),
    /// A command to paste into a terminal.
    Command(&'static str),
}

/// A platform and its steps.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Platform {
    pub name: &'static str,
    pub steps: &'static [Step],
}

use Step::{Command, Text};

/// The platforms, in the order a page shows them.
pub const PLATFORMS: &[Platform] = &[
    Platform {
        name: "Firefox",
        steps: &[Text(
            "Settings → Privacy & Security → Certificates → View Certificates → Authorities → \
             Import, choose `ca.pem`, tick “Trust this CA to identify websites”.",
        )],
    },
    Platform {
        name: "Chromium / Chrome",
        steps: &[
            Text(
                "Linux: Settings → Privacy and security → Security → Manage certificates → \
                 Authorities → Import `ca.pem`, tick “Trust this certificate for identifying \
                 websites”. Or, with NSS tools:",
            ),
            Command("certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n strictproxy -i ca.pem"),
            Text("On Windows and macOS Chrome uses the system store (below)."),
        ],
    },
    Platform {
        name: "Debian / Ubuntu (system store: curl, wget, apt, Python…)",
        steps: &[
            Command("sudo cp ca.pem /usr/local/share/ca-certificates/strictproxy.crt"),
            Command("sudo update-ca-certificates"),
        ],
    },
    Platform {
        name: "macOS",
        steps: &[
            Command(
                "sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain ca.pem",
            ),
            Text(
                "or open `ca.pem` in Keychain Access, then set “When using this certificate: \
                 Always Trust”.",
            ),
        ],
    },
    Platform {
        name: "Windows",
        steps: &[
            Text(
                "Open `ca.crt` → Install Certificate → Local Machine → “Place all certificates \
                 in the following store” → Trusted Root Certification Authorities. Or, in an \
                 administrator prompt:",
            ),
            Command("certutil -addstore root ca.crt"),
        ],
    },
    Platform {
        name: "Android",
        steps: &[Text(
            "Settings → Security → Encryption & credentials → Install a certificate → CA \
             certificate, choose `ca.crt`. Apps trust user CAs only if they opt in (Chrome does).",
        )],
    },
    Platform {
        name: "iOS / iPadOS",
        steps: &[Text(
            "Open `http://strictproxy.local/ca.pem` in Safari, allow the profile download, then \
             Settings → General → VPN & Device Management → install it, and turn it on under \
             Settings → General → About → Certificate Trust Settings.",
        )],
    },
    Platform {
        name: "curl",
        steps: &[Command(
            "curl -x http://127.0.0.1:8080 --cacert ca.pem https://example.com/",
        )],
    },
];

/// The warning every reader shows first.
pub const INTRO: &str = "strictproxy intercepts HTTPS so it can enforce and learn HSTS for \
    you. Your device must trust its local certificate authority. Only install it on devices \
    that you own: anyone holding its key can impersonate any site to them.";

/// The steps as HTML sections (`<h2>` per platform), text escaped, `` `…` `` as `<code>`.
pub fn steps_html() -> String {
    let mut out = String::new();
    for platform in PLATFORMS {
        out.push_str(&format!("<h2>{}</h2>\n", escape(platform.name)));
        for step in platform.steps {
            match step {
                Text(text) => out.push_str(&format!("<p>{}</p>\n", code_spans(&escape(text)))),
                Command(command) => out.push_str(&format!("<pre>{}</pre>\n", escape(command))),
            }
        }
    }
    out
}

/// The whole page of `http://strictproxy.local/`.
pub fn page_html() -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>strictproxy — install the CA</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em;line-height:1.5}}
code,pre{{background:#f3f3f3;padding:.1em .3em;white-space:pre-wrap}}h2{{margin-top:1.6em}}</style></head>
<body>
<h1>strictproxy: trust the local CA</h1>
<p>{intro}</p>
<p><a href="/ca.pem">Download ca.pem</a> (PEM: Linux, Firefox, macOS, iOS) ·
<a href="/ca.crt">Download ca.crt</a> (DER: Windows, Android)</p>
{steps}</body></html>
"#,
        intro = escape(INTRO),
        steps = steps_html()
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// `` `x` `` → `<code>x</code>` (on already escaped text).
fn code_spans(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(part);
            out.push_str("</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_every_platform_and_both_downloads() {
        let page = page_html();
        for platform in PLATFORMS {
            assert!(page.contains(&escape(platform.name)), "{}", platform.name);
        }
        assert!(page.contains("<code>ca.pem</code>"));
        assert!(page.contains("Privacy &amp; Security"));
        assert!(page.contains("href=\"/ca.pem\"") && page.contains("href=\"/ca.crt\""));
        assert!(!page.contains('`'), "every code span is closed");
    }

    #[test]
    fn json_shape_for_the_console() {
        let v = serde_json::to_value(PLATFORMS).unwrap();
        assert_eq!(v[0]["name"], "Firefox");
        assert!(v[1]["steps"][1]["command"]
            .as_str()
            .unwrap()
            .starts_with("certutil"));
        assert!(v[0]["steps"][0]["text"].is_string());
    }
}
