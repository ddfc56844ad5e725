//! The request pipeline: the I/O around the pure router, for every request, whether it
//! arrived in absolute form on the listener or inside an intercepted CONNECT tunnel:
//!
//! 1. begin the exchange once and route it ([`route::route`]: admission, target, loops, local
//!    pages, HSTS upgrade — pure)
//! 2. answer what the router decided to answer, or forward upstream (hop-by-hop stripped, Via
//!    added, body streamed), waiting at most `response_timeout` for the head; a head that must
//!    not be relayed (both length fields, an unasked `101`) is refused with `502`; every
//!    failure says who failed (client, upstream, proxy) in its status, log line and metric
//! 3. on the response: learn STS (secure only), audit/rewrite redirects, track loops
//! 4. relay the response (hop-by-hop stripped, Via added) and log when its body ends
//!
//! The decisions in steps 1 and 3 are pure functions in `route`, `hsts` and `redirect`.

use crate::hsts::learn;

use crate::proxy::body::{self, ClientBodyState, Counted, FromClient, Observed, ProxyBody};
use crate::proxy::errors::Culprit;
use crate::proxy::exchange::Exchange;
use crate::proxy::headers::{append_via, is_websocket_upgrade, strip_hop_by_hop};
use crate::proxy::outcome::{check_response_head, response_within, ForwardError};
use crate::proxy::route::{self, Decision, Ingress, Refusal};
use crate::proxy::state::Shared;
use crate::proxy::target::Target;
use crate::proxy::{errors, pages, respond};
use crate::redirect;
use crate::traffic::Action;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::Instrument;

/// A routed request: its exchange (begun once, here), the router's decision, and the span
/// that ties every log line of the exchange to it.
pub struct Begun {
    pub exchange: Exchange,
    pub decision: Decision,
    pub span: tracing::Span,
}

/// Routes a request and begins its exchange.
pub fn begin<B>(shared: &Shared, client: SocketAddr, ingress: &Ingress, req: &Request<B>) -> Begun {
    let hsts = &shared.hsts;
    let routed = route::route(
        ingress,
        client.ip(),
        req,
        &|host| hsts.is_enforced(host),
        &shared.policy,
    );
    // Debug level: at the default `info` the span would format these three fields into a
    // string on every request (~9,000 instructions, issue 15) only to print them nowhere, as
    // the exchange's own line and every warning already name the URL and the client.
    let span = tracing::debug_span!(
        "exchange",
        %client,
        method = %req.method(),
        url = %routed.url
    );
    Begun {
        exchange: Exchange::begin(client, req.method().clone(), routed.url)
            .request_head(req.headers(), req.version()),
        decision: routed.decision,
        span,
    }
}

/// Runs the pipeline for one request that is not a CONNECT on the listener (those go to
/// `connect`). Never fails: every problem becomes a response.
pub async fn handle(
    shared: Arc<Shared>,
    client: SocketAddr,
    ingress: Ingress,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let Begun {
        exchange,
        decision,
        span,
    } = begin(&shared, client, &ingress, &req);
    run(shared, exchange, decision, req).instrument(span).await
}

/// Carries out a decision other than a CONNECT.
pub async fn run(
    shared: Arc<Shared>,
    exchange: Exchange,
    decision: Decision,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let recorder = &shared.recorder;
    match decision {
        Decision::Reject(refusal) => exchange.answer(recorder, refusal.response(), Action::Error),
        Decision::LocalPage { path } => {
            exchange.answer(recorder, pages::serve(&shared.ca, &path), Action::Local)
        }
        Decision::HstsUpgrade { location } => {
            let response = respond::internal_redirect(&location, req.headers().get(header::ORIGIN));
            exchange.answer(recorder, response, Action::HstsInternalRedirect)
        }
        Decision::Forward(target) => {
            forward(shared, exchange, target, req, Action::Forwarded).await
        }
        Decision::HstsExempt { target, pattern } => {
            tracing::debug!(%pattern, "exempted from HSTS by the operator");
            forward(shared, exchange, target, req, Action::HstsExempt).await
        }
        // The router only opens tunnels for CONNECTs on the listener, which `connect` serves.
        Decision::Connect(_) => {
            let refusal = Refusal::BadRequest("CONNECT inside a tunnel is not supported".into());
            exchange.answer(recorder, refusal.response(), Action::Error)
        }
    }
}

async fn forward(
    shared: Arc<Shared>,
    mut exchange: Exchange,
    target: Target,
    mut req: Request<Incoming>,
    action: Action,
) -> Response<ProxyBody> {
    let websocket = is_websocket_upgrade(req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));

    let (mut parts, incoming) = req.into_parts();
    let uri = match target.upstream_uri() {
        Ok(uri) => uri,
        Err(err) => {
            let response = respond::bad_request(&format!("cannot build the upstream URI: {err}"));
            return exchange.answer(&shared.recorder, response, Action::Error);
        }
    };
    let Some(host) = host_field(&target) else {
        let response = respond::bad_request("the target's host cannot be sent as a Host field");
        return exchange.answer(&shared.recorder, response, Action::Error);
    };
    upstream_fields(&mut parts.headers, &shared.via, &host, websocket);
    parts.uri = uri;
    // The upstream protocol is negotiated per connection (ALPN), not copied from the client.
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    // A pooled connection may be closed by the origin just as a request goes out on it (its
    // keep-alive ran out first). A bodiless idempotent request can be repeated safely on a
    // fresh connection (RFC 9110 §9.2.2), so keep what is needed to send it again; its fields
    // are made again from the exchange's copy only if it is (a copy per request cost ~2,000
    // instructions for a retry that almost never happens).
    use http_body::Body as _;
    let replayable = (!websocket && is_idempotent(&parts.method) && incoming.is_end_stream())
        .then(|| (parts.method.clone(), parts.uri.clone()));
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
        (Some(Err(err)), Some((method, uri))) if is_stale_connection(&err) => {
            tracing::debug!(url = %exchange.url, "pooled connection closed under the request; sending it again");
            let mut retry = Request::new(body::empty());
            *retry.method_mut() = method;
            *retry.uri_mut() = uri;
            *retry.headers_mut() = exchange.request_headers.clone();
            upstream_fields(retry.headers_mut(), &shared.via, &host, false);
            // A bodiless retry is sent at once: its wait starts now.
            let (_, now) = tokio::sync::oneshot::channel();
            // Boxed: the rare retry's future would otherwise double the size of every
            // request's future (hyper copies it into place per request; issue 15).
            let again = Box::pin(response_within(
                client.request(retry),
                now,
                response_timeout,
            ));
            match again.await {
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
        exchange.add_finding(&shared.recorder, finding);
    }

    // 6b. Audit and rewrite redirects; track redirect chains per client.
    audit_redirect(&shared, &mut exchange, &mut parts);

    // 7. Relay.
    let upgraded = upstream_upgrade.is_some();
    strip_hop_by_hop(&mut parts.headers, upgraded);
    append_via(&mut parts.headers, &shared.via);
    parts.version = Version::HTTP_11;

    if let (Some(upstream_upgrade), Some(client_upgrade)) = (upstream_upgrade, client_upgrade) {
        tokio::spawn(splice_websocket(
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
            exchange.finish(&finisher.recorder, status, action, bytes);
        }),
    );
    Response::from_parts(parts, body::boxed(observed))
}

/// RFC 9112 §3.2.2: a proxy replaces Host with the authority of the target URI. `None` when
/// the authority cannot be a field value.
fn host_field(target: &Target) -> Option<HeaderValue> {
    HeaderValue::from_str(target.host_header()).ok()
}

/// The client's fields made into the upstream request's: hop-by-hop fields removed (a
/// WebSocket handshake keeps its Upgrade), this proxy added to Via, Host replaced.
fn upstream_fields(
    headers: &mut http::HeaderMap,
    via: &HeaderValue,
    host: &HeaderValue,
    websocket: bool,
) {
    strip_hop_by_hop(headers, websocket);
    append_via(headers, via);
    headers.insert(header::HOST, host.clone());
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
        let exemptions = &shared.policy.exemptions;
        // An exempted host is not upgraded by the Location fix either.
        let hsts_known = |host: &str| hsts.is_enforced(host) && exemptions.matches(host).is_none();
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
        exchange.add_finding(&shared.recorder, finding);
    }
    for finding in decision.findings {
        exchange.add_finding(&shared.recorder, finding);
    }
}

/// Methods whose requests can be repeated without changing their effect (RFC 9110 §9.2.2).
fn is_idempotent(method: &http::Method) -> bool {
    use http::Method as M;
    [M::GET, M::HEAD, M::OPTIONS, M::TRACE, M::PUT, M::DELETE].contains(method)
}

/// Whether a request failed because a reused connection was closed under it, before any
/// response: the one failure a retry on a fresh connection fixes.
fn is_stale_connection(err: &crate::proxy::pool::PoolError) -> bool {
    !err.is_connect() && errors::connection_dropped(err)
}

/// Answers a forward that failed, saying who failed: the status, the log line's `culprit` and
/// `cause`, and the metric labels all come from the one [`ForwardError`], so they agree.
fn forward_failure(shared: &Shared, exchange: Exchange, err: ForwardError) -> Response<ProxyBody> {
    let culprit = err.culprit();
    let cause = err.cause();
    let metrics = &shared.recorder.metrics;
    metrics.forward_error(culprit.as_str(), cause);
    if culprit == Culprit::Upstream {
        metrics.upstream_error(cause);
    }
    tracing::warn!(
        target: "strictproxy::forward",
        url = %exchange.url,
        culprit = culprit.as_str(),
        cause,
        "{} failed: {err}",
        culprit.as_str()
    );
    exchange.answer(
        &shared.recorder,
        respond::forward_failed(&err),
        Action::Error,
    )
}

/// Joins the client's and the upstream's upgraded connections after a `101`.
async fn splice_websocket(
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
