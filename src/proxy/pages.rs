//! The pages the proxy serves itself at `http://strictproxy.local/` (never forwarded): the CA
//! install page, with the CA as PEM (`/ca.pem`) and as DER (`/ca.crt`, what Windows and
//! Android expect), like mitmproxy's mitm.it.

use crate::proxy::body::ProxyBody;
use crate::proxy::respond;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};

pub use crate::ca::CaMaterial;

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

/// The install page: download links and the steps for each platform (one source with the
/// web console's CA panel: [`crate::install_guide`]).
pub fn install_page() -> String {
    crate::install_guide::page_html()
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
