//! The lab's demo origins: an HSTS site (TLS and plain HTTP on one port), a plain-HTTP site, a
//! shop with login redirects of every kind, and an "evil" site that shows what it receives.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Site {
    Hsts,
    Plain,
    Shop,
    Evil,
}

impl Site {
    fn host(self) -> &'static str {
        match self {
            Site::Hsts => HSTS_HOST,
            Site::Plain => PLAIN_HOST,
            Site::Shop => SHOP_HOST,
            Site::Evil => EVIL_HOST,
        }
    }
}

/// How an origin speaks on its port.
#[derive(Clone)]
pub(super) enum Transport {
    Plain,
    Tls(TlsAcceptor),
    /// TLS when the first byte is a handshake record (0x16), plain HTTP otherwise.
    Both(TlsAcceptor),
}

pub(super) async fn serve_origin(
    listener: TcpListener,
    site: Site,
    transport: Transport,
    ports: Ports,
) {
    // Connections live in this set: aborting this task drops it, which aborts them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_connection(stream, site, transport.clone(), ports));
            }
            // Reap finished connections so the set does not grow with every request.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, site: Site, transport: Transport, ports: Ports) {
    let tls = match transport {
        Transport::Plain => None,
        Transport::Tls(acceptor) => Some(acceptor),
        Transport::Both(acceptor) => {
            let mut first = [0u8; 1];
            match stream.peek(&mut first).await {
                // 0x16: a TLS handshake record (RFC 8446 §5.1, ContentType handshake).
                Ok(1) if first[0] == 0x16 => Some(acceptor),
                Ok(1) => None,
                _ => return,
            }
        }
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    match tls {
        Some(acceptor) => {
            if let Ok(stream) = acceptor.accept(stream).await {
                let service = service_fn(move |req| answer(site, "https", ports, req));
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        }
        None => {
            let service = service_fn(move |req| answer(site, "http", ports, req));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    }
}

type OriginResponse = Response<Full<Bytes>>;

async fn answer(
    site: Site,
    scheme: &'static str,
    ports: Ports,
    req: Request<Incoming>,
) -> Result<OriginResponse, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let html = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    say(&format!(
        "origin  {} ({scheme}) received {method} {path} with {} body bytes",
        site.host(),
        body.len()
    ));
    Ok(route(site, scheme, ports, &method, &path, &body, html))
}

/// What each demo origin answers. Plain text for curl, a small page for a browser.
fn route(
    site: Site,
    scheme: &str,
    ports: Ports,
    method: &Method,
    path: &str,
    body: &[u8],
    html: bool,
) -> OriginResponse {
    match site {
        Site::Hsts => {
            let text = if scheme == "https" {
                format!("{HSTS_HOST} over HTTPS. This answer carries Strict-Transport-Security: {STS_VALUE}; the proxy verified the certificate, so it has learned that {HSTS_HOST} is HTTPS-only.")
            } else {
                format!("{HSTS_HOST} over plain HTTP. This answer carries Strict-Transport-Security too, but in clear anyone on the path could have added or removed it, so the proxy ignores it (RFC 6797 §8.1).")
            };
            let mut response = page(&text, html, true);
            // Sent on both transports on purpose: lesson 1 shows the plain one ignored.
            response.headers_mut().insert(
                STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(STS_VALUE),
            );
            response
        }
        Site::Plain => page(
            &format!("{PLAIN_HOST} over plain HTTP. This site never sends Strict-Transport-Security, so the proxy forwards it in clear."),
            html,
            true,
        ),
        Site::Shop => match (method, path) {
            (&Method::GET, "/") => shop_home(html),
            (&Method::POST, "/login-302") => redirect(StatusCode::FOUND, "/welcome".into()),
            (&Method::POST, "/login-307") => {
                redirect(StatusCode::TEMPORARY_REDIRECT, "/welcome".into())
            }
            (&Method::POST, "/login-307-away") => redirect(
                StatusCode::TEMPORARY_REDIRECT,
                format!("https://{EVIL_HOST}:{}/collect", ports.evil),
            ),
            (&Method::POST, "/login-303-away") => redirect(
                StatusCode::SEE_OTHER,
                format!("https://{EVIL_HOST}:{}/collect", ports.evil),
            ),
            (_, "/welcome") => page(&received(SHOP_HOST, method, path, body), html, false),
            _ => {
                let mut response = page(
                    &format!("{SHOP_HOST}: nothing at {method} {path}; the forms are at /"),
                    html,
                    false,
                );
                *response.status_mut() = StatusCode::NOT_FOUND;
                response
            }
        },
        Site::Evil => page(&received(EVIL_HOST, method, path, body), html, false),
    }
}

/// "shop.lab.test /welcome received: POST, 27 body bytes: user=…": what the lessons look for.
fn received(host: &str, method: &Method, path: &str, body: &[u8]) -> String {
    if body.is_empty() {
        format!("{host} {path} received: {method}, no body")
    } else {
        format!(
            "{host} {path} received: {method}, {} body bytes: {}",
            body.len(),
            String::from_utf8_lossy(body)
        )
    }
}

fn redirect(status: StatusCode, location: String) -> OriginResponse {
    let text = format!("{status}: go to {location}\n");
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A text answer, or for a browser a page that also shows the URL it ended on: the browser
/// test reads it back (`#where`) to prove where the 307 led.
fn page(text: &str, html: bool, show_url: bool) -> OriginResponse {
    let (body, kind) = if html {
        let mut doc = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>strictproxy lab</title>\
             <style>body{font:18px sans-serif;margin:2em;max-width:50em}code{background:#eee;padding:2px 4px}</style>\
             </head><body><h1>strictproxy lab</h1>",
        );
        let _ = write!(doc, "<p>{}</p>", escape_html(text));
        if show_url {
            doc.push_str(
                "<p>This page was loaded from <code id=\"where\"></code></p>\
                 <script>document.getElementById('where').textContent = location.href;</script>",
            );
        }
        doc.push_str("</body></html>\n");
        (doc, "text/html; charset=utf-8")
    } else {
        (format!("{text}\n"), "text/plain; charset=utf-8")
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}

fn shop_home(html: bool) -> OriginResponse {
    if !html {
        return page(
            &format!("{SHOP_HOST}: POST a login to /login-302, /login-307, /login-307-away or /login-303-away"),
            false,
            false,
        );
    }
    let mut doc = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>shop.lab.test</title>\
         <style>body{font:18px sans-serif;margin:2em}form{margin:1em 0}</style></head><body>\
         <h1>shop.lab.test: four ways to answer a login</h1>",
    );
    for (path, what) in [
        (
            "/login-302",
            "answers 302: the browser follows with a GET and drops the form",
        ),
        (
            "/login-307",
            "answers 307: the browser re-sends the POST and the form",
        ),
        (
            "/login-307-away",
            "answers 307 to evil.lab.test: the browser hands it the password",
        ),
        (
            "/login-303-away",
            "answers 303 to evil.lab.test: the browser follows with a GET, without the password",
        ),
    ] {
        let _ = write!(
            doc,
            "<form method=\"post\" action=\"{path}\"><input name=\"user\" value=\"alice\"> \
             <input name=\"password\" type=\"password\" value=\"hunter2\"> \
             <button>{path}</button> {}</form>",
            escape_html(what)
        );
    }
    doc.push_str("</body></html>\n");
    let mut response = Response::new(Full::new(Bytes::from(doc)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_routes() {
        let ports = Ports {
            hsts: 1,
            plain: 2,
            shop: 3,
            evil: 4,
        };
        // The shop's login routes: (method, path, expected status, expected Location).
        let rows = [
            (Method::POST, "/login-302", 302, Some("/welcome")),
            (Method::POST, "/login-307", 307, Some("/welcome")),
            (
                Method::POST,
                "/login-307-away",
                307,
                Some("https://evil.lab.test:4/collect"),
            ),
            (
                Method::POST,
                "/login-303-away",
                303,
                Some("https://evil.lab.test:4/collect"),
            ),
            (Method::GET, "/welcome", 200, None),
            (Method::POST, "/welcome", 200, None),
            (Method::GET, "/nowhere", 404, None),
        ];
        for (method, path, status, location) in rows {
            let response = route(Site::Shop, "https", ports, &method, path, b"", false);
            assert_eq!(response.status().as_u16(), status, "{method} {path}");
            assert_eq!(
                response
                    .headers()
                    .get(LOCATION)
                    .map(|v| v.to_str().unwrap()),
                location,
                "{method} {path}"
            );
        }
        // The HSTS site sends STS on both transports (lesson 1 shows the plain one ignored).
        for scheme in ["http", "https"] {
            let response = route(Site::Hsts, scheme, ports, &Method::GET, "/", b"", false);
            assert_eq!(response.headers()[STRICT_TRANSPORT_SECURITY], STS_VALUE);
        }
        assert_eq!(
            received(SHOP_HOST, &Method::POST, "/welcome", LOGIN_FORM.as_bytes()),
            "shop.lab.test /welcome received: POST, 27 body bytes: user=alice&password=hunter2"
        );
        assert_eq!(
            received(EVIL_HOST, &Method::GET, "/collect", b""),
            "evil.lab.test /collect received: GET, no body"
        );
    }
}
