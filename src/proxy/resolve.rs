//! Where a host's addresses come from, and how each was obtained (which the destination
//! rules depend on): an IP literal, `localhost`, a `--resolve` mapping, the system hosts file,
//! or DNS. DNS sits behind the [`Resolve`] trait — the system resolver by default — so a test
//! can answer a public-looking name with 127.0.0.1 without touching the operator's mappings.

use crate::hsts::host::{normalize_host, normalize_target_host};
use crate::proxy::destination::Source;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;

/// A DNS lookup: every address of `host` (already normalized, never an IP literal).
pub trait Resolve: Send + Sync + 'static {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;
}

/// The system resolver (`getaddrinfo` through tokio).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// The names of the system hosts file, normalized.
#[derive(Clone, Debug, Default)]
pub struct HostsFile {
    names: NameMap<Vec<IpAddr>>,
}

/// Name → value, hashed with foldhash (seeded per process) rather than SipHash: both maps are
/// looked up on every request (~1,500 instructions of SipHash; issue 15).
type NameMap<V> = hashbrown::HashMap<String, V>;

impl HostsFile {
    /// Parses hosts(5): `address name [aliases…]`, `#` comments; unreadable lines are skipped.
    pub fn parse(text: &str) -> HostsFile {
        let mut names: NameMap<Vec<IpAddr>> = NameMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut fields = line.split_whitespace();
            let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
                continue;
            };
            for name in fields {
                if let Some(name) = normalize_host(name) {
                    let addrs = names.entry(name.into_owned()).or_default();
                    if !addrs.contains(&ip) {
                        addrs.push(ip);
                    }
                }
            }
        }
        HostsFile { names }
    }

    /// Reads a hosts file; a missing or unreadable one is empty (the system resolver will
    /// not use it either).
    pub fn load(path: &Path) -> HostsFile {
        std::fs::read_to_string(path)
            .map(|text| HostsFile::parse(&text))
            .unwrap_or_default()
    }

    /// The system's file, `/etc/hosts`.
    pub fn system() -> HostsFile {
        HostsFile::load(Path::new("/etc/hosts"))
    }

    pub fn get(&self, host: &str) -> Option<&[IpAddr]> {
        self.names.get(host).map(Vec::as_slice)
    }
}

/// The addresses known without DNS: `--resolve` mappings and the hosts file.
#[derive(Clone, Debug, Default)]
pub struct AddressBook {
    overrides: NameMap<IpAddr>,
    hosts: HostsFile,
}

impl AddressBook {
    /// `overrides` are the `--resolve` mappings; their names are normalized here.
    pub fn new(overrides: &HashMap<String, IpAddr>, hosts: HostsFile) -> AddressBook {
        let overrides = overrides
            .iter()
            .filter_map(|(name, ip)| normalize_host(name).map(|n| (n.into_owned(), *ip)))
            .collect();
        AddressBook { overrides, hosts }
    }

    /// The `--resolve` mapping of `host`, if any.
    pub fn override_for(&self, host: &str) -> Option<IpAddr> {
        if self.overrides.is_empty() {
            return None;
        }
        let host = normalize_target_host(host)?;
        self.override_for_normalized(&host)
    }

    /// [`Self::override_for`] for a host already through `normalize_target_host`, as the
    /// router has it: normalizing again cost ~900 instructions a call (issue 15).
    pub fn override_for_normalized(&self, host: &str) -> Option<IpAddr> {
        self.overrides.get(host).copied()
    }

    /// The addresses of `host` known without DNS, and how they were obtained; `None` when
    /// only DNS can say (or when the host is not a valid name). `host` may carry brackets.
    pub fn lookup_local(&self, host: &str) -> Option<(Vec<IpAddr>, Source)> {
        let host = normalize_target_host(host)?;
        self.lookup_local_normalized(&host)
    }

    /// [`Self::lookup_local`] for a host already through `normalize_target_host`.
    pub fn lookup_local_normalized(&self, host: &str) -> Option<(Vec<IpAddr>, Source)> {
        // Normalized, an IP literal is dotted-quad (ends in a digit) or has a colon; a name
        // ends in a letter (its TLD), so most hosts skip the parse.
        let maybe_ip = host.contains(':') || host.ends_with(|c: char| c.is_ascii_digit());
        if let Some(ip) = maybe_ip.then(|| host.parse::<IpAddr>().ok()).flatten() {
            return Some((vec![ip], Source::Literal));
        }
        if let Some(ip) = self.overrides.get(host) {
            return Some((vec![*ip], Source::ResolveFlag));
        }
        // RFC 6761 §6.3: `localhost` and its subdomains are loopback, whatever DNS says.
        if host == "localhost" || host.ends_with(".localhost") {
            let both = vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ];
            return Some((both, Source::Localhost));
        }
        if let Some(addrs) = self.hosts.get(host) {
            return Some((addrs.to_vec(), Source::HostsFile));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Found = (Vec<IpAddr>, Source);

    #[test]
    fn hosts_file_and_sources() {
        let hosts = HostsFile::parse(
            "127.0.0.1\tlocalhost\n# comment\n127.0.1.1 Box.Lan box  # trailing\n::1 ip6-localhost\nnot-an-ip name\n10.0.0.9 lab.test\n",
        );
        let mut overrides = HashMap::new();
        overrides.insert("Secure.TEST".to_string(), "127.0.0.1".parse().unwrap());
        let book = AddressBook::new(&overrides, hosts);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        #[rustfmt::skip]
        let rows: Vec<(&str, Option<Found>)> = vec![
            ("127.0.0.1", Some((vec![ip("127.0.0.1")], Source::Literal))),
            ("[::1]", Some((vec![ip("::1")], Source::Literal))),
            // WHATWG IPv4 spellings are literals too.
            ("127.1", Some((vec![ip("127.0.0.1")], Source::Literal))),
            ("secure.test.", Some((vec![ip("127.0.0.1")], Source::ResolveFlag))),
            ("SECURE.test", Some((vec![ip("127.0.0.1")], Source::ResolveFlag))),
            ("localhost", Some((vec![ip("127.0.0.1"), ip("::1")], Source::Localhost))),
            ("app.localhost", Some((vec![ip("127.0.0.1"), ip("::1")], Source::Localhost))),
            ("box.lan", Some((vec![ip("127.0.1.1")], Source::HostsFile))),
            ("box", Some((vec![ip("127.0.1.1")], Source::HostsFile))),
            ("lab.test", Some((vec![ip("10.0.0.9")], Source::HostsFile))),
            ("bank.example", None),
            // An empty label is no name at all.
            ("secure.test..", None),
        ];
        for (host, expected) in rows {
            assert_eq!(book.lookup_local(host), expected, "{host}");
        }
        assert!(book.override_for("secure.test..").is_none());
        // The router's shortcut agrees with the full lookup on every normalized host.
        for host in [
            "secure.test",
            "localhost",
            "a.localhost",
            "127.0.0.1",
            "::1",
            "other.test",
        ] {
            assert_eq!(
                book.lookup_local_normalized(host),
                book.lookup_local(host),
                "{host}"
            );
            assert_eq!(
                book.override_for_normalized(host),
                book.override_for(host),
                "{host}"
            );
        }
    }
}
