//! The pure 3xx audit and rewrite (RFC 9110 §15.4): one upstream response and the request that
//! caused it in, the findings and the changes to make on the response head out. No I/O.

use super::{quote, RedirectPolicy};
use crate::finding::{Finding, FindingKind};
use crate::hsts::upgrade::upgrade_url;
use http::{header::LOCATION, HeaderValue, Method, StatusCode};
use std::fmt;
use url::Url;

/// What [`audit`] decided about one response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedirectDecision {
    /// What is wrong with the redirect, each with a sentence that says how to fix it.
    pub findings: Vec<Finding>,
    /// The status to send instead of the upstream's (`302`→`307`, `301`→`308`).
    pub new_status: Option<StatusCode>,
    /// The `Location` to send instead of the upstream's (an HSTS-known host moved to https).
    pub new_location: Option<HeaderValue>,
    /// Where the client goes next: the `Location` resolved against the request URL (after any
    /// rewrite of it). `None` when the response is no redirect or the `Location` is missing or
    /// unparsable. Feed it to [`super::RedirectChains::observe`].
    pub target: Option<Url>,
}

impl RedirectDecision {
    /// Makes the decided changes on a response head.
    pub fn apply(&self, parts: &mut http::response::Parts) {
        if let Some(status) = self.new_status {
            if parts.status != status {
                parts.status = status;
                // hyper sends a custom reason phrase verbatim; the upstream's "Found" must not
                // travel on a 307, so fall back to the canonical phrase of the new status.
                parts.extensions.remove::<hyper::ext::ReasonPhrase>();
            }
        }
        if let Some(location) = &self.new_location {
            // `insert` replaces every Location field: only the first was audited, and a
            // leftover second one would contradict the rewrite.
            parts.headers.insert(LOCATION, location.clone());
        }
    }
}

/// Audits one response against the request that caused it.
///
/// `location` is the first `Location` field of the response (a relative one is resolved against
/// `request_url`, RFC 9110 §10.2.2, and passed on unchanged). `hsts_known` answers whether a host
/// is a Known HSTS Host. Responses that are no redirect (and `304`, which is a cache answer,
/// RFC 9110 §15.4.5) give an empty decision without allocating.
pub fn audit(
    method: &Method,
    request_url: &Url,
    status: StatusCode,
    location: Option<&HeaderValue>,
    policy: RedirectPolicy,
    hsts_known: &dyn Fn(&str) -> bool,
) -> RedirectDecision {
    if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
        return RedirectDecision::default();
    }
    let subject = Subject {
        method,
        url: request_url,
        status,
    };
    let mut decision = RedirectDecision::default();

    let mut target = match location {
        None => {
            decision.findings.push(missing_location(&subject));
            None
        }
        Some(value) => match resolve(request_url, value) {
            Ok(url) => Some(url),
            Err(reason) => {
                decision
                    .findings
                    .push(bad_location(&subject, value, &reason));
                None
            }
        },
    };

    if let Some(url) = target.as_mut() {
        // RFC 6797 §8.3: a Known HSTS Host is only ever reached over https, whatever the
        // Location says; any other http target from an https page is a downgrade.
        if is_insecure(url.scheme()) {
            let known = url.domain().is_some_and(hsts_known);
            if known || is_secure(request_url.scheme()) {
                let original = url.clone();
                // The one http→https mapping of RFC 6797 §8.3 (hsts::upgrade), as for the
                // proxy's own internal redirect.
                if let Some(upgraded) = upgrade_url(url).filter(|_| known) {
                    decision.new_location = HeaderValue::from_str(upgraded.as_str()).ok();
                    *url = upgraded;
                }
                let rewritten = decision.new_location.is_some().then_some(&*url);
                decision
                    .findings
                    .push(https_downgrade(&subject, &original, rewritten));
            }
        }
    }

    // The body goes to another origin only if the client follows, so the origin is compared
    // on the final target (after an HSTS upgrade of it): https→http of the same host is another
    // origin (RFC 6454 §4), and the body would even travel in clear. Only http(s) targets are
    // followed at all (Fetch §4.4: any other scheme is a network error).
    let cross_origin_body = carries_body(method)
        && target.as_ref().is_some_and(|url| {
            matches!(url.scheme(), "http" | "https") && url.origin() != request_url.origin()
        });

    if matches!(status.as_u16(), 301 | 302) && method != Method::GET && method != Method::HEAD {
        let keep = if status == StatusCode::MOVED_PERMANENTLY {
            StatusCode::PERMANENT_REDIRECT
        } else {
            StatusCode::TEMPORARY_REDIRECT
        };
        let outcome = match policy {
            RedirectPolicy::Log => RewriteOutcome::Logged,
            // A 307/308 to another origin is exactly the body replay of Fett, Küsters, Schmitz
            // (2016, §3.1): the proxy must not create it. The client keeps its own (GET)
            // behaviour and the finding names the fix.
            RedirectPolicy::Rewrite if cross_origin_body => RewriteOutcome::Refused,
            // A Location that cannot be parsed names no origin the proxy could compare: a
            // client may still follow it by its own reading (a lenient decoder turns the bytes
            // of `caf\xe9` into a URL on another host), so a 307 could re-post the body there.
            // Never rewritten (issue 11 item 13).
            RedirectPolicy::Rewrite if location.is_some() && target.is_none() => {
                RewriteOutcome::Unparsable
            }
            RedirectPolicy::Rewrite => {
                decision.new_status = Some(keep);
                RewriteOutcome::Rewritten
            }
        };
        decision
            .findings
            .push(method_change_risk(&subject, keep, outcome, target.as_ref()));
    }

    // The status is never rewritten here (see above), so the upstream's is what the client gets.
    if cross_origin_body && replays_body(status, method) {
        if let Some(url) = target.as_ref() {
            decision
                .findings
                .push(cross_origin_body_replay(&subject, url));
        }
    }

    decision.target = target;
    decision
}

/// Whether a client would follow `status` with the same method and body (Fetch §4.4,
/// "HTTP-redirect fetch", step 12): browsers switch to GET only on 301/302 answering POST and on
/// 303; 307/308 keep everything (RFC 9110 §15.4.8, §15.4.9), and so does a 301/302 answering
/// PUT or PATCH. 300, 305 and 306 are not followed automatically.
fn replays_body(status: StatusCode, method: &Method) -> bool {
    match status.as_u16() {
        307 | 308 => true,
        301 | 302 => method != Method::POST,
        _ => false,
    }
}

/// The methods whose requests carry a body that a redirect may replay.
fn carries_body(method: &Method) -> bool {
    method == Method::POST || method == Method::PUT || method == Method::PATCH
}

/// The insecure schemes (RFC 6797 §8.3 applies to http, and browsers apply it to ws as well).
/// The WHATWG parser lowercases the scheme.
fn is_insecure(scheme: &str) -> bool {
    scheme == "http" || scheme == "ws"
}

fn is_secure(scheme: &str) -> bool {
    scheme == "https" || scheme == "wss"
}

/// Resolves a Location value against the request URL (RFC 9110 §10.2.2, RFC 3986 §5), with the
/// WHATWG URL parser that browsers use, so that what parses here is what a browser follows.
fn resolve(request_url: &Url, value: &HeaderValue) -> Result<Url, String> {
    // Browsers decode Location as UTF-8 (Fetch's "location URL"); bytes that are not UTF-8 have
    // no agreed meaning.
    let text = std::str::from_utf8(value.as_bytes()).map_err(|_| "not UTF-8".to_owned())?;
    request_url.join(text).map_err(|e| e.to_string())
}

/// "POST https://shop.test/login answered 302": the part every finding starts with.
struct Subject<'a> {
    method: &'a Method,
    url: &'a Url,
    status: StatusCode,
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} answered {}",
            self.method,
            quote_url(self.url.as_str()),
            self.status.as_u16()
        )
    }
}

/// What became of an ambiguous 301/302 under the configured policy.
#[derive(Clone, Copy)]
enum RewriteOutcome {
    Logged,
    Rewritten,
    Refused,
    Unparsable,
}

fn method_change_risk(
    subject: &Subject<'_>,
    keep: StatusCode,
    outcome: RewriteOutcome,
    target: Option<&Url>,
) -> Finding {
    let keep = keep.as_u16();
    let base = format!(
        "{subject} → use 303 to switch to GET on purpose, or {keep} to keep {}",
        subject.method
    );
    let detail = match (outcome, target) {
        (RewriteOutcome::Logged, _) => base,
        (RewriteOutcome::Rewritten, _) => {
            format!("{base} (the proxy rewrote it to {keep}: --redirect-policy rewrite)")
        }
        (RewriteOutcome::Refused, Some(url)) => format!(
            "{base} (not rewritten to {keep}: the client would re-send the body to {})",
            url.origin().ascii_serialization()
        ),
        (RewriteOutcome::Refused, None) => base,
        (RewriteOutcome::Unparsable, _) => format!(
            "{base} (not rewritten to {keep}: the Location cannot be parsed, so the proxy \
             cannot tell where the client would re-send the body)"
        ),
    };
    Finding::new(FindingKind::MethodChangeRisk, detail)
}

fn cross_origin_body_replay(subject: &Subject<'_>, target: &Url) -> Finding {
    Finding::new(
        FindingKind::CrossOriginBodyReplay,
        format!(
            "{subject} to another origin, {} → the client will re-send the request \
             body (form fields, credentials) there; answer 303 so it follows with a GET and no \
             body (Fett, Küsters, Schmitz 2016, §3.1)",
            target.origin().ascii_serialization()
        ),
    )
}

fn https_downgrade(subject: &Subject<'_>, original: &Url, rewritten: Option<&Url>) -> Finding {
    let location = quote_url(original.as_str());
    let detail = match (rewritten, original.host_str()) {
        (Some(upgraded), Some(host)) => format!(
            "{subject} with Location {location} → {host} is HSTS-known, so the proxy rewrote \
             Location to {}; send https:// Locations (RFC 6797 §8.3)",
            quote_url(upgraded.as_str())
        ),
        _ => format!(
            "{subject} with Location {location} → the client leaves HTTPS and sends the next \
             request in clear; send an https:// Location"
        ),
    };
    Finding::new(FindingKind::HttpsDowngrade, detail)
}

fn missing_location(subject: &Subject<'_>) -> Finding {
    let why = if subject.status == StatusCode::MULTIPLE_CHOICES {
        // RFC 9110 §15.4.1: optional for 300, but without it nothing can be followed.
        "add a Location field naming the preferred choice (RFC 9110 §15.4.1)"
    } else {
        "add a Location field with the target URL (RFC 9110 §15.4): clients have nowhere to go"
    };
    Finding::new(
        FindingKind::MissingLocation,
        format!("{subject} without Location → {why}"),
    )
}

fn bad_location(subject: &Subject<'_>, value: &HeaderValue, reason: &str) -> Finding {
    let shown = quote(&String::from_utf8_lossy(value.as_bytes()));
    Finding::new(
        FindingKind::BadLocation,
        format!(
            "{subject} with an unparsable Location {shown:?} ({reason}) → send an absolute \
             https:// URL or a valid relative reference (RFC 9110 §10.2.2, RFC 3986 §4.1)"
        ),
    )
}

fn quote_url(url: &str) -> String {
    quote(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use FindingKind::*;

    const GET: Method = Method::GET;
    const HEAD: Method = Method::HEAD;
    const POST: Method = Method::POST;
    const PUT: Method = Method::PUT;
    const DELETE: Method = Method::DELETE;
    const PATCH: Method = Method::PATCH;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn known(host: &str) -> bool {
        matches!(host, "hsts.test" | "shop.test")
    }

    fn run(
        method: &Method,
        request: &str,
        status: u16,
        location: Option<&[u8]>,
        policy: RedirectPolicy,
    ) -> RedirectDecision {
        let location = location.map(|l| HeaderValue::from_bytes(l).unwrap());
        audit(
            method,
            &url(request),
            StatusCode::from_u16(status).unwrap(),
            location.as_ref(),
            policy,
            &known,
        )
    }

    fn kinds(d: &RedirectDecision) -> Vec<FindingKind> {
        let mut k: Vec<_> = d.findings.iter().map(|f| f.kind).collect();
        k.sort();
        k
    }

    /// Status × method, same-origin Location, under both policies:
    /// (status, method, method_change_risk?, status sent under `rewrite`).
    #[test]
    fn status_by_method_matrix() {
        #[rustfmt::skip]
        let rows: &[(u16, Method, bool, u16)] = &[
            // RFC 9110 §15.4.2: 301 to GET/HEAD is unambiguous.
            (301, GET, false, 301), (301, HEAD, false, 301),
            // §15.4.2 note: "a user agent MAY change the request method from POST to GET".
            (301, POST, true, 308), (301, PUT, true, 308), (301, DELETE, true, 308),
            // §15.4.3: same note for 302.
            (302, GET, false, 302), (302, HEAD, false, 302),
            (302, POST, true, 307), (302, PUT, true, 307), (302, DELETE, true, 307),
            // §15.4.4: 303 always means "GET the other resource": unambiguous.
            (303, GET, false, 303), (303, HEAD, false, 303), (303, POST, false, 303),
            (303, PUT, false, 303), (303, DELETE, false, 303),
            // §15.4.8: 307 keeps the method and body.
            (307, GET, false, 307), (307, HEAD, false, 307), (307, POST, false, 307),
            (307, PUT, false, 307), (307, DELETE, false, 307),
            // §15.4.9: 308 keeps the method and body.
            (308, GET, false, 308), (308, HEAD, false, 308), (308, POST, false, 308),
            (308, PUT, false, 308), (308, DELETE, false, 308),
        ];
        for (status, method, risky, rewritten) in rows {
            let expected: Vec<FindingKind> = if *risky {
                vec![MethodChangeRisk]
            } else {
                vec![]
            };
            let log = run(
                method,
                "https://shop.test/a/form",
                *status,
                Some(b"/a/next"),
                RedirectPolicy::Log,
            );
            assert_eq!(kinds(&log), expected, "log {status} {method}");
            assert_eq!(
                log.new_status, None,
                "log never rewrites: {status} {method}"
            );
            assert_eq!(log.target, Some(url("https://shop.test/a/next")));

            let rw = run(
                method,
                "https://shop.test/a/form",
                *status,
                Some(b"/a/next"),
                RedirectPolicy::Rewrite,
            );
            assert_eq!(kinds(&rw), expected, "rewrite {status} {method}");
            let sent = rw.new_status.map_or(*status, |s| s.as_u16());
            assert_eq!(sent, *rewritten, "rewrite {status} {method}");
            assert_eq!(rw.new_status.is_some_and(|s| s.as_u16() != *status), *risky);
            assert_eq!(
                rw.new_location, None,
                "relative Location is passed on unchanged"
            );
        }
    }

    struct Row {
        why: &'static str,
        method: Method,
        request: &'static str,
        status: u16,
        location: Option<&'static [u8]>,
        policy: RedirectPolicy,
        kinds: &'static [FindingKind],
        new_status: Option<u16>,
        new_location: Option<&'static str>,
        target: Option<&'static str>,
    }

    const fn row(
        why: &'static str,
        method: Method,
        request: &'static str,
        status: u16,
        location: Option<&'static [u8]>,
    ) -> Row {
        Row {
            why,
            method,
            request,
            status,
            location,
            policy: RedirectPolicy::Log,
            kinds: &[],
            new_status: None,
            new_location: None,
            target: None,
        }
    }

    impl Row {
        fn rewrite(mut self) -> Self {
            self.policy = RedirectPolicy::Rewrite;
            self
        }
        fn kinds(mut self, kinds: &'static [FindingKind]) -> Self {
            self.kinds = kinds;
            self
        }
        fn status(mut self, s: u16) -> Self {
            self.new_status = Some(s);
            self
        }
        fn location(mut self, l: &'static str) -> Self {
            self.new_location = Some(l);
            self
        }
        fn target(mut self, t: &'static str) -> Self {
            self.target = Some(t);
            self
        }
    }

    #[test]
    fn audit_table() {
        #[rustfmt::skip]
        let rows = [
            // --- cross_origin_body_replay (Fett, Küsters, Schmitz 2016, §3.1) ---
            row("307 POST to another origin replays the form", POST, "https://rp.test/login", 307, Some(b"https://idp.test/cb")).kinds(&[CrossOriginBodyReplay]).target("https://idp.test/cb"),
            row("same under rewrite: passes unchanged", POST, "https://rp.test/login", 307, Some(b"https://idp.test/cb")).rewrite().kinds(&[CrossOriginBodyReplay]).target("https://idp.test/cb"),
            row("308 PUT to another origin replays the body", PUT, "https://a.test/x", 308, Some(b"https://b.test/x")).kinds(&[CrossOriginBodyReplay]).target("https://b.test/x"),
            row("307 PATCH to another origin replays the body", PATCH, "https://a.test/x", 307, Some(b"https://b.test/x")).kinds(&[CrossOriginBodyReplay]).target("https://b.test/x"),
            row("RFC 6454 §4: another port is another origin", POST, "https://a.test/x", 307, Some(b"https://a.test:8443/x")).kinds(&[CrossOriginBodyReplay]).target("https://a.test:8443/x"),
            row("307 GET carries no body: nothing replayed", GET, "https://a.test/x", 307, Some(b"https://b.test/x")).target("https://b.test/x"),
            row("Fetch §4.4: a non-http(s) target is not followed", POST, "https://a.test/x", 307, Some(b"mailto:help@a.test")).target("mailto:help@a.test"),
            row("307 DELETE carries no body", DELETE, "https://a.test/x", 307, Some(b"https://b.test/x")).target("https://b.test/x"),
            row("307 POST to the same origin is the intended use of 307", POST, "https://a.test/x", 307, Some(b"https://a.test/y")).target("https://a.test/y"),
            row("303 is the fix: GET without body (§15.4.4)", POST, "https://rp.test/login", 303, Some(b"https://idp.test/cb")).target("https://idp.test/cb"),
            row("Fetch §4.4: 302 POST becomes GET in browsers, no replay", POST, "https://rp.test/login", 302, Some(b"https://idp.test/cb")).kinds(&[MethodChangeRisk]).target("https://idp.test/cb"),
            row("rewrite refuses to turn a cross-origin 302 POST into a replaying 307", POST, "https://rp.test/login", 302, Some(b"https://idp.test/cb")).rewrite().kinds(&[MethodChangeRisk]).target("https://idp.test/cb"),
            row("Fetch §4.4: 302 PUT keeps PUT and its body", PUT, "https://a.test/x", 302, Some(b"https://b.test/x")).kinds(&[MethodChangeRisk, CrossOriginBodyReplay]).target("https://b.test/x"),
            row("301 PUT cross-origin under rewrite: left as 301", PUT, "https://a.test/x", 301, Some(b"https://b.test/x")).rewrite().kinds(&[MethodChangeRisk, CrossOriginBodyReplay]).target("https://b.test/x"),
            row("302 POST same origin under rewrite becomes 307 (§15.4.8)", POST, "https://a.test/x", 302, Some(b"/y")).rewrite().kinds(&[MethodChangeRisk]).status(307).target("https://a.test/y"),
            row("302 DELETE cross-origin under rewrite becomes 307: no body to replay", DELETE, "https://a.test/x", 302, Some(b"https://b.test/x")).rewrite().kinds(&[MethodChangeRisk]).status(307).target("https://b.test/x"),
            // --- https_downgrade ---
            row("https page redirected to http", GET, "https://a.test/", 302, Some(b"http://b.test/")).kinds(&[HttpsDowngrade]).target("http://b.test/"),
            row("https to http of the same host, POST 307: body in clear to another origin", POST, "https://a.test/f", 307, Some(b"http://a.test/f")).kinds(&[CrossOriginBodyReplay, HttpsDowngrade]).target("http://a.test/f"),
            row("https to ws is a downgrade too", GET, "https://a.test/", 302, Some(b"ws://b.test/s")).kinds(&[HttpsDowngrade]).target("ws://b.test/s"),
            row("https to https: fine", GET, "https://a.test/", 302, Some(b"https://b.test/")).target("https://b.test/"),
            row("http to http of a host not HSTS-known: nothing to enforce", GET, "http://a.test/", 302, Some(b"http://b.test/")).target("http://b.test/"),
            row("RFC 6797 §8.3: http Location to a Known HSTS Host is rewritten", GET, "http://a.test/", 302, Some(b"http://hsts.test/p?q=1")).kinds(&[HttpsDowngrade]).location("https://hsts.test/p?q=1").target("https://hsts.test/p?q=1"),
            row("§8.3: explicit port 80 becomes 443", GET, "https://a.test/", 301, Some(b"http://hsts.test:80/")).kinds(&[HttpsDowngrade]).location("https://hsts.test/").target("https://hsts.test/"),
            row("§8.3: any other explicit port is kept", GET, "https://a.test/", 301, Some(b"http://hsts.test:8080/x#top")).kinds(&[HttpsDowngrade]).location("https://hsts.test:8080/x#top").target("https://hsts.test:8080/x#top"),
            row("network-path reference from http to a Known HSTS Host", GET, "http://a.test/", 302, Some(b"//hsts.test/x")).kinds(&[HttpsDowngrade]).location("https://hsts.test/x").target("https://hsts.test/x"),
            row("once upgraded to the same https origin, the 307 POST replays nothing", POST, "https://shop.test/f", 307, Some(b"http://shop.test/g")).kinds(&[HttpsDowngrade]).location("https://shop.test/g").target("https://shop.test/g"),
            row("RFC 6797 §8.1.1: IP literals are never HSTS hosts", GET, "http://a.test/", 302, Some(b"http://10.0.0.1/")).target("http://10.0.0.1/"),
            // --- relative Locations (RFC 9110 §10.2.2) ---
            row("relative path is resolved for the audit, passed on unchanged", GET, "https://a.test/d/e?x", 302, Some(b"../f?y=1")).target("https://a.test/f?y=1"),
            row("RFC 3986 §5.2: an empty reference is the request URL itself", GET, "https://a.test/d", 302, Some(b"")).target("https://a.test/d"),
            row("browsers decode a UTF-8 Location and percent-encode it", GET, "https://a.test/", 302, Some("/café".as_bytes())).target("https://a.test/caf%C3%A9"),
            // --- missing_location / bad_location ---
            row("RFC 9110 §15.4: a redirect without Location", GET, "https://a.test/", 302, None).kinds(&[MissingLocation]),
            row("§15.4.1: 300 without Location has nothing to follow", GET, "https://a.test/", 300, None).kinds(&[MissingLocation]),
            row("302 POST without Location: both problems are reported", POST, "https://a.test/", 302, None).kinds(&[MethodChangeRisk, MissingLocation]),
            row("WHATWG URL: a space in the host is invalid", GET, "https://a.test/", 302, Some(b"http://exa mple.test/")).kinds(&[BadLocation]),
            row("unterminated IPv6 literal", GET, "https://a.test/", 302, Some(b"http://[::1/")).kinds(&[BadLocation]),
            row("empty host", GET, "https://a.test/", 302, Some(b"https://")).kinds(&[BadLocation]),
            row("non-UTF-8 bytes (obs-text) have no agreed meaning", GET, "https://a.test/", 302, Some(b"/caf\xe9")).kinds(&[BadLocation]),
            // --- an unparsable Location is never rewritten (issue 11 item 13) ---
            row("non-UTF-8 Location on a 302 POST under rewrite: left as 302, no cross-origin 307", POST, "https://rp.test/login", 302, Some(b"http://idp.other.test/login/caf\xe9")).rewrite().kinds(&[MethodChangeRisk, BadLocation]),
            row("non-UTF-8 Location on a 301 PUT under rewrite: left as 301", PUT, "https://rp.test/x", 301, Some(b"/caf\xe9")).rewrite().kinds(&[MethodChangeRisk, BadLocation]),
            row("WHATWG-invalid Location on a 302 POST under rewrite: left as 302", POST, "https://rp.test/login", 302, Some(b"http://exa mple.test/")).rewrite().kinds(&[MethodChangeRisk, BadLocation]),
            row("a missing Location has nothing to follow: the 302 POST is still rewritten", POST, "https://rp.test/login", 302, None).rewrite().kinds(&[MethodChangeRisk, MissingLocation]).status(307),
            // --- responses that are not audited ---
            row("RFC 9110 §15.4.5: 304 is a cache answer, no Location needed", GET, "https://a.test/", 304, None),
            row("304 with an http Location is still no redirect", GET, "https://a.test/", 304, Some(b"http://b.test/")),
            row("201 Created carries a Location but is no redirect", POST, "https://a.test/", 201, Some(b"http://b.test/new")),
            row("200 is no redirect", POST, "https://a.test/", 200, None),
        ];
        for r in rows {
            let d = run(&r.method, r.request, r.status, r.location, r.policy);
            let mut expected = r.kinds.to_vec();
            expected.sort();
            assert_eq!(kinds(&d), expected, "{}", r.why);
            assert_eq!(d.new_status.map(|s| s.as_u16()), r.new_status, "{}", r.why);
            assert_eq!(
                d.new_location.as_ref().map(|v| v.to_str().unwrap()),
                r.new_location,
                "{}",
                r.why
            );
            assert_eq!(d.target.as_ref().map(Url::as_str), r.target, "{}", r.why);
        }
    }

    #[test]
    fn detail_sentences_say_what_to_fix() {
        let d = run(
            &POST,
            "https://shop.test/login",
            302,
            Some(b"/account"),
            RedirectPolicy::Log,
        );
        assert_eq!(
            d.findings[0].detail,
            "POST https://shop.test/login answered 302 → use 303 to switch to GET on purpose, or 307 to keep POST"
        );
        let d = run(
            &PUT,
            "https://shop.test/item",
            301,
            Some(b"/item2"),
            RedirectPolicy::Rewrite,
        );
        assert!(
            d.findings[0].detail.contains("or 308 to keep PUT"),
            "{}",
            d.findings[0].detail
        );
        assert!(
            d.findings[0].detail.contains("rewrote it to 308"),
            "{}",
            d.findings[0].detail
        );

        let d = run(
            &POST,
            "https://rp.test/login",
            302,
            Some(b"https://idp.test/cb"),
            RedirectPolicy::Rewrite,
        );
        assert!(
            d.findings[0].detail.contains("not rewritten to 307"),
            "{}",
            d.findings[0].detail
        );
        assert!(
            d.findings[0].detail.contains("https://idp.test"),
            "{}",
            d.findings[0].detail
        );

        let d = run(
            &POST,
            "https://rp.test/login",
            307,
            Some(b"https://idp.test/cb"),
            RedirectPolicy::Log,
        );
        let detail = &d.findings[0].detail;
        assert!(
            detail.starts_with("POST https://rp.test/login answered 307"),
            "{detail}"
        );
        assert!(
            detail.contains("https://idp.test") && detail.contains("answer 303"),
            "{detail}"
        );

        let d = run(
            &GET,
            "http://a.test/",
            302,
            Some(b"http://hsts.test/"),
            RedirectPolicy::Log,
        );
        assert!(d.findings[0]
            .detail
            .contains("rewrote Location to https://hsts.test/"));

        let d = run(
            &POST,
            "https://rp.test/login",
            302,
            Some(b"http://idp.other.test/login/caf\xe9"),
            RedirectPolicy::Rewrite,
        );
        let risk = d
            .findings
            .iter()
            .find(|f| f.kind == MethodChangeRisk)
            .unwrap();
        assert!(
            risk.detail.contains("not rewritten to 307")
                && risk.detail.contains("cannot be parsed"),
            "{}",
            risk.detail
        );

        let long = format!("http://exa mple.test/{}", "x".repeat(5000));
        let d = run(
            &GET,
            "https://a.test/",
            302,
            Some(long.as_bytes()),
            RedirectPolicy::Log,
        );
        assert!(d.findings[0].detail.len() < 600, "quoted Location is cut");
    }

    #[test]
    fn non_redirect_is_empty_and_allocates_nothing() {
        let d = run(
            &GET,
            "https://a.test/",
            200,
            Some(b"/x"),
            RedirectPolicy::Rewrite,
        );
        assert_eq!(d, RedirectDecision::default());
        assert_eq!(d.findings.capacity(), 0);
        assert!(d.new_status.is_none() && d.new_location.is_none());
    }

    #[test]
    fn apply_sets_status_location_and_drops_reason_phrase() {
        // Same origin once the Location is moved to https: both the status and Location change.
        let d = run(
            &POST,
            "https://shop.test/f",
            302,
            Some(b"http://shop.test/x"),
            RedirectPolicy::Rewrite,
        );
        let mut parts = http::Response::builder()
            .status(302)
            .header(LOCATION, "http://shop.test/x")
            .header(LOCATION, "http://elsewhere.test/")
            .extension(hyper::ext::ReasonPhrase::from_static(b"Found"))
            .body(())
            .unwrap()
            .into_parts()
            .0;
        d.apply(&mut parts);
        assert_eq!(parts.status, StatusCode::TEMPORARY_REDIRECT);
        assert!(parts.extensions.get::<hyper::ext::ReasonPhrase>().is_none());
        let locations: Vec<_> = parts.headers.get_all(LOCATION).iter().collect();
        assert_eq!(locations, [HeaderValue::from_static("https://shop.test/x")]);
        assert_eq!(d.new_status, Some(StatusCode::TEMPORARY_REDIRECT));

        // An unchanged decision leaves the reason phrase alone.
        let mut parts = http::Response::builder()
            .status(303)
            .extension(hyper::ext::ReasonPhrase::from_static(b"See Other"))
            .body(())
            .unwrap()
            .into_parts()
            .0;
        RedirectDecision::default().apply(&mut parts);
        assert!(parts.extensions.get::<hyper::ext::ReasonPhrase>().is_some());
    }
}
