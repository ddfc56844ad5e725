//! Which addresses a request may reach through the proxy: pure decisions, checked twice — by
//! the router before anything is sent (for addresses known without DNS: IP literals,
//! `localhost`, `--resolve`, the hosts file) and by the upstream connector on the address it
//! actually connects to (every name, after resolution, so a DNS answer cannot slip by).
//!
//! - The admin listener is never reachable through the proxy, by any name (issue 11 item 1):
//!   otherwise any client could edit the HSTS store through the proxy.
//! - A name resolved through DNS whose answer lies in loopback, unspecified or link-local
//!   ranges is refused for every client: DNS rebinding, as dnsmasq's `--stop-dns-rebind` and
//!   Chromium's Private Network Access refuse it (169.254.169.254 is the cloud metadata
//!   service).
//! - A client that is not itself on loopback may not reach those ranges at all, by any name,
//!   unless the operator lists the destination in `allow_private_destinations`.
//! - Loopback clients keep reaching IP literals, `localhost`, hosts-file names and `--resolve`
//!   names: those are the operator's own choices (labs, local development, tests).

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// How the address of a destination was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The request named an IP address.
    Literal,
    /// `localhost` or a `*.localhost` name (RFC 6761 §6.3: always loopback).
    Localhost,
    /// A `--resolve HOST=IP` mapping.
    ResolveFlag,
    /// The system hosts file (`/etc/hosts`).
    HostsFile,
    /// A DNS answer: whoever controls the name's zone chose it.
    Dns,
}

/// The address ranges that are never a DNS answer's business.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// 127.0.0.0/8, ::1
    Loopback,
    /// 0.0.0.0/8, :: (connecting there reaches this machine)
    Unspecified,
    /// 169.254.0.0/16 (cloud metadata), fe80::/10
    LinkLocal,
}

impl Range {
    fn name(self) -> &'static str {
        match self {
            Range::Loopback => "loopback (127.0.0.0/8, ::1)",
            Range::Unspecified => "unspecified (0.0.0.0/8, ::)",
            Range::LinkLocal => "link-local (169.254.0.0/16, fe80::/10)",
        }
    }
}

/// Why a destination is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The destination is the admin listener.
    AdminListener,
    /// A DNS answer in a local range (DNS rebinding).
    DnsRebinding(Range),
    /// A non-loopback client asking for a local range.
    RemoteClient(Range),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::AdminListener => f.write_str(
                "it is strictproxy's admin API, which is never reachable through the proxy",
            ),
            Rule::DnsRebinding(range) => write!(
                f,
                "its DNS answer is a {} address (DNS rebinding protection); map the name with --resolve if it is yours",
                range.name()
            ),
            Rule::RemoteClient(range) => write!(
                f,
                "it is a {} address, which only clients on this machine may reach (allow it with allow_private_destinations)",
                range.name()
            ),
        }
    }
}

/// The verdict on one destination address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Refuse(Rule),
}

/// The local range `ip` lies in, if any (IPv4-mapped IPv6 addresses count as IPv4).
pub fn range_of(ip: IpAddr) -> Option<Range> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if a == 127 {
                Some(Range::Loopback)
            } else if a == 0 {
                Some(Range::Unspecified)
            } else if a == 169 && b == 254 {
                Some(Range::LinkLocal)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some(Range::Loopback)
            } else if v6.is_unspecified() {
                Some(Range::Unspecified)
            } else if v6.segments()[0] & 0xffc0 == 0xfe80 {
                Some(Range::LinkLocal)
            } else {
                None
            }
        }
    }
}

/// The destination rule. `client` is the client's address; `None` asks for the rules that
/// hold for every client (the upstream connector pools connections across clients, so it
/// applies only those; the router applies the client's own before anything is sent).
pub fn check(client: Option<IpAddr>, dest: IpAddr, source: Source, allow: &[IpNet]) -> Verdict {
    let dest = dest.to_canonical();
    let Some(range) = range_of(dest) else {
        return Verdict::Allow;
    };
    if allow.iter().any(|net| net.contains(&dest)) {
        return Verdict::Allow;
    }
    if source == Source::Dns {
        return Verdict::Refuse(Rule::DnsRebinding(range));
    }
    let local_client = client.is_none_or(|ip| ip.to_canonical().is_loopback());
    if !local_client {
        return Verdict::Refuse(Rule::RemoteClient(range));
    }
    Verdict::Allow
}

/// Whether connecting to `dest` reaches the admin listener bound at `admin`: the same address,
/// or, when both are loopback or unspecified forms, the same port (a listener on 0.0.0.0 is
/// reached through 127.0.0.1, and `[::1]`, `0.0.0.0` and `localhost` all mean this machine).
pub fn is_admin(dest: SocketAddr, admin: SocketAddr) -> bool {
    if dest.port() != admin.port() {
        return false;
    }
    let (dest_ip, admin_ip) = (dest.ip().to_canonical(), admin.ip().to_canonical());
    let this_machine = |ip: IpAddr| ip.is_loopback() || ip.is_unspecified();
    dest_ip == admin_ip || (this_machine(dest_ip) && this_machine(admin_ip))
}

/// The destination policy: the admin listener and the operator's allowed private ranges.
#[derive(Clone, Debug, Default)]
pub struct Destinations {
    pub admin: Option<SocketAddr>,
    pub allow_private: Vec<IpNet>,
}

impl Destinations {
    /// Both rules for one address: the admin listener first, then [`check`].
    pub fn check(&self, client: Option<IpAddr>, dest: SocketAddr, source: Source) -> Verdict {
        if self.admin.is_some_and(|admin| is_admin(dest, admin)) {
            return Verdict::Refuse(Rule::AdminListener);
        }
        check(client, dest.ip(), source, &self.allow_private)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Source::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// client, destination, how its address was obtained, allowed ranges, verdict.
    type Row<'a> = (Option<IpAddr>, &'a str, Source, &'a Vec<IpNet>, Verdict);

    #[test]
    fn destination_rules() {
        let lan = Some(ip("192.168.1.20"));
        let local = Some(ip("127.0.0.1"));
        let allow: Vec<IpNet> = vec!["169.254.10.0/24".parse().unwrap()];
        let allow_v6: Vec<IpNet> = vec!["::1/128".parse().unwrap()];
        let allow_none: Vec<IpNet> = vec![];
        let refuse_dns = |r| Verdict::Refuse(Rule::DnsRebinding(r));
        let refuse_remote = |r| Verdict::Refuse(Rule::RemoteClient(r));
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            // Public destinations: always allowed, whoever asks and however resolved.
            (lan, "93.184.216.34", Dns, &allow_none, Verdict::Allow),
            (local, "93.184.216.34", Dns, &allow_none, Verdict::Allow),
            (lan, "2001:db8::1", Literal, &allow_none, Verdict::Allow),
            // RFC 1918 space is not one of the ranges (a LAN proxy reaches LAN hosts).
            (lan, "10.0.0.5", Dns, &allow_none, Verdict::Allow),
            // DNS rebinding (dnsmasq --stop-dns-rebind): refused for every client.
            (local, "127.0.0.1", Dns, &allow_none, refuse_dns(Range::Loopback)),
            (local, "127.8.9.10", Dns, &allow_none, refuse_dns(Range::Loopback)),
            (local, "::1", Dns, &allow_none, refuse_dns(Range::Loopback)),
            (local, "::ffff:127.0.0.1", Dns, &allow_none, refuse_dns(Range::Loopback)),
            (local, "0.0.0.0", Dns, &allow_none, refuse_dns(Range::Unspecified)),
            (local, "::", Dns, &allow_none, refuse_dns(Range::Unspecified)),
            // 169.254.169.254: the cloud metadata service.
            (local, "169.254.169.254", Dns, &allow_none, refuse_dns(Range::LinkLocal)),
            (local, "fe80::1", Dns, &allow_none, refuse_dns(Range::LinkLocal)),
            (lan, "127.0.0.1", Dns, &allow_none, refuse_dns(Range::Loopback)),
            (None, "127.0.0.1", Dns, &allow_none, refuse_dns(Range::Loopback)),
            // The operator's own mappings stay allowed for loopback clients.
            (local, "127.0.0.1", Literal, &allow_none, Verdict::Allow),
            (local, "::1", Localhost, &allow_none, Verdict::Allow),
            (local, "127.0.0.1", ResolveFlag, &allow_none, Verdict::Allow),
            (local, "127.0.1.1", HostsFile, &allow_none, Verdict::Allow),
            (None, "127.0.0.1", ResolveFlag, &allow_none, Verdict::Allow),
            // …but not for a client on the network (Private Network Access), by any name.
            (lan, "127.0.0.1", Literal, &allow_none, refuse_remote(Range::Loopback)),
            (lan, "127.0.0.1", Localhost, &allow_none, refuse_remote(Range::Loopback)),
            (lan, "127.0.0.1", ResolveFlag, &allow_none, refuse_remote(Range::Loopback)),
            (lan, "127.0.1.1", HostsFile, &allow_none, refuse_remote(Range::Loopback)),
            (lan, "169.254.169.254", Literal, &allow_none, refuse_remote(Range::LinkLocal)),
            (lan, "0.0.0.0", Literal, &allow_none, refuse_remote(Range::Unspecified)),
            (Some(ip("fe80::2")), "::1", Literal, &allow_none, refuse_remote(Range::Loopback)),
            // A mapped loopback client is a loopback client.
            (Some(ip("::ffff:127.0.0.1")), "127.0.0.1", Literal, &allow_none, Verdict::Allow),
            // allow_private_destinations lists what the operator opens, for every client.
            (lan, "169.254.10.7", Literal, &allow, Verdict::Allow),
            (lan, "169.254.10.7", Dns, &allow, Verdict::Allow),
            (lan, "169.254.11.7", Literal, &allow, refuse_remote(Range::LinkLocal)),
            (lan, "::1", Literal, &allow_v6, Verdict::Allow),
        ];
        for (client, dest, source, allow, expected) in rows {
            assert_eq!(
                check(client, ip(dest), source, allow),
                expected,
                "{client:?} → {dest} ({source:?})"
            );
        }
    }

    #[test]
    fn admin_listener_by_every_form() {
        let admin: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8081".parse().unwrap();
        #[rustfmt::skip]
        let rows = [
            ("127.0.0.1:8081", admin, true),
            ("[::1]:8081", admin, true),
            ("0.0.0.0:8081", admin, true),
            ("[::ffff:127.0.0.1]:8081", admin, true),
            ("127.0.0.2:8081", admin, true),
            ("127.0.0.1:8080", admin, false),
            ("192.0.2.1:8081", admin, false),
            ("127.0.0.1:8081", any, true),
            ("[::]:8081", any, true),
        ];
        for (dest, admin, expected) in rows {
            assert_eq!(
                is_admin(dest.parse().unwrap(), admin),
                expected,
                "{dest} vs {admin}"
            );
        }
        let destinations = Destinations {
            admin: Some(admin),
            allow_private: vec![],
        };
        // The admin rule holds for loopback clients and whatever the source.
        assert_eq!(
            destinations.check(Some(ip("127.0.0.1")), admin, Source::Literal),
            Verdict::Refuse(Rule::AdminListener)
        );
    }
}
