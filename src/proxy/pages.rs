//! The pages the proxy serves itself at `http://strictproxy.local/` (never forwarded): the CA
//! install page, with the CA as PEM (`/ca.pem`) and as DER (`/ca.crt`, what Windows and
//! Android expect), like mitmproxy's mitm.it.

use crate::proxy::body::ProxyBody;
use crate::proxy::respond;
use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};
use std::path::PathBuf;

/// The CA certificate, as the pages and the admin API serve it.
#[derive(Clone, Debug)]
pub struct CaMaterial {
    /// PEM, for `/ca.pem`.
    pub pem: Bytes,
    /// DER, for `/ca.crt` (what Windows and Android expect).
    pub der: Bytes,
    /// Where the certificate file is on disk (for the banner).
    pub path: PathBuf,
}

/// The magic host name answered locally.
pub const LOCAL_NAME: &str = "strictproxy.local";

/// Whether `host` is the proxy's own page name.
pub fn is_local_name(host: &str) -> bool {
    host.trim_end_matches('.').eq_ignore_ascii_case(LOCAL_NAME)
}

/// Whether an origin-form request's Host names the local page.
pub fn is_local_host(headers: &HeaderMap) -> bool {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|host| host.rsplit_once(':').map_or(host, |(h, _)| h))
        .is_some_and(is_local_name)
}

/// Serves `path` of the local site.
pub fn serve(ca: &CaMaterial, path: &str) -> Response<ProxyBody> {
    match path {
        "/" | "/index.html" => respond::local("text/html; charset=utf-8", install_page()),
        "/ca.pem" => with_download(
            respond::local("application/x-pem-file", ca.pem.clone()),
            "strictproxy-ca.pem",
        ),
        "/ca.crt" | "/ca.der" | "/ca.cer" => with_download(
            respond::local("application/x-x509-ca-cert", ca.der.clone()),
            "strictproxy-ca.crt",
        ),
        _ => {
            let mut response = respond::local(
                "text/plain; charset=utf-8",
                "strictproxy: no such page; see http://strictproxy.local/\n",
            );
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
        }
    }
}

fn with_download(mut response: Response<ProxyBody>, filename: &'static str) -> Response<ProxyBody> {
    if let Ok(value) = format!("attachment; filename=\"{filename}\"").parse() {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// The install page: download links and the steps for each platform.
pub fn install_page() -> &'static str {
    r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>strictproxy — install the CA</title>
<style>body{font-family:system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em;line-height:1.5}
code,pre{background:#f3f3f3;padding:.1em .3em}h2{margin-top:1.6em}</style></head>
<body>
<h1>strictproxy: trust the local CA</h1>
<p>strictproxy intercepts HTTPS so it can enforce and learn HSTS for you. Your device must trust
its local certificate authority. Only install it on devices that you own: anyone holding its key
can impersonate any site to them.</p>
<p><a href="/ca.pem">Download ca.pem</a> (PEM: Linux, Firefox, macOS, iOS) ·
<a href="/ca.crt">Download ca.crt</a> (DER: Windows, Android)</p>
<h2>Firefox</h2>
<p>Settings → Privacy &amp; Security → Certificates → View Certificates → Authorities → Import,
choose <code>ca.pem</code>, tick “Trust this CA to identify websites”.</p>
<h2>Chromium / Chrome</h2>
<p>Linux: Settings → Privacy and security → Security → Manage certificates → Authorities →
Import <code>ca.pem</code>, tick “Trust this certificate for identifying websites”. Or, with
NSS tools: <code>certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n strictproxy -i ca.pem</code>.
On Windows and macOS Chrome uses the system store (below).</p>
<h2>Debian / Ubuntu (system store: curl, wget, apt, Python…)</h2>
<pre>sudo cp ca.pem /usr/local/share/ca-certificates/strictproxy.crt
sudo update-ca-certificates</pre>
<h2>macOS</h2>
<pre>sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain ca.pem</pre>
<p>or open <code>ca.pem</code> in Keychain Access, then set “When using this certificate: Always Trust”.</p>
<h2>Windows</h2>
<p>Open <code>ca.crt</code> → Install Certificate → Local Machine → “Place all certificates in the
following store” → Trusted Root Certification Authorities. Or: <code>certutil -addstore root ca.crt</code>
in an administrator prompt.</p>
<h2>Android</h2>
<p>Settings → Security → Encryption &amp; credentials → Install a certificate → CA certificate,
choose <code>ca.crt</code>. Apps trust user CAs only if they opt in (Chrome does).</p>
<h2>iOS / iPadOS</h2>
<p>Open <code>http://strictproxy.local/ca.pem</code> in Safari, allow the profile download, then
Settings → General → VPN &amp; Device Management → install it, and turn it on under
Settings → General → About → Certificate Trust Settings.</p>
<h2>curl</h2>
<pre>curl -x http://127.0.0.1:8080 --cacert ca.pem https://example.com/</pre>
</body></html>
"#
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn local_names() {
        assert!(is_local_name("strictproxy.local"));
        assert!(is_local_name("StrictProxy.Local."));
        assert!(!is_local_name("strictproxy.local.evil"));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_static("strictproxy.local:80"),
        );
        assert!(is_local_host(&headers));
    }

    #[test]
    fn page_names_every_platform() {
        let page = install_page();
        for platform in [
            "Firefox", "Chromium", "Debian", "macOS", "Windows", "Android", "iOS",
        ] {
            assert!(page.contains(platform), "{platform}");
        }
        assert!(page.contains("href=\"/ca.pem\"") && page.contains("href=\"/ca.crt\""));
    }
}
