//! Per-client redirect chains: each client followed through the redirects it is given, to
//! notice when it comes back to a URL it already visited in the same chain (`redirect_loop`).

use super::quote;
use crate::finding::{Finding, FindingKind};
use dashmap::DashMap;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use url::{Position, Url};

/// How many redirects a client follows before it gives up: 20 in the Fetch standard (§4.4
/// "HTTP-redirect fetch": "If request's redirect count is 20, then return a network error"),
/// Chromium (`kMaxRedirects`) and Firefox (`network.http.redirection-limit`). It is the
/// default chain length for [`RedirectChains::new`].
pub const MAX_REDIRECTS: usize = 20;

/// How many redirect chains one client may have in flight at once. A browser loads many
/// resources in parallel and every client behind a local proxy shares one address, so one chain
/// per client would be broken by every unrelated request; 16 is plenty for real pages and keeps
/// a misbehaving client's memory bounded.
const MAX_CHAINS_PER_CLIENT: usize = 16;

/// Per-client redirect chains, to find clients sent round in a loop.
///
/// A chain starts at a redirect answer; the client's next request to the pending target extends
/// it; a non-redirect answer to that target ends it, and so does silence (no request to the
/// target within `idle`: clients follow redirects at once). A target already in the chain is a
/// loop, reported once per chain. Since every client behind a local proxy may share one address
/// and browsers load in parallel, a client may have several chains in flight (up to 16): a
/// request to an unrelated URL leaves them alone rather than ending them.
///
/// Memory is bounded: a chain keeps its last `max_chain` URLs, at most `max_clients` clients are
/// tracked (the least recently active is dropped first; concurrent inserts may overshoot by the
/// number of threads), and clients with no chain in flight take no space.
pub struct RedirectChains {
    clients: DashMap<IpAddr, ClientChains>,
    max_chain: usize,
    max_clients: usize,
    idle: Duration,
}

struct ClientChains {
    chains: Vec<Chain>,
    last_active: Instant,
}

struct Chain {
    /// The URLs requested in this chain, oldest first (at most `max_chain`).
    visited: VecDeque<String>,
    /// Where the last redirect sent the client.
    pending: String,
    last_step: Instant,
    /// A loop was already reported for this chain: the client going round again is no news.
    looped: bool,
}

impl RedirectChains {
    /// `max_chain` is the number of URLs a chain remembers ([`MAX_REDIRECTS`] is the browsers'
    /// limit), `max_clients` the number of client addresses tracked at once, `idle` how long a
    /// chain waits for the client to follow its redirect.
    pub fn new(max_chain: usize, max_clients: usize, idle: Duration) -> Self {
        RedirectChains {
            clients: DashMap::new(),
            max_chain: max_chain.max(1),
            max_clients: max_clients.max(1),
            idle,
        }
    }

    /// Records one exchange of `client`: the URL it requested, and the resolved `Location` when
    /// the answer was a redirect. Returns a `redirect_loop` finding when that target was already
    /// visited in the chain.
    pub fn observe(
        &self,
        client: IpAddr,
        request_url: &Url,
        target: Option<&Url>,
    ) -> Option<Finding> {
        self.observe_at(client, request_url, target, Instant::now())
    }

    /// How many clients have chains in flight (for metrics).
    pub fn tracked_clients(&self) -> usize {
        self.clients.len()
    }

    fn observe_at(
        &self,
        client: IpAddr,
        request_url: &Url,
        target: Option<&Url>,
        now: Instant,
    ) -> Option<Finding> {
        let mut entry = match self.clients.get_mut(&client) {
            Some(entry) => entry,
            // No chain in flight and no redirect: nothing to remember (the common case).
            None if target.is_none() => return None,
            None => {
                self.make_room(now);
                self.clients.entry(client).or_insert_with(|| ClientChains {
                    chains: Vec::new(),
                    last_active: now,
                })
            }
        };
        let idle = self.idle;
        entry
            .chains
            .retain(|chain| now.saturating_duration_since(chain.last_step) <= idle);
        entry.last_active = now;

        let url = chain_key(request_url);
        let found = entry.chains.iter().position(|chain| chain.pending == url);
        let mut finding = None;
        match (found, target) {
            (Some(i), Some(target)) => {
                let mut chain = entry.chains.swap_remove(i);
                chain.visited.push_back(url);
                chain.pending = chain_key(target);
                chain.last_step = now;
                finding = self.check_loop(client, &mut chain);
                entry.chains.push(chain);
            }
            // The chain ends in a page (or an error): the client got somewhere.
            (Some(i), None) => {
                entry.chains.swap_remove(i);
            }
            (None, Some(target)) => {
                let mut chain = Chain {
                    visited: VecDeque::from([url]),
                    pending: chain_key(target),
                    last_step: now,
                    looped: false,
                };
                finding = self.check_loop(client, &mut chain);
                if entry.chains.len() >= MAX_CHAINS_PER_CLIENT {
                    if let Some(oldest) =
                        (0..entry.chains.len()).min_by_key(|&i| entry.chains[i].last_step)
                    {
                        entry.chains.swap_remove(oldest);
                    }
                }
                entry.chains.push(chain);
            }
            (None, None) => {}
        }
        let empty = entry.chains.is_empty();
        drop(entry);
        if empty {
            self.clients.remove_if(&client, |_, c| c.chains.is_empty());
        }
        finding
    }

    /// Trims the chain to its last `max_chain` URLs and reports a loop once.
    fn check_loop(&self, client: IpAddr, chain: &mut Chain) -> Option<Finding> {
        while chain.visited.len() > self.max_chain {
            chain.visited.pop_front();
        }
        let start = chain.visited.iter().position(|u| *u == chain.pending)?;
        if chain.looped {
            return None;
        }
        chain.looped = true;
        let redirects = chain.visited.len() - start;
        let mut path: Vec<String> = chain.visited.iter().skip(start).map(|u| quote(u)).collect();
        path.push(quote(&chain.pending));
        Some(Finding::new(
            FindingKind::RedirectLoop,
            format!(
                "client {client} was redirected in a loop: {} ({redirects} redirect{}) → fix \
                 the redirect rules so that the chain ends in a page; browsers give up after \
                 {MAX_REDIRECTS} redirects (ERR_TOO_MANY_REDIRECTS)",
                path.join(" → "),
                if redirects == 1 { "" } else { "s" }
            ),
        ))
    }

    /// Makes room for one more client: drops idle ones, then the least recently active.
    fn make_room(&self, now: Instant) {
        if self.clients.len() < self.max_clients {
            return;
        }
        let idle = self.idle;
        self.clients
            .retain(|_, c| now.saturating_duration_since(c.last_active) <= idle);
        if self.clients.len() < self.max_clients {
            return;
        }
        let oldest = self
            .clients
            .iter()
            .min_by_key(|c| c.last_active)
            .map(|c| *c.key());
        if let Some(ip) = oldest {
            self.clients.remove(&ip);
        }
    }
}

/// The URL as a chain remembers it: the fragment is dropped, since it never reaches the server
/// (RFC 9110 §4.2.5) and a Location's fragment only scrolls the page.
fn chain_key(url: &Url) -> String {
    url[..Position::AfterQuery].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use FindingKind::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn chains() -> RedirectChains {
        RedirectChains::new(MAX_REDIRECTS, 1000, Duration::from_secs(30))
    }

    #[test]
    fn loop_a_b_a_is_found_and_named() {
        let c = chains();
        let (a, b) = (url("https://a.test/"), url("https://b.test/"));
        assert_eq!(c.observe(ip(1), &a, Some(&b)), None);
        let f = c.observe(ip(1), &b, Some(&a)).expect("loop");
        assert_eq!(f.kind, RedirectLoop);
        assert!(
            f.detail
                .contains("https://a.test/ → https://b.test/ → https://a.test/"),
            "{}",
            f.detail
        );
        assert!(f.detail.contains("2 redirects"), "{}", f.detail);
    }

    #[test]
    fn self_redirect_is_a_loop() {
        let c = chains();
        let a = url("https://a.test/x");
        assert!(c.observe(ip(1), &a, Some(&a)).is_some());
    }

    #[test]
    fn loop_is_reported_once_per_chain() {
        let c = chains();
        let (a, b) = (url("https://a.test/"), url("https://b.test/"));
        let mut found = 0;
        for i in 0..10 {
            let (from, to) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            found += c.observe(ip(1), from, Some(to)).is_some() as usize;
        }
        assert_eq!(found, 1);
    }

    #[test]
    fn straight_chain_ends_without_finding() {
        let c = chains();
        let urls: Vec<Url> = (0..5)
            .map(|i| url(&format!("https://a.test/{i}")))
            .collect();
        for w in urls.windows(2) {
            assert_eq!(c.observe(ip(1), &w[0], Some(&w[1])), None);
        }
        assert_eq!(c.observe(ip(1), &urls[4], None), None);
        assert_eq!(c.tracked_clients(), 0, "a finished chain takes no space");
        // A new visit to the start is a new chain, not a loop.
        assert_eq!(c.observe(ip(1), &urls[4], Some(&urls[0])), None);
    }

    #[test]
    fn chain_keeps_only_the_last_max_chain_urls() {
        let c = chains();
        let urls: Vec<Url> = (0..31)
            .map(|i| url(&format!("https://a.test/{i}")))
            .collect();
        for w in urls.windows(2).take(29) {
            assert_eq!(c.observe(ip(1), &w[0], Some(&w[1])), None);
        }
        let len = c.clients.get(&ip(1)).unwrap().chains[0].visited.len();
        assert_eq!(len, MAX_REDIRECTS, "capped at 20");
        // urls[0] fell out of the window: going back there is not seen as a loop…
        assert_eq!(c.observe(ip(1), &urls[29], Some(&urls[0])), None);
        // …while a URL still in the window is.
        assert!(c.observe(ip(1), &urls[0], Some(&urls[20])).is_some());
    }

    #[test]
    fn clients_do_not_mix() {
        let c = chains();
        let (a, b) = (url("https://a.test/"), url("https://b.test/"));
        assert_eq!(c.observe(ip(1), &a, Some(&b)), None);
        // Client 2 requests B and is sent to A: a chain of its own, no loop.
        assert_eq!(c.observe(ip(2), &b, Some(&a)), None);
        assert_eq!(c.tracked_clients(), 2);
    }

    #[test]
    fn unrelated_requests_do_not_break_a_chain() {
        let c = chains();
        let (a, b, css) = (
            url("https://a.test/"),
            url("https://b.test/"),
            url("https://a.test/x.css"),
        );
        c.observe(ip(1), &a, Some(&b));
        assert_eq!(c.observe(ip(1), &css, None), None);
        assert!(c.observe(ip(1), &b, Some(&a)).is_some());
    }

    #[test]
    fn a_page_ends_the_chain() {
        let c = chains();
        let (a, b) = (url("https://a.test/"), url("https://b.test/"));
        c.observe(ip(1), &a, Some(&b));
        assert_eq!(c.observe(ip(1), &b, None), None);
        assert_eq!(
            c.observe(ip(1), &b, Some(&a)),
            None,
            "new chain starting at B"
        );
    }

    #[test]
    fn fragment_of_the_target_is_ignored() {
        let c = chains();
        let (a, b) = (url("https://a.test/"), url("https://b.test/#top"));
        c.observe(ip(1), &a, Some(&b));
        assert!(c
            .observe(ip(1), &url("https://b.test/"), Some(&a))
            .is_some());
    }

    #[test]
    fn idle_chains_expire() {
        let c = RedirectChains::new(MAX_REDIRECTS, 1000, Duration::from_secs(5));
        let (a, b) = (url("https://a.test/"), url("https://b.test/"));
        let t0 = Instant::now();
        c.observe_at(ip(1), &a, Some(&b), t0);
        let late = t0 + Duration::from_secs(6);
        assert_eq!(c.observe_at(ip(1), &b, Some(&a), late), None);
    }

    #[test]
    fn client_count_is_bounded() {
        let c = RedirectChains::new(MAX_REDIRECTS, 2, Duration::from_secs(30));
        let (a, b) = (url("https://a.test/"), url("https://b.test/"));
        let t0 = Instant::now();
        for i in 1..=3u8 {
            c.observe_at(ip(i), &a, Some(&b), t0 + Duration::from_millis(i.into()));
        }
        assert_eq!(c.tracked_clients(), 2);
        assert!(
            c.clients.get(&ip(1)).is_none(),
            "the least recently active client went first"
        );
        let mut chains_of_one = RedirectChains::new(MAX_REDIRECTS, 10, Duration::from_secs(30));
        chains_of_one.max_chain = MAX_REDIRECTS;
        for i in 0..40 {
            let from = url(&format!("https://a.test/{i}"));
            chains_of_one.observe(ip(9), &from, Some(&b));
        }
        assert_eq!(
            chains_of_one.clients.get(&ip(9)).unwrap().chains.len(),
            MAX_CHAINS_PER_CLIENT
        );
    }
}
