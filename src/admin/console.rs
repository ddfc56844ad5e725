//! The web console's files, embedded in the binary (no CDN, no build step, works offline):
//! plain HTML, CSS and JavaScript served at `/`, `/console.css` and `/console.js`.

use super::{error, with_type, AdminBody};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

const HTML: &str = include_str!("console.html");
const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

/// One of the console's files.
pub fn asset(path: &str) -> Response<AdminBody> {
    let mut response = match path {
        "/" | "/index.html" => with_type("text/html; charset=utf-8", HTML),
        "/console.css" => with_type("text/css; charset=utf-8", CSS),
        "/console.js" => with_type("text/javascript; charset=utf-8", JS),
        _ => return error(StatusCode::NOT_FOUND, "no such console file"),
    };
    let headers = response.headers_mut();
    // Only our own files run on this origin, and no other site may frame it (clickjacking
    // the HSTS form).
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
