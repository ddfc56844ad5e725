//! The router: one pure function from where a request came in, its head, a view of the HSTS
//! store and the policy to ONE decision — reject (with the answer), a local page, the HSTS
//! upgrade, forward to a target, or open a CONNECT tunnel. The listener, the CONNECT path and
//! the requests inside tunnels all go through it, so admission and the loop check are written
//! once, in pipeline order:
//!
//! 1. admission: proxy credentials (listener requests and CONNECT; tunnel requests were
//!    admitted with their CONNECT)
//! 2. the request target: length, form (absolute, authority for CONNECT, origin inside a
//!    tunnel), scheme, port; an origin-form request for the local page by `Host`
//!    — and one spelling of its host (`hsts::host::normalize_target_host`; an empty label
//!    such as `known.test..` is a `400`, so the HSTS match and DNS cannot disagree)
//! 3. loops: a `Via` naming this proxy, a target that is this proxy's own listener (`508`)
//! 4. destinations known without DNS: the admin listener, and local ranges for a client on
//!    the network (`403`; `destination` decides, the connector checks DNS answers again)
//! 5. the local pages (`http://strictproxy.local/`)
//! 6. HSTS (RFC 6797 §8.3): plain HTTP to a host the operator exempted (`--hsts-exempt`) is
//!    forwarded as `hsts_exempt`; plain HTTP to a known host → `307 Internal Redirect`
//! 7. forward (or, for CONNECT, tunnel blindly or intercept)

use crate::hsts::exempt::Exemptions;
use crate::hsts::host::normalize_target_host;
use crate::proxy::body::ProxyBody;
use crate::proxy::destination::{Destinations, Verdict};
use crate::proxy::guard::{self, Credentials};
use crate::proxy::headers::via_contains;
use crate::proxy::pages;
use crate::proxy::resolve::AddressBook;
use crate::proxy::respond;
use crate::proxy::target::{self, Target, TargetError};
use http::uri::Authority;
use http::{Method, Request, Response, Uri};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Where a request came in.
#[derive(Clone, Debug)]
pub enum Ingress {
    /// On the proxy listener: absolute form, or a CONNECT.
    Listener,
    /// Inside a CONNECT tunnel to `authority`; `secure` when the tunnel is intercepted TLS.
    Tunnel { authority: Authority, secure: bool },
}

/// What the router reads besides the request and the HSTS store: fixed at start.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The credentials clients must present (`--auth`), if any.
    pub credentials: Option<Credentials>,
    /// The longest request target accepted (`max_uri_bytes`); past it, `414`.
    pub max_uri_bytes: usize,
    /// This proxy's received-by token in `Via`, unique per process, for loop detection.
    pub pseudonym: String,
    /// The address the listener is bound to (the real port when 0 was asked for).
    pub listen: SocketAddr,
    /// `--passthrough` patterns: CONNECTs to these hosts are tunnelled blindly.
    pub passthrough: Vec<String>,
    /// The addresses known without DNS (`--resolve`, the hosts file).
    pub book: Arc<AddressBook>,
    /// The admin listener and `allow_private_destinations`.
    pub destinations: Destinations,
    /// `--hsts-exempt`: the only hosts never upgraded.
    pub exemptions: Exemptions,
}

impl Policy {
    /// The refusal for a destination whose addresses are known without DNS (names only DNS
    /// can answer are checked by the upstream connector, on the address it connects to).
    /// `host` is normalized (the router's spelling).
    fn destination_refusal(&self, client: IpAddr, host: &str, port: u16) -> Option<Refusal> {
        let (addrs, source) = self.book.lookup_local_normalized(host)?;
        addrs.into_iter().find_map(|ip| {
            let dest = SocketAddr::new(ip, port);
            match self.destinations.check(Some(client), dest, source) {
                Verdict::Allow => None,
                Verdict::Refuse(rule) => {
                    // An IPv6 literal is named in brackets, as in the request (RFC 3986 §3.2.2).
                    let shown = if host.contains(':') {
                        format!("[{host}]:{port}")
                    } else {
                        format!("{host}:{port}")
                    };
                    Some(Refusal::Forbidden(format!(
                        "{shown} is not reachable through this proxy: {rule}"
                    )))
                }
            }
        })
    }

    /// Whether `host:port` (after `--resolve`) is this proxy's own listener: forwarding there
    /// would loop.
    ///
    /// `host` is normalized (the router's spelling: both of its paths normalize first).
    pub fn targets_self(&self, host: &str, port: u16) -> bool {
        let mapped = self.book.override_for_normalized(host);
        guard::targets_listener(host, port, mapped, self.listen)
    }

    fn is_passthrough(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.passthrough
            .iter()
            .any(|pattern| crate::config::passthrough_matches(pattern, host))
    }
}

/// Why the proxy answers a request itself with an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `407`: credentials missing or wrong.
    AuthRequired,
    /// `414`: the target is longer than `max_uri_bytes`.
    UriTooLong { limit: usize },
    /// `400`: the target (or a CONNECT authority) is malformed; the text says how.
    BadRequest(String),
    /// `508`: the request would come back to this proxy.
    Loop(String),
    /// `403`: the destination is not reachable through the proxy; the text says why.
    Forbidden(String),
}

impl Refusal {
    /// The answer, built by the named constructors of [`respond`].
    pub fn response(&self) -> Response<ProxyBody> {
        match self {
            Refusal::AuthRequired => respond::proxy_auth_required(),
            Refusal::UriTooLong { limit } => respond::uri_too_long(*limit),
            Refusal::BadRequest(message) => respond::bad_request(message),
            Refusal::Loop(message) => respond::loop_detected(message),
            Refusal::Forbidden(reason) => respond::forbidden(reason),
        }
    }
}

/// A CONNECT the router admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectTarget {
    /// Lowercase, IPv6 literals without brackets.
    pub host: String,
    pub port: u16,
    pub authority: Authority,
    /// `--passthrough`: a blind tunnel; otherwise the tunnel is intercepted.
    pub passthrough: bool,
}

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Answer with an error of the proxy's own.
    Reject(Refusal),
    /// Serve this path of the local site.
    LocalPage { path: String },
    /// RFC 6797 §8.3: answer `307 Internal Redirect` to this `https://` location.
    HstsUpgrade { location: Uri },
    /// Send the request in clear to a host the operator exempted from HSTS (`pattern`).
    HstsExempt { target: Target, pattern: String },
    /// Send the request to this target.
    Forward(Target),
    /// Open a CONNECT tunnel.
    Connect(ConnectTarget),
}

/// The decision and the URL the traffic log records for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    pub url: String,
    pub decision: Decision,
}

/// Routes one request. `hsts_enforced` is the HSTS store's answer for a host.
pub fn route<B>(
    ingress: &Ingress,
    client: IpAddr,
    req: &Request<B>,
    hsts_enforced: &dyn Fn(&str) -> bool,
    policy: &Policy,
) -> Routed {
    let raw_url = || req.uri().to_string();
    let reject = |url: String, refusal: Refusal| Routed {
        url,
        decision: Decision::Reject(refusal),
    };

    // 1. Admission. Requests inside a tunnel were admitted with their CONNECT.
    if matches!(ingress, Ingress::Listener) {
        if let Some(credentials) = &policy.credentials {
            if !credentials.accepts(req.headers()) {
                return reject(raw_url(), Refusal::AuthRequired);
            }
        }
    }
    if matches!(ingress, Ingress::Listener) && req.method() == Method::CONNECT {
        return route_connect(client, req.uri(), policy);
    }

    // 2. Target.
    let target_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    if target_len > policy.max_uri_bytes {
        return reject(
            raw_url(),
            Refusal::UriTooLong {
                limit: policy.max_uri_bytes,
            },
        );
    }
    let parsed = match ingress {
        Ingress::Listener => target::parse_absolute(req.uri()),
        Ingress::Tunnel { authority, secure } => {
            target::inner_target(req.uri(), authority, *secure)
        }
    };
    let mut target = match parsed {
        Ok(target) => target,
        Err(TargetError::NotAbsolute(_)) if pages::is_local_host(req.headers()) => {
            return Routed {
                url: raw_url(),
                decision: Decision::LocalPage {
                    path: req.uri().path().to_string(),
                },
            };
        }
        Err(err) => return reject(raw_url(), Refusal::BadRequest(err.to_string())),
    };
    let url = target.url();
    match normalize_target_host(&target.host) {
        Some(host) => target.host = host.into_owned(),
        None => return reject(url, Refusal::BadRequest(bad_host(&target.host))),
    }

    // 3. Loops.
    if via_contains(req.headers(), &policy.pseudonym) {
        return reject(
            url,
            Refusal::Loop(
                "this request already passed through this proxy (its Via field names it)"
                    .to_string(),
            ),
        );
    }
    if policy.targets_self(&target.host, target.port) {
        let message = format!(
            "{} is this proxy's own address; forwarding it would loop",
            target.authority
        );
        return reject(url, Refusal::Loop(message));
    }

    // 4. Destinations known without DNS.
    if let Some(refusal) = policy.destination_refusal(client, &target.host, target.port) {
        return reject(url, refusal);
    }

    // 5. Local pages.
    if pages::is_local_name(&target.host) {
        return Routed {
            url,
            decision: Decision::LocalPage {
                path: req.uri().path().to_string(),
            },
        };
    }

    // 6. HSTS enforcement (RFC 6797 §8.3): a known host is never contacted in clear — unless
    // the operator exempted it, the one way out, and visible as such in the log.
    if !target.scheme.is_secure() {
        if let Some(pattern) = policy.exemptions.matches(&target.host) {
            let pattern = pattern.to_string();
            return Routed {
                url,
                decision: Decision::HstsExempt { target, pattern },
            };
        }
    }
    if !target.scheme.is_secure() && hsts_enforced(&target.host) {
        if let Some(location) = url
            .parse::<Uri>()
            .ok()
            .and_then(|uri| crate::hsts::upgrade::upgrade_uri(&uri))
        {
            return Routed {
                url,
                decision: Decision::HstsUpgrade { location },
            };
        }
    }

    // 7. Forward.
    Routed {
        url,
        decision: Decision::Forward(target),
    }
}

/// The 400 text for a host with no single spelling (issue 11 item 14).
fn bad_host(host: &str) -> String {
    format!("the host `{host}` is not a valid host name (an empty label, such as a second trailing dot?)")
}

/// The CONNECT branch of [`route`] (RFC 9110 §9.3.6), after admission.
fn route_connect(client: IpAddr, uri: &Uri, policy: &Policy) -> Routed {
    let url = uri.to_string();
    let reject = |url: String, refusal: Refusal| Routed {
        url,
        decision: Decision::Reject(refusal),
    };
    let (host, port, authority) = match target::parse_connect(uri) {
        Ok(parsed) => parsed,
        Err(err) => return reject(url, Refusal::BadRequest(err.to_string())),
    };
    let host = match normalize_target_host(&host) {
        Some(normal) => normal.into_owned(),
        None => return reject(url, Refusal::BadRequest(bad_host(&host))),
    };
    if policy.targets_self(&host, port) {
        let message = format!("CONNECT {authority} targets this proxy's own address");
        return reject(url, Refusal::Loop(message));
    }
    if let Some(refusal) = policy.destination_refusal(client, &host, port) {
        return reject(url, refusal);
    }
    let passthrough = policy.is_passthrough(&host);
    Routed {
        url,
        decision: Decision::Connect(ConnectTarget {
            host,
            port,
            authority,
            passthrough,
        }),
    }
}

#[cfg(test)]
mod tests {
    //! One row per rule, in pipeline order, in the style of mitmproxy's playbook tests: the
    //! request as it arrives → the one decision.
    use super::*;
    use base64::Engine;

    const PORT: u16 = 8080;
    const ADMIN: u16 = 8081;

    fn policy(auth: bool) -> Policy {
        let mut resolve = std::collections::HashMap::new();
        resolve.insert("loop.test".to_string(), IpAddr::from([127, 0, 0, 1]));
        resolve.insert("admin.test".to_string(), IpAddr::from([127, 0, 0, 1]));
        Policy {
            credentials: auth.then(|| Credentials::new("alice", "s3cret")),
            max_uri_bytes: 64,
            pseudonym: "strictproxy-0000abcd".to_string(),
            listen: SocketAddr::from(([127, 0, 0, 1], PORT)),
            passthrough: vec!["*.pinned.test".to_string()],
            book: Arc::new(AddressBook::new(&resolve, Default::default())),
            destinations: Destinations {
                admin: Some(SocketAddr::from(([127, 0, 0, 1], ADMIN))),
                allow_private: vec![],
            },
            exemptions: Exemptions::new(&["printer.lan".to_string(), "*.lab.test".to_string()]),
        }
    }

    fn local() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    fn lan() -> IpAddr {
        IpAddr::from([192, 168, 1, 20])
    }

    fn listener() -> Ingress {
        Ingress::Listener
    }

    fn tunnel(secure: bool) -> Ingress {
        Ingress::Tunnel {
            authority: "known.test:443".parse().unwrap(),
            secure,
        }
    }

    /// What a row expects, compared on the parts that matter.
    #[derive(Debug, PartialEq)]
    enum Expect {
        Reject(u16),
        Local(&'static str),
        Upgrade(&'static str),
        Forward(&'static str),
        Exempt(&'static str),
        Connect(&'static str, bool),
    }

    fn summarize(decision: &Decision) -> Expect {
        match decision {
            Decision::Reject(refusal) => Expect::Reject(refusal.response().status().as_u16()),
            Decision::LocalPage { path } => Expect::Local(Box::leak(path.clone().into_boxed_str())),
            Decision::HstsUpgrade { location } => {
                Expect::Upgrade(Box::leak(location.to_string().into_boxed_str()))
            }
            Decision::Forward(target) => Expect::Forward(Box::leak(target.url().into_boxed_str())),
            Decision::HstsExempt { pattern, .. } => {
                Expect::Exempt(Box::leak(pattern.clone().into_boxed_str()))
            }
            Decision::Connect(t) => {
                Expect::Connect(Box::leak(t.host.clone().into_boxed_str()), t.passthrough)
            }
        }
    }

    /// name, `--auth` set, ingress, method, target, headers, expected decision.
    type Row<'a> = (
        &'a str,
        bool,
        Ingress,
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Expect,
    );

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn one_decision_per_rule_in_pipeline_order() {
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
        );
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:wrong")
        );
        let long = format!("http://a.test/{}", "x".repeat(80));
        let via = "1.1 strictproxy-0000abcd";
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            // 1. Admission (RFC 9110 §11.7.1): 407 without or with wrong credentials.
            ("auth missing", true, listener(), "GET", "http://a.test/", vec![], Expect::Reject(407)),
            ("auth wrong", true, listener(), "GET", "http://a.test/", vec![("proxy-authorization", &bad)], Expect::Reject(407)),
            ("auth good", true, listener(), "GET", "http://a.test/", vec![("proxy-authorization", &good)], Expect::Forward("http://a.test/")),
            ("CONNECT auth missing", true, listener(), "CONNECT", "a.test:443", vec![], Expect::Reject(407)),
            // Requests inside a tunnel were admitted with their CONNECT.
            ("tunnel needs no auth", true, tunnel(true), "GET", "/", vec![], Expect::Forward("https://known.test:443/")),
            // 2. Target.
            ("URI too long", false, listener(), "GET", &long, vec![], Expect::Reject(414)),
            // RFC 9112 §3.2.2: a proxy gets absolute form.
            ("not absolute", false, listener(), "GET", "/path", vec![("host", "a.test")], Expect::Reject(400)),
            ("local page by Host", false, listener(), "GET", "/ca.pem", vec![("host", "strictproxy.local")], Expect::Local("/ca.pem")),
            ("bad scheme", false, listener(), "GET", "ftp://a.test/", vec![], Expect::Reject(400)),
            ("bad port", false, listener(), "GET", "http://a.test:99999/", vec![], Expect::Reject(400)),
            // One spelling per host (issue 11 item 14): an empty label is no host.
            ("empty label", false, listener(), "GET", "http://known.test../", vec![], Expect::Reject(400)),
            ("empty label in the middle", false, listener(), "GET", "http://a..test/", vec![], Expect::Reject(400)),
            // 3. Loops (RFC 9110 §7.6.3 Via; RFC 5842 §7.2 508).
            ("Via names this proxy", false, listener(), "GET", "http://a.test/", vec![("via", via)], Expect::Reject(508)),
            ("own address", false, listener(), "GET", "http://127.0.0.1:8080/", vec![], Expect::Reject(508)),
            ("own address by localhost", false, listener(), "GET", "http://localhost:8080/", vec![], Expect::Reject(508)),
            ("own address by --resolve", false, listener(), "GET", "http://loop.test:8080/", vec![], Expect::Reject(508)),
            // 4. Destinations (issue 11 items 1–2): the admin API by every form, 403.
            ("admin by IP", false, listener(), "GET", "http://127.0.0.1:8081/hsts", vec![], Expect::Reject(403)),
            ("admin by localhost", false, listener(), "DELETE", "http://localhost:8081/hsts/bank.example", vec![], Expect::Reject(403)),
            ("admin by [::1]", false, listener(), "GET", "http://[::1]:8081/hsts", vec![], Expect::Reject(403)),
            ("admin by 0.0.0.0", false, listener(), "GET", "http://0.0.0.0:8081/hsts", vec![], Expect::Reject(403)),
            ("admin by --resolve", false, listener(), "GET", "http://admin.test:8081/hsts", vec![], Expect::Reject(403)),
            ("CONNECT to admin", false, listener(), "CONNECT", "127.0.0.1:8081", vec![], Expect::Reject(403)),
            // A loopback client reaches its own machine's other services by literal…
            ("loopback client to a local port", false, listener(), "GET", "http://127.0.0.1:9000/", vec![], Expect::Forward("http://127.0.0.1:9000/")),
            // …a client on the network does not, by any name known without DNS.
            ("LAN client to a local port", false, listener(), "GET", "http://127.0.0.1:9000/", vec![], Expect::Reject(403)),
            ("LAN client to localhost", false, listener(), "GET", "http://localhost:9000/", vec![], Expect::Reject(403)),
            ("LAN client to metadata", false, listener(), "GET", "http://169.254.169.254/latest", vec![], Expect::Reject(403)),
            ("LAN client CONNECT to loopback", false, listener(), "CONNECT", "127.0.0.1:9443", vec![], Expect::Reject(403)),
            ("LAN client to a public name", false, listener(), "GET", "http://a.test/", vec![], Expect::Forward("http://a.test/")),
            // 5. Local pages by name.
            ("local page by name", false, listener(), "GET", "http://strictproxy.local/", vec![], Expect::Local("/")),
            // 6. HSTS (RFC 6797 §8.3): plain HTTP to a known host is upgraded, never sent.
            ("HSTS upgrade", false, listener(), "GET", "http://known.test/p?q", vec![], Expect::Upgrade("https://known.test/p?q")),
            ("HSTS upgrade keeps the port", false, listener(), "GET", "http://known.test:8081/", vec![], Expect::Upgrade("https://known.test:8081/")),
            ("HSTS upgrade inside a plain tunnel", false, tunnel(false), "GET", "/", vec![], Expect::Upgrade("https://known.test:443/")),
            // The operator's exemption is the only way out of HSTS, exact or by domain.
            ("exempt host, known", false, listener(), "GET", "http://printer.lan/", vec![], Expect::Exempt("printer.lan")),
            ("exempt domain", false, listener(), "GET", "http://dev.lab.test/", vec![], Expect::Exempt("*.lab.test")),
            ("exempt inside a plain tunnel", false, Ingress::Tunnel { authority: "printer.lan:80".parse().unwrap(), secure: false }, "GET", "/", vec![], Expect::Exempt("printer.lan")),
            ("exempt host over https is forwarded", false, listener(), "GET", "https://printer.lan/", vec![], Expect::Forward("https://printer.lan/")),
            // 7. Forward.
            ("secure to a known host", false, tunnel(true), "GET", "/", vec![], Expect::Forward("https://known.test:443/")),
            ("plain to an unknown host", false, listener(), "POST", "http://a.test/form", vec![], Expect::Forward("http://a.test/form")),
            // CONNECT (RFC 9110 §9.3.6).
            ("CONNECT intercepted", false, listener(), "CONNECT", "a.test:443", vec![], Expect::Connect("a.test", false)),
            ("CONNECT passthrough", false, listener(), "CONNECT", "x.pinned.test:443", vec![], Expect::Connect("x.pinned.test", true)),
            ("CONNECT without a port", false, listener(), "CONNECT", "a.test", vec![], Expect::Reject(400)),
            ("CONNECT to this proxy", false, listener(), "CONNECT", "127.0.0.1:8080", vec![], Expect::Reject(508)),
        ];
        let hsts = |host: &str| host == "known.test" || host == "printer.lan";
        for (name, auth, ingress, method, uri, headers, expected) in rows {
            let client = if name.starts_with("LAN ") {
                lan()
            } else {
                local()
            };
            let req = request(method, uri, &headers);
            let routed = route(&ingress, client, &req, &hsts, &policy(auth));
            assert_eq!(summarize(&routed.decision), expected, "{name}");
            assert!(!routed.url.is_empty(), "{name}: the log gets a URL");
        }
    }

    #[test]
    fn a_uri_too_long_is_logged_with_its_url() {
        let long = format!("http://a.test/{}", "x".repeat(80));
        let routed = route(
            &listener(),
            local(),
            &request("GET", &long, &[]),
            &|_| false,
            &policy(false),
        );
        assert_eq!(routed.url, long);
    }
}
