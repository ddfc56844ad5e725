//! The per-request context: who asked, for what, when, and what was noticed on the way. It
//! travels with the request through the pipeline and is finished exactly once, when the
//! response body ends (or the client goes away), which writes the console line, the traffic
//! log record and the metrics together so they always agree. (An intercepted CONNECT is the
//! one exception: its inner requests are the exchanges; see [`Exchange::close_intercepted`].)

use crate::finding::Finding;
use crate::proxy::body::ProxyBody;
use crate::proxy::state::Recorder;
use crate::traffic::{Action, HeaderList, TrafficRecord};
use http::{HeaderMap, Method, Response, Version};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use time::OffsetDateTime;

/// One request/response exchange, from the request's arrival to the response's last byte.
pub struct Exchange {
    pub client: SocketAddr,
    pub method: Method,
    pub url: String,
    pub findings: Vec<Finding>,
    /// The upstream's status when the proxy rewrote it.
    pub rewritten_from: Option<u16>,
    /// The first Strict-Transport-Security value of the response, if any (for the report).
    pub sts: Option<String>,
    /// Bytes of request body sent upstream (shared with the streaming request body).
    pub request_bytes: Arc<AtomicU64>,
    /// The request's fields as the client sent them, and its protocol (for the record).
    pub request_headers: HeaderMap,
    pub http_version: Option<Version>,
    /// The response's fields as sent to the client.
    pub response_headers: HeaderMap,
    /// The upstream address actually connected to, when one was.
    pub server_ip: Option<IpAddr>,
    started: Instant,
    ts: OffsetDateTime,
}

impl Exchange {
    pub fn begin(client: SocketAddr, method: Method, url: String) -> Self {
        Exchange {
            client,
            method,
            url,
            findings: Vec::new(),
            rewritten_from: None,
            sts: None,
            request_bytes: Arc::new(AtomicU64::new(0)),
            request_headers: HeaderMap::new(),
            http_version: None,
            response_headers: HeaderMap::new(),
            server_ip: None,
            started: Instant::now(),
            ts: OffsetDateTime::now_utc(),
        }
    }

    /// Keeps the request's head for the record: its fields as received and its protocol.
    pub fn request_head(mut self, headers: &HeaderMap, version: Version) -> Self {
        self.request_headers = headers.clone();
        self.http_version = Some(version);
        self
    }

    /// Notes a finding and prints its readable line at once, so a person watching the console
    /// sees it while the exchange is still going.
    pub fn add_finding(&mut self, recorder: &Recorder, finding: Finding) {
        tracing::warn!(
            target: "strictproxy::finding",
            kind = finding.kind.as_str(),
            client = %self.client,
            "{}",
            finding.console_line()
        );
        recorder.metrics.finding(finding.kind);
        self.findings.push(finding);
    }

    /// Ends an exchange the proxy answered itself (an error, a local page, the HSTS 307), and
    /// returns the answer: its body is whole, so its size is known now.
    pub fn answer(
        self,
        recorder: &Recorder,
        response: Response<ProxyBody>,
        action: Action,
    ) -> Response<ProxyBody> {
        use http_body::Body;
        let bytes = response.body().size_hint().exact().unwrap_or(0);
        let mut exchange = self;
        exchange.response_headers = response.headers().clone();
        exchange.finish(recorder, response.status().as_u16(), action, bytes);
        response
    }

    /// Ends the CONNECT of an intercepted tunnel, when the tunnel closes. The decrypted
    /// requests inside are the exchanges that the traffic log and the metrics count (each has
    /// its own record), so this one writes only a debug line with action `intercepted`: a
    /// record of its own would count every intercepted request twice.
    pub fn close_intercepted(self) {
        let duration_ms = TrafficRecord::duration_ms_of(self.started.elapsed());
        tracing::debug!(
            target: "strictproxy::exchange",
            client = %self.client,
            "{} {} 200 intercepted {:.1}ms",
            self.method,
            self.url,
            duration_ms
        );
    }

    /// Ends the exchange: console line, traffic record, metrics.
    pub fn finish(self, recorder: &Recorder, status: u16, action: Action, response_bytes: u64) {
        let elapsed = self.started.elapsed();
        let duration_ms = TrafficRecord::duration_ms_of(elapsed);
        let action_name = action.as_str();
        // One readable line per exchange; the traffic log holds the structured record.
        tracing::info!(
            target: "strictproxy::exchange",
            client = %ClientAddr(self.client),
            "{} {} {} {} {}ms",
            self.method,
            self.url,
            status,
            action_name,
            Tenths(elapsed)
        );
        recorder
            .metrics
            .exchange(action_name, status, elapsed.as_secs_f64());
        let redact = recorder.redact_credentials;
        let record = TrafficRecord {
            ts: self.ts,
            client: ClientAddr(self.client).to_string(),
            method: self.method.to_string(),
            url: self.url,
            status,
            duration_ms,
            request_bytes: self.request_bytes.load(Ordering::Relaxed),
            response_bytes,
            action,
            findings: self.findings,
            rewritten_from: self.rewritten_from,
            sts: self.sts,
            id: 0,
            http_version: self
                .http_version
                .and_then(crate::traffic::version_name)
                .map(str::to_owned),
            server_ip: self.server_ip.map(ip_text),
            request_headers: HeaderList::captured(self.request_headers, redact),
            response_headers: HeaderList::captured(self.response_headers, redact),
        };
        // The console's ring gives the record its id; the log writes the same record.
        let record = recorder.feed.publish(record);
        if let Some(log) = &recorder.traffic {
            log.record(record);
        }
    }
}

/// Shows a client address exactly as `SocketAddr`'s `Display` does, without most of
/// `core::fmt`'s machinery in the common IPv4 case: once per console line, that machinery
/// cost about 3,000 instructions (issue 15).
struct ClientAddr(SocketAddr);

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SocketAddr::V4(v4) = self.0 else {
            return fmt::Display::fmt(&self.0, f);
        };
        // "255.255.255.255:65535" is the longest: 21 bytes.
        let mut buf = [0u8; 21];
        let mut len = write_ipv4(&mut buf, *v4.ip());
        buf[len] = b':';
        len += 1;
        len += decimal(&mut buf[len..], u32::from(v4.port()));
        // Only ASCII digits, dots and a colon were written.
        f.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
    }
}

/// An address as `IpAddr`'s `Display` shows it, the IPv4 case without `core::fmt` (issue 15).
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut buf = [0u8; 21];
    let len = write_ipv4(&mut buf, v4);
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// Writes `ip` in dotted-quad form at the start of `out` (15 bytes at most); returns how many.
fn write_ipv4(out: &mut [u8; 21], ip: std::net::Ipv4Addr) -> usize {
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out[len] = b'.';
            len += 1;
        }
        len += decimal(&mut out[len..], u32::from(octet));
    }
    len
}

/// Milliseconds with one decimal (`14.7`), as `{:.1}` of the float would show them but with
/// integer arithmetic: float formatting cost ~1,500 instructions per console line (issue 15).
struct Tenths(std::time::Duration);

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0.as_micros() + 50) / 100;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

/// Writes `n` (at most 65535) in decimal at the start of `out`; returns how many bytes.
fn decimal(out: &mut [u8], n: u32) -> usize {
    let mut digits = [0u8; 5];
    let mut count = 0;
    let mut rest = n;
    loop {
        digits[count] = b'0' + (rest % 10) as u8;
        count += 1;
        rest /= 10;
        if rest == 0 || count == digits.len() {
            break;
        }
    }
    for (i, digit) in digits[..count].iter().rev().enumerate() {
        out[i] = *digit;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenths_of_a_millisecond_round_half_up() {
        let table = [
            (0, "0.0"),
            (49, "0.0"),
            (50, "0.1"),
            (14_660, "14.7"),
            (999_949, "999.9"),
            (999_950, "1000.0"),
            (175_100, "175.1"),
        ];
        for (micros, shown) in table {
            let d = std::time::Duration::from_micros(micros);
            assert_eq!(Tenths(d).to_string(), shown, "{micros} µs");
        }
    }

    #[test]
    fn client_addr_shows_what_socket_addr_shows() {
        // One row per shape: short and long octets and ports, IPv6 (left to SocketAddr).
        let table = [
            "127.0.0.1:48856",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.40:8080",
            "192.168.100.9:1",
            "[::1]:443",
            "[2001:db8::7]:65535",
        ];
        for text in table {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(ClientAddr(addr).to_string(), addr.to_string(), "{text}");
            assert_eq!(ClientAddr(addr).to_string(), text);
            assert_eq!(ip_text(addr.ip()), addr.ip().to_string(), "{text}");
        }
    }
}
