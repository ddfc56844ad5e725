//! The request pipeline: one clear sequence of steps over `http::Request`/`http::Response`
//! for every request, whether it arrived in absolute form on the listener or inside an
//! intercepted CONNECT tunnel.
//!
//! 1. admission (credentials, loop protection)
//! 2. target (absolute-form or tunnel authority)
//! 3. local pages (`http://strictproxy.local/`)
//! 4. HSTS enforcement: plain HTTP to a known host → 307 Internal Redirect, answered here
//! 5. forward upstream (hop-by-hop stripped, Via added, body streamed), waiting at most
//!    `response_timeout` for the head; a head that must not be relayed (both length fields,
//!    an unasked `101`) is refused with `502`; every failure says who failed (client,
//!    upstream, proxy) in its status, log line and metric
//! 6. on the response: learn STS (secure only), audit/rewrite redirects, track loops
//! 7. relay the response (hop-by-hop stripped, Via added) and log when its body ends
//!
//! The decisions in steps 4 and 6 are pure functions in `hsts` and `redirect`.

use crate::hsts::{learn, upgrade};

use crate::proxy::body::{self, ClientBodyState, Counted, FromClient, Observed, ProxyBody};
use crate::proxy::errors::Culprit;
use crate::proxy::exchange::Exchange;
use crate::proxy::headers::{append_via, is_websocket_upgrade, strip_hop_by_hop, via_contains};
use crate::proxy::target::{self, Target, TargetError};
use crate::proxy::upstream::{check_response_head, response_within, ForwardError};
use crate::proxy::{errors, pages, respond, Shared};
use crate::redirect;
use crate::traffic::Action;
use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where a request came in.
#[derive(Clone, Debug)]
pub enum Entry {
    /// On the proxy listener, in absolute form.
    Listener,
    /// Inside a CONNECT tunnel to `authority`; `secure` when the tunnel is intercepted TLS.
    Tunnel { authority: Authority, secure: bool },
}

/// Runs the pipeline for one request. Never fails: every problem becomes a response.
pub async fn handle(
    shared: Arc<Shared>,
    client: SocketAddr,
    entry: Entry,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    // 1. Admission. Requests inside a tunnel were admitted with their CONNECT.
    if matches!(entry, Entry::Listener) {
        if let Some(credentials) = &shared.credentials {
            if !credentials.accepts(req.headers()) {
                let exchange = Exchange::begin(client, req.method().clone(), req.uri().to_string())
                    .request_head(req.headers(), req.version());
                return answer(
                    &shared,
                    exchange,
                    respond::proxy_auth_required(),
                    Action::Error,
                );
            }
        }
    }

    // 2. Target.
    let target_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    if target_len > shared.config.max_uri_bytes {
        let exchange = Exchange::begin(client, req.method().clone(), String::new())
            .request_head(req.headers(), req.version());
        return answer(
            &shared,
            exchange,
            respond::uri_too_long(shared.config.max_uri_bytes),
            Action::Error,
        );
    }
    let parsed = match &entry {
        Entry::Listener => target::parse_absolute(req.uri()),
        Entry::Tunnel { authority, secure } => target::inner_target(req.uri(), authority, *secure),
    };
    let target = match parsed {
        Ok(target) => target,
        Err(TargetError::NotAbsolute(_)) if pages::is_local_host(req.headers()) => {
            let exchange = Exchange::begin(client, req.method().clone(), req.uri().to_string())
                .request_head(req.headers(), req.version());
            let response = pages::serve(&shared, req.uri().path());
            return answer(&shared, exchange, response, Action::Local);
        }
        Err(err) => {
            let exchange = Exchange::begin(client, req.method().clone(), req.uri().to_string())
                .request_head(req.headers(), req.version());
            return answer(
                &shared,
                exchange,
                respond::bad_request(&err.to_string()),
                Action::Error,
            );
        }
    };
    let exchange = Exchange::begin(client, req.method().clone(), target.url())
        .request_head(req.headers(), req.version());

    if via_contains(req.headers(), &shared.pseudonym) {
        let response = respond::loop_detected(
            "this request already passed through this proxy (its Via field names it)",
        );
        return answer(&shared, exchange, response, Action::Error);
    }
    if shared.targets_self(&target.host, target.port) {
        let response = respond::loop_detected(&format!(
            "{} is this proxy's own address; forwarding it would loop",
            target.authority
        ));
        return answer(&shared, exchange, response, Action::Error);
    }

    // 3. Local pages.
    if pages::is_local_name(&target.host) {
        let response = pages::serve(&shared, req.uri().path());
        return answer(&shared, exchange, response, Action::Local);
    }

    // 4. HSTS enforcement (RFC 6797 §8.3): a known host is never contacted in clear.
    if !target.scheme.is_secure() && shared.hsts.is_enforced(&target.host) {
        if let Some(location) = target
            .url()
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| upgrade::upgrade_uri(&uri))
        {
            let response = respond::internal_redirect(&location, req.headers().get(header::ORIGIN));
            return answer(&shared, exchange, response, Action::HstsInternalRedirect);
        }
    }

    // 5–7.
    forward(shared, exchange, target, req).await
}

/// Finishes an exchange the proxy answered itself, and returns the answer.
fn answer(
    shared: &Shared,
    exchange: Exchange,
    response: Response<ProxyBody>,
    action: Action,
) -> Response<ProxyBody> {
    use http_body::Body;
    let bytes = response.body().size_hint().exact().unwrap_or(0);
    let mut exchange = exchange;
    exchange.response_headers = response.headers().clone();
    exchange.finish(shared, response.status().as_u16(), action, bytes);
    response
}

async fn forward(
    shared: Arc<Shared>,
    mut exchange: Exchange,
    target: Target,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let websocket = is_websocket_upgrade(req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));

    let (mut parts, incoming) = req.into_parts();
    let uri = match target.upstream_uri() {
        Ok(uri) => uri,
        Err(err) => {
            let response = respond::bad_request(&format!("cannot build the upstream URI: {err}"));
            return answer(&shared, exchange, response, Action::Error);
        }
    };
    strip_hop_by_hop(&mut parts.headers, websocket);
    append_via(&mut parts.headers, &shared.via);
    // RFC 9112 §3.2.2: a proxy replaces Host with the authority of the target URI.
    match HeaderValue::from_str(target.host_header()) {
        Ok(host) => {
            parts.headers.insert(header::HOST, host);
        }
        Err(_) => {
            let response = respond::bad_request("the target's host cannot be sent as a Host field");
            return answer(&shared, exchange, response, Action::Error);
        }
    }
    parts.uri = uri;
    // The upstream protocol is negotiated per connection (ALPN), not copied from the client.
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    // A pooled connection may be closed by the origin just as a request goes out on it (its
    // keep-alive ran out first). A bodiless idempotent request can be repeated safely on a
    // fresh connection (RFC 9110 §9.2.2), so keep what is needed to send it again.
    use http_body::Body as _;
    let replayable =
        (!websocket && is_idempotent(&parts.method) && incoming.is_end_stream()).then(|| {
            (
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.clone(),
            )
        });
    // The client's body: its failures are the client's (a malformed chunk is answered 400, not
    // blamed on the origin), and its end starts the wait for the response head.
    let client_body = ClientBodyState::default();
    let (sent, body_sent) = tokio::sync::oneshot::channel();
    let upstream_body = body::boxed(FromClient::new(
        Counted::new(incoming, exchange.request_bytes.clone()),
        client_body.clone(),
        sent,
    ));
    let client = if websocket {
        &shared.upstream.http1
    } else {
        &shared.upstream.general
    };
    let response_timeout = shared.config.response_timeout;
    let timed_out = || ForwardError::ResponseTimeout {
        authority: target.authority.to_string(),
        secs: response_timeout.as_secs(),
    };

    let first = response_within(
        client.request(Request::from_parts(parts, upstream_body)),
        body_sent,
        response_timeout,
    )
    .await;
    let result = match (first, replayable) {
        (None, _) => return forward_failure(&shared, exchange, timed_out()),
        (Some(Err(err)), Some((method, uri, headers))) if is_stale_connection(&err) => {
            tracing::debug!(url = %exchange.url, "pooled connection closed under the request; sending it again");
            let mut retry = Request::new(body::empty());
            *retry.method_mut() = method;
            *retry.uri_mut() = uri;
            *retry.headers_mut() = headers;
            // A bodiless retry is sent at once: its wait starts now.
            let (_, now) = tokio::sync::oneshot::channel();
            match response_within(client.request(retry), now, response_timeout).await {
                Some(result) => result,
                None => return forward_failure(&shared, exchange, timed_out()),
            }
        }
        (Some(result), _) => result,
    };
    let mut response = match result {
        Ok(response) => response,
        Err(err) => {
            let failure = ForwardError::of_client_error(
                &err,
                target.authority.as_str(),
                client_body.failure(),
            );
            return forward_failure(&shared, exchange, failure);
        }
    };

    exchange.server_ip = response
        .extensions()
        .get::<crate::proxy::upstream::UpstreamPeer>()
        .map(|peer| peer.0.ip());
    // 5b. Refuse a head that must not be relayed: an ambiguous length or a switch of protocols
    // nobody asked for. The upstream body is dropped unread, which closes that upstream
    // connection: its framing cannot be trusted for a next response.
    let bodiless = exchange.method == http::Method::HEAD
        || response.status().is_informational()
        || response.status() == StatusCode::NO_CONTENT
        || response.status() == StatusCode::NOT_MODIFIED;
    if let Err(problem) =
        check_response_head(websocket, bodiless, response.status(), response.headers())
    {
        let failure = ForwardError::BadResponse {
            authority: target.authority.to_string(),
            problem,
        };
        return forward_failure(&shared, exchange, failure);
    }

    let upstream_upgrade = (websocket && response.status() == StatusCode::SWITCHING_PROTOCOLS)
        .then(|| hyper::upgrade::on(&mut response));
    let (mut parts, incoming) = response.into_parts();

    // 6a. Learn STS — only from a secure response, whose certificate verified (the connector
    // refuses any other), per RFC 6797 §8.1.
    let observation = learn::observe(target.scheme.is_secure(), &target.host, &parts.headers);
    if let Some(update) = &observation.update {
        shared.hsts.apply(update);
    }
    exchange.sts = observation.raw;
    if let Some(finding) = observation.finding {
        exchange.add_finding(&shared, finding);
    }

    // 6b. Audit and rewrite redirects; track redirect chains per client.
    audit_redirect(&shared, &mut exchange, &mut parts);

    // 7. Relay.
    let upgraded = upstream_upgrade.is_some();
    strip_hop_by_hop(&mut parts.headers, upgraded);
    append_via(&mut parts.headers, &shared.via);
    parts.version = Version::HTTP_11;

    if let (Some(upstream_upgrade), Some(client_upgrade)) = (upstream_upgrade, client_upgrade) {
        tokio::spawn(splice_upgrade(
            client_upgrade,
            upstream_upgrade,
            target.url(),
        ));
    }

    let status = parts.status.as_u16();
    exchange.response_headers = parts.headers.clone();
    let finisher = shared.clone();
    let observed = Observed::new(
        incoming,
        Box::new(move |bytes, _complete| {
            exchange.finish(&finisher, status, Action::Forwarded, bytes);
        }),
    );
    Response::from_parts(parts, body::boxed(observed))
}

/// Step 6b: the redirect audit, applied to the response head.
fn audit_redirect(shared: &Shared, exchange: &mut Exchange, parts: &mut http::response::Parts) {
    let is_redirect = parts.status.is_redirection();
    // Loop tracking needs every exchange of a client with a chain in progress; parsing the
    // URL is only worth it for redirects or for such clients.
    if !is_redirect && shared.chains.tracked_clients() == 0 {
        return;
    }
    let Ok(url) = url::Url::parse(&exchange.url) else {
        return;
    };
    let decision = if is_redirect {
        let hsts = &shared.hsts;
        let hsts_known = |host: &str| hsts.is_enforced(host);
        redirect::audit(
            &exchange.method,
            &url,
            parts.status,
            parts.headers.get(header::LOCATION),
            shared.config.redirect_policy,
            &hsts_known,
        )
    } else {
        redirect::RedirectDecision::default()
    };
    let original = parts.status.as_u16();
    decision.apply(parts);
    if parts.status.as_u16() != original {
        exchange.rewritten_from = Some(original);
    }
    if let Some(finding) =
        shared
            .chains
            .observe(exchange.client.ip(), &url, decision.target.as_ref())
    {
        exchange.add_finding(shared, finding);
    }
    for finding in decision.findings {
        exchange.add_finding(shared, finding);
    }
}

/// Methods whose requests can be repeated without changing their effect (RFC 9110 §9.2.2).
fn is_idempotent(method: &http::Method) -> bool {
    use http::Method as M;
    [M::GET, M::HEAD, M::OPTIONS, M::TRACE, M::PUT, M::DELETE].contains(method)
}

/// Whether a request failed because a reused connection was closed under it, before any
/// response: the one failure a retry on a fresh connection fixes.
fn is_stale_connection(err: &hyper_util::client::legacy::Error) -> bool {
    !err.is_connect() && errors::connection_dropped(err)
}

/// Answers a forward that failed, saying who failed: the status, the log line's `culprit` and
/// `cause`, and the metric labels all come from the one [`ForwardError`], so they agree.
fn forward_failure(shared: &Shared, exchange: Exchange, err: ForwardError) -> Response<ProxyBody> {
    let culprit = err.culprit();
    let cause = err.cause();
    shared.metrics.forward_error(culprit.as_str(), cause);
    if culprit == Culprit::Upstream {
        shared.metrics.upstream_error(cause);
    }
    tracing::warn!(
        target: "strictproxy::forward",
        url = %exchange.url,
        culprit = culprit.as_str(),
        cause,
        "{} failed: {err}",
        culprit.as_str()
    );
    answer(
        shared,
        exchange,
        respond::forward_failed(&err),
        Action::Error,
    )
}

/// Joins the client's and the upstream's upgraded connections after a `101`.
async fn splice_upgrade(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    url: String,
) {
    let (client, upstream) = tokio::join!(client, upstream);
    match (client, upstream) {
        (Ok(client), Ok(upstream)) => {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(%url, "websocket relay ended: {err}");
            }
        }
        (Err(err), _) | (_, Err(err)) => {
            tracing::debug!(%url, "websocket upgrade did not complete: {err}");
        }
    }
}
