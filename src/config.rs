//! Configuration: one struct with every setting, its defaults in one place, loaded from the
//! TOML file (`--config FILE`) and overlaid with the command-line flags, which win.
//!
//! Every flag has a key of the same name in snake_case. Validation happens here, once, so a
//! bad value stops start-up with a message that names the key and what it allows.

use crate::redirect::RedirectPolicy;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// The documented default configuration, embedded so the binary runs with no file at all.
pub const DEFAULT_TOML: &str = include_str!("../config/strictproxy.toml");

/// Why a configuration could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// How the console log is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per event, for machines.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}` is not one of: text, json")),
        }
    }
}

/// The settings as written in the TOML file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub admin: Option<String>,
    pub ca_dir: Option<PathBuf>,
    pub hsts_store: Option<PathBuf>,
    pub preload: Option<Vec<PathBuf>>,
    pub upstream_ca: Option<Vec<PathBuf>>,
    pub resolve: Option<Vec<String>>,
    pub passthrough: Option<Vec<String>>,
    pub redirect_policy: Option<String>,
    pub traffic_log: Option<PathBuf>,
    pub auth: Option<String>,
    pub allow_open: Option<bool>,
    pub log_format: Option<String>,
    pub header_read_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub connect_timeout_secs: Option<u64>,
    pub tls_handshake_timeout_secs: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub leaf_cache_size: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub max_uri_bytes: Option<usize>,
    pub hsts_exempt: Option<Vec<String>>,
    pub max_learned_entries: Option<usize>,
    pub max_learned_per_site: Option<usize>,
    pub response_timeout_secs: Option<u64>,
    pub allow_private_destinations: Option<Vec<String>>,
    pub hsts_redis: Option<String>,
    pub hsts_redis_prefix: Option<String>,
    pub console_history: Option<usize>,
    pub redact_credentials: Option<bool>,
}

/// The validated settings the proxy runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address the proxy listens on (`--listen`). Loopback by default.
    pub listen: SocketAddr,
    /// Address of the admin API (`--admin`), loopback only; none when unset.
    pub admin: Option<SocketAddr>,
    /// Folder that holds `ca.pem` and `ca-key.pem` (`--ca-dir`), created if absent.
    pub ca_dir: PathBuf,
    /// JSON file where learned and manual HSTS entries persist (`--hsts-store`).
    pub hsts_store: Option<PathBuf>,
    /// Chromium-format preload lists to import (`--preload`, repeatable).
    pub preload: Vec<PathBuf>,
    /// Extra CA certificates (PEM) trusted for upstream TLS (`--upstream-ca`, repeatable).
    pub upstream_ca: Vec<PathBuf>,
    /// Host → IP overrides for upstream connections, like curl's `--resolve` (`--resolve HOST=IP`).
    pub resolve: HashMap<String, IpAddr>,
    /// Hosts tunnelled blind, without interception (`--passthrough`, `host` or `*.domain`).
    pub passthrough: Vec<String>,
    /// What to do with ambiguous 301/302 answers to non-GET requests (`--redirect-policy`).
    pub redirect_policy: RedirectPolicy,
    /// JSON-lines traffic log (`--traffic-log`).
    pub traffic_log: Option<PathBuf>,
    /// Proxy credentials `USER:PASS` required from clients (`--auth`).
    pub auth: Option<(String, String)>,
    /// Allow listening on a non-loopback address without `--auth` (`--allow-open`).
    pub allow_open: bool,
    /// Console log format (`--log-format`).
    pub log_format: LogFormat,
    /// Time a client has to send a complete request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// Time a client connection (HTTP/2, tunnel, WebSocket) may go without any traffic. An
    /// idle HTTP/1.1 connection waiting for its next request is bounded by
    /// `header_read_timeout` (hyper starts that timer as soon as it waits for a head).
    pub idle_timeout: Duration,
    /// Time allowed for the TCP connect to an upstream.
    pub connect_timeout: Duration,
    /// Time allowed for a TLS handshake, with the client or with the upstream.
    pub tls_handshake_timeout: Duration,
    /// How long SIGTERM waits for requests in flight before the store and log are flushed.
    pub shutdown_grace: Duration,
    /// Concurrent client connections; past this a client gets `503` and is closed.
    pub max_connections: usize,
    /// Leaf certificates (and TLS configs) kept in memory.
    pub leaf_cache_size: usize,
    /// Largest request head accepted (request line plus headers), in bytes.
    pub max_header_bytes: usize,
    /// Longest request target accepted, in bytes; past it the answer is `414`.
    pub max_uri_bytes: usize,
    /// Hosts never upgraded to HTTPS (`--hsts-exempt`, repeatable; `host` or `*.domain`): the
    /// operator's explicit exemption for an http-only lab or device, and the only way to
    /// exempt a host. The banner lists them.
    pub hsts_exempt: Vec<String>,
    /// Learned HSTS entries kept in all; past it a site's least recently observed go first.
    pub max_learned_entries: usize,
    /// Learned HSTS entries kept per registrable domain (eTLD+1), so that one site learning
    /// an entry per random subdomain cannot flush every other site's entries.
    pub max_learned_per_site: usize,
    /// Time allowed between a request sent upstream and the response head; past it `504`
    /// (like nginx's `proxy_read_timeout`).
    pub response_timeout: Duration,
    /// Private destinations (CIDRs) that clients not on loopback may reach anyway
    /// (`--allow-private-destination`, repeatable); loopback, unspecified and link-local
    /// answers are otherwise refused to them.
    pub allow_private_destinations: Vec<ipnet::IpNet>,
    /// Redis (or Valkey) URL of the HSTS store shared by a fleet of proxies (`--hsts-redis`,
    /// `redis://[user:password@]host:port/db` or `rediss://`); none: this instance alone.
    pub hsts_redis: Option<String>,
    /// Prefix of the HSTS keys in Redis, one key per domain under it.
    pub hsts_redis_prefix: String,
    /// Exchanges the web console keeps in memory (the newest ones).
    pub console_history: usize,
    /// Replace the values of `Authorization`, `Proxy-Authorization`, `Cookie` and `Set-Cookie`
    /// by `"[redacted]"` in the traffic log, the console and the HAR.
    pub redact_credentials: bool,
}

/// Values given on the command line; each one, when present, wins over the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub admin: Option<String>,
    pub ca_dir: Option<PathBuf>,
    pub hsts_store: Option<PathBuf>,
    pub preload: Vec<PathBuf>,
    pub upstream_ca: Vec<PathBuf>,
    pub resolve: Vec<String>,
    pub passthrough: Vec<String>,
    pub redirect_policy: Option<String>,
    pub traffic_log: Option<PathBuf>,
    pub auth: Option<String>,
    pub allow_open: bool,
    pub log_format: Option<String>,
    pub hsts_exempt: Vec<String>,
    pub allow_private_destinations: Vec<String>,
    pub hsts_redis: Option<String>,
    // Keys without a flag, settable here for embedders and tests.
    pub max_learned_entries: Option<usize>,
    pub max_learned_per_site: Option<usize>,
    pub response_timeout_secs: Option<u64>,
    pub hsts_redis_prefix: Option<String>,
    pub console_history: Option<usize>,
    pub redact_credentials: Option<bool>,
}

impl Config {
    /// Loads `path` (or the embedded defaults when `None`) and applies the overrides.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let defaults = parse_toml("embedded defaults", DEFAULT_TOML)?;
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                parse_toml(&path.display().to_string(), &text)?
            }
            None => FileConfig::default(),
        };
        Config::build(defaults, file, overrides)
    }

    /// The embedded defaults alone, as `strictproxy` with no arguments runs.
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::load(None, &Overrides::default())
    }

    fn build(
        defaults: FileConfig,
        file: FileConfig,
        cli: &Overrides,
    ) -> Result<Config, ConfigError> {
        // Layering: CLI flag, else file key, else embedded default.
        macro_rules! pick {
            ($field:ident) => {
                file.$field.clone().or(defaults.$field.clone())
            };
        }

        let listen_text = cli
            .listen
            .clone()
            .or(pick!(listen))
            .unwrap_or_else(|| "127.0.0.1:8080".to_string());
        let listen = parse_addr("listen", &listen_text)?;

        let admin_text = cli.admin.clone().or(pick!(admin)).filter(|s| !s.is_empty());
        let admin = match admin_text {
            Some(text) => {
                let addr = parse_addr("admin", &text)?;
                // The admin API can change what the proxy enforces: never expose it.
                if !addr.ip().is_loopback() {
                    return Err(ConfigError::Invalid {
                        key: "admin",
                        message: format!(
                            "{addr} is not a loopback address; the admin API binds loopback only (for example 127.0.0.1:8081)"
                        ),
                    });
                }
                Some(addr)
            }
            None => None,
        };

        let resolve_list = list(&cli.resolve, &file.resolve, &defaults.resolve);
        let mut resolve = HashMap::new();
        for item in &resolve_list {
            let (host, ip) = parse_resolve(item)?;
            resolve.insert(host, ip);
        }

        let passthrough = list(&cli.passthrough, &file.passthrough, &defaults.passthrough);
        for pattern in &passthrough {
            validate_passthrough(pattern)?;
        }

        let policy_text = cli
            .redirect_policy
            .clone()
            .or(pick!(redirect_policy))
            .unwrap_or_else(|| "log".to_string());
        let redirect_policy: RedirectPolicy =
            policy_text.parse().map_err(|_| ConfigError::Invalid {
                key: "redirect_policy",
                message: format!("`{policy_text}` is not one of: log, rewrite"),
            })?;

        let auth = match cli.auth.clone().or(pick!(auth)).filter(|s| !s.is_empty()) {
            Some(text) => Some(parse_auth(&text)?),
            None => None,
        };
        let allow_open = cli.allow_open || pick!(allow_open).unwrap_or(false);

        let log_text = cli
            .log_format
            .clone()
            .or(pick!(log_format))
            .unwrap_or_else(|| "text".to_string());
        let log_format = log_text.parse().map_err(|message| ConfigError::Invalid {
            key: "log_format",
            message,
        })?;

        let secs = |key: &'static str, value: Option<u64>, default: u64| {
            let value = value.unwrap_or(default);
            if value == 0 {
                Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1 second".to_string(),
                })
            } else {
                Ok(Duration::from_secs(value))
            }
        };
        let positive = |key: &'static str, value: Option<usize>, default: usize| {
            let value = value.unwrap_or(default);
            if value == 0 {
                Err(ConfigError::Invalid {
                    key,
                    message: "must be at least 1".to_string(),
                })
            } else {
                Ok(value)
            }
        };

        let hsts_exempt = list(&cli.hsts_exempt, &file.hsts_exempt, &defaults.hsts_exempt);
        for pattern in &hsts_exempt {
            validate_exempt(pattern)?;
        }

        let mut allow_private_destinations = Vec::new();
        for item in list(
            &cli.allow_private_destinations,
            &file.allow_private_destinations,
            &defaults.allow_private_destinations,
        ) {
            allow_private_destinations.push(parse_cidr(&item)?);
        }

        let hsts_redis = cli
            .hsts_redis
            .clone()
            .or(pick!(hsts_redis))
            .filter(|s| !s.is_empty());
        if let Some(url) = &hsts_redis {
            validate_redis_url(url)?;
        }
        let hsts_redis_prefix = cli
            .hsts_redis_prefix
            .clone()
            .or(pick!(hsts_redis_prefix))
            .unwrap_or_else(|| "strictproxy:hsts:".to_string());
        if hsts_redis_prefix.is_empty() {
            // An empty prefix would make the fleet scan and own the whole database.
            return Err(ConfigError::Invalid {
                key: "hsts_redis_prefix",
                message: "must not be empty (for example \"strictproxy:hsts:\")".to_string(),
            });
        }

        let config = Config {
            listen,
            admin,
            ca_dir: cli
                .ca_dir
                .clone()
                .or(pick!(ca_dir))
                .unwrap_or_else(|| PathBuf::from("certs")),
            hsts_store: cli
                .hsts_store
                .clone()
                .or(pick!(hsts_store))
                .filter(|p| !p.as_os_str().is_empty()),
            preload: list(&cli.preload, &file.preload, &defaults.preload),
            upstream_ca: list(&cli.upstream_ca, &file.upstream_ca, &defaults.upstream_ca),
            resolve,
            passthrough,
            redirect_policy,
            traffic_log: cli
                .traffic_log
                .clone()
                .or(pick!(traffic_log))
                .filter(|p| !p.as_os_str().is_empty()),
            auth,
            allow_open,
            log_format,
            header_read_timeout: secs(
                "header_read_timeout_secs",
                pick!(header_read_timeout_secs),
                10,
            )?,
            idle_timeout: secs("idle_timeout_secs", pick!(idle_timeout_secs), 300)?,
            connect_timeout: secs("connect_timeout_secs", pick!(connect_timeout_secs), 10)?,
            tls_handshake_timeout: secs(
                "tls_handshake_timeout_secs",
                pick!(tls_handshake_timeout_secs),
                10,
            )?,
            shutdown_grace: secs("shutdown_grace_secs", pick!(shutdown_grace_secs), 10)?,
            max_connections: positive("max_connections", pick!(max_connections), 4096)?,
            leaf_cache_size: positive("leaf_cache_size", pick!(leaf_cache_size), 1024)?,
            max_header_bytes: positive("max_header_bytes", pick!(max_header_bytes), 64 * 1024)?,
            max_uri_bytes: positive("max_uri_bytes", pick!(max_uri_bytes), 16 * 1024)?,
            hsts_exempt,
            max_learned_entries: positive(
                "max_learned_entries",
                cli.max_learned_entries.or(pick!(max_learned_entries)),
                100_000,
            )?,
            max_learned_per_site: positive(
                "max_learned_per_site",
                cli.max_learned_per_site.or(pick!(max_learned_per_site)),
                1_000,
            )?,
            response_timeout: secs(
                "response_timeout_secs",
                cli.response_timeout_secs.or(pick!(response_timeout_secs)),
                60,
            )?,
            allow_private_destinations,
            hsts_redis,
            hsts_redis_prefix,
            console_history: positive(
                "console_history",
                cli.console_history.or(pick!(console_history)),
                1_000,
            )?,
            redact_credentials: cli
                .redact_credentials
                .or(pick!(redact_credentials))
                .unwrap_or(true),
        };
        config.check_exposure()?;
        Ok(config)
    }

    /// A proxy on a non-loopback address is an open relay for anyone who can reach it,
    /// with the power to mint certificates for any name: require credentials or consent.
    fn check_exposure(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && self.auth.is_none() && !self.allow_open {
            return Err(ConfigError::Invalid {
                key: "listen",
                message: format!(
                    "{} is not a loopback address: set `auth` (--auth USER:PASS) so only your clients can use the proxy, or `allow_open` (--allow-open) to accept anyone who can reach it",
                    self.listen
                ),
            });
        }
        Ok(())
    }

    /// Whether `host` is to be tunnelled blind rather than intercepted.
    pub fn is_passthrough(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.passthrough
            .iter()
            .any(|pattern| passthrough_matches(pattern, host))
    }
}

/// `example.com` matches that host only; `*.example.com` matches the domain and every
/// subdomain. Host names compare case-insensitively (RFC 4343).
pub fn passthrough_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            host.eq_ignore_ascii_case(domain)
                || (host.len() > domain.len()
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
                    && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain))
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

/// A repeatable setting: the flags replace the file's list, which replaces the default.
fn list<T: Clone>(cli: &[T], file: &Option<Vec<T>>, default: &Option<Vec<T>>) -> Vec<T> {
    if !cli.is_empty() {
        cli.to_vec()
    } else {
        file.clone().or_else(|| default.clone()).unwrap_or_default()
    }
}

fn parse_toml(origin: &str, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_string(),
        message: e.to_string(),
    })
}

fn parse_addr(key: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| ConfigError::Invalid {
        key,
        message: format!("`{text}` is not an address of the form IP:PORT (for example 127.0.0.1:8080 or [::1]:8080)"),
    })
}

fn parse_resolve(item: &str) -> Result<(String, IpAddr), ConfigError> {
    let invalid = |why: &str| ConfigError::Invalid {
        key: "resolve",
        message: format!("`{item}` {why}; expected HOST=IP, for example secure.test=127.0.0.1"),
    };
    let (host, ip) = item.split_once('=').ok_or_else(|| invalid("has no `=`"))?;
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(invalid("names no host"));
    }
    let ip = ip.trim().trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = ip.parse().map_err(|_| invalid("has no valid IP"))?;
    Ok((host, ip))
}

fn validate_passthrough(pattern: &str) -> Result<(), ConfigError> {
    let body = pattern.strip_prefix("*.").unwrap_or(pattern);
    let valid = !body.is_empty()
        && !body.contains('*')
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: "passthrough",
            message: format!(
                "`{pattern}` is not a host name or `*.domain` pattern (for example bank.example or *.example.com)"
            ),
        })
    }
}

/// An HSTS exemption: an exact host or `*.domain`, no port (HSTS has none, RFC 6797 §8.3).
fn validate_exempt(pattern: &str) -> Result<(), ConfigError> {
    let body = pattern.strip_prefix("*.").unwrap_or(pattern);
    let valid = !body.is_empty()
        && !body.starts_with('.')
        && !body.contains('*')
        && body
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: "hsts_exempt",
            message: format!(
                "`{pattern}` is not a host name or `*.domain` pattern (for example printer.lab.test or *.lab.test)"
            ),
        })
    }
}

/// A CIDR such as `10.0.0.0/8` or `fd00::/8`; a bare address means that address alone.
fn parse_cidr(text: &str) -> Result<ipnet::IpNet, ConfigError> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| ConfigError::Invalid {
            key: "allow_private_destinations",
            message: format!(
                "`{text}` is not a CIDR (for example 10.0.0.0/8, 192.168.1.20/32 or fd00::/8)"
            ),
        })
}

/// `redis://[user:password@]host[:port][/db]` or `rediss://` (TLS). The message never
/// repeats the password.
fn validate_redis_url(text: &str) -> Result<(), ConfigError> {
    let invalid = |why: &str| ConfigError::Invalid {
        key: "hsts_redis",
        message: format!(
            "`{}` {why}; expected redis://[user:password@]host:port/db or rediss://…",
            mask_url_password(text)
        ),
    };
    let url = url::Url::parse(text).map_err(|_| invalid("is not a URL"))?;
    if url.scheme() != "redis" && url.scheme() != "rediss" {
        return Err(invalid("is neither redis:// nor rediss://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("names no host"));
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(invalid("has a database that is not a number"));
    }
    Ok(())
}

/// `url` with its password (if any) replaced by `***`, for banners, logs and error
/// messages: `redis://user:secret@h:6379/0` → `redis://user:***@h:6379/0`. Text that is not
/// a URL is returned with anything between `://` and the last `@` masked.
pub fn mask_url_password(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.password().is_some() && parsed.set_password(Some("***")).is_ok() {
            return parsed.to_string();
        }
        if parsed.password().is_none() {
            return url.to_string();
        }
    }
    // Not parseable: mask the whole userinfo rather than guess where the password is.
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end + 3 => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn parse_auth(text: &str) -> Result<(String, String), ConfigError> {
    match text.split_once(':') {
        Some((user, pass)) if !user.is_empty() && !pass.is_empty() => {
            Ok((user.to_string(), pass.to_string()))
        }
        _ => Err(ConfigError::Invalid {
            key: "auth",
            message: "expected USER:PASS with both parts non-empty".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(overrides: Overrides) -> Result<Config, ConfigError> {
        Config::load(None, &overrides)
    }

    #[test]
    fn embedded_defaults_match_the_contract() {
        let config = Config::defaults().unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.ca_dir, PathBuf::from("certs"));
        assert_eq!(config.redirect_policy, RedirectPolicy::Log);
        assert!(config.admin.is_none());
        assert!(config.traffic_log.is_none());
    }

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nredirect_policy = \"rewrite\"\nresolve = [\"a.test=127.0.0.2\"]\n",
        )
        .unwrap();
        let from_file = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(from_file.listen.port(), 9000);
        assert_eq!(from_file.redirect_policy, RedirectPolicy::Rewrite);
        assert_eq!(
            from_file.resolve["a.test"],
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
        let overrides = Overrides {
            listen: Some("127.0.0.1:9001".into()),
            redirect_policy: Some("log".into()),
            ..Default::default()
        };
        let both = Config::load(Some(&path), &overrides).unwrap();
        assert_eq!(both.listen.port(), 9001);
        assert_eq!(both.redirect_policy, RedirectPolicy::Log);
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases: Vec<(Overrides, &str)> = vec![
            (
                Overrides {
                    listen: Some("nowhere".into()),
                    ..Default::default()
                },
                "listen",
            ),
            (
                Overrides {
                    redirect_policy: Some("maybe".into()),
                    ..Default::default()
                },
                "redirect_policy",
            ),
            (
                Overrides {
                    resolve: vec!["a.test".into()],
                    ..Default::default()
                },
                "resolve",
            ),
            (
                Overrides {
                    resolve: vec!["a.test=banana".into()],
                    ..Default::default()
                },
                "resolve",
            ),
            (
                Overrides {
                    passthrough: vec!["a*b".into()],
                    ..Default::default()
                },
                "passthrough",
            ),
            (
                Overrides {
                    auth: Some("nopass".into()),
                    ..Default::default()
                },
                "auth",
            ),
            (
                Overrides {
                    log_format: Some("xml".into()),
                    ..Default::default()
                },
                "log_format",
            ),
            (
                Overrides {
                    admin: Some("0.0.0.0:9".into()),
                    ..Default::default()
                },
                "admin",
            ),
            // A non-loopback listener needs credentials or explicit consent.
            (
                Overrides {
                    listen: Some("0.0.0.0:8080".into()),
                    ..Default::default()
                },
                "listen",
            ),
        ];
        for (overrides, key) in cases {
            let err = with(overrides).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{err}");
        }
    }

    #[test]
    fn new_keys_have_their_contract_defaults() {
        let config = Config::defaults().unwrap();
        assert!(config.hsts_exempt.is_empty());
        assert_eq!(config.max_learned_entries, 100_000);
        assert_eq!(config.max_learned_per_site, 1_000);
        assert_eq!(config.response_timeout, Duration::from_secs(60));
        assert!(config.allow_private_destinations.is_empty());
        assert_eq!(config.hsts_redis, None);
        assert_eq!(config.hsts_redis_prefix, "strictproxy:hsts:");
        assert_eq!(config.console_history, 1_000);
        assert!(config.redact_credentials);
    }

    #[test]
    fn new_keys_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "hsts_exempt = [\"printer.lab.test\", \"*.iot.test\"]\n\
             max_learned_entries = 50\nmax_learned_per_site = 5\nresponse_timeout_secs = 7\n\
             allow_private_destinations = [\"10.0.0.0/8\", \"fd00::/8\", \"192.168.1.20\"]\n\
             hsts_redis = \"redis://u:p@127.0.0.1:6379/2\"\nhsts_redis_prefix = \"t:\"\n\
             console_history = 10\nredact_credentials = false\n",
        )
        .unwrap();
        let config = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(config.hsts_exempt, ["printer.lab.test", "*.iot.test"]);
        assert_eq!(config.max_learned_entries, 50);
        assert_eq!(config.max_learned_per_site, 5);
        assert_eq!(config.response_timeout, Duration::from_secs(7));
        let nets: Vec<String> = config
            .allow_private_destinations
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "fd00::/8", "192.168.1.20/32"]);
        assert_eq!(
            config.hsts_redis.as_deref(),
            Some("redis://u:p@127.0.0.1:6379/2")
        );
        assert_eq!(config.hsts_redis_prefix, "t:");
        assert_eq!(config.console_history, 10);
        assert!(!config.redact_credentials);

        // Flags replace the file's lists and values.
        let overrides = Overrides {
            hsts_exempt: vec!["a.test".into()],
            allow_private_destinations: vec!["172.16.0.0/12".into()],
            hsts_redis: Some("rediss://127.0.0.1:6380".into()),
            ..Default::default()
        };
        let both = Config::load(Some(&path), &overrides).unwrap();
        assert_eq!(both.hsts_exempt, ["a.test"]);
        assert_eq!(both.allow_private_destinations.len(), 1);
        assert_eq!(both.hsts_redis.as_deref(), Some("rediss://127.0.0.1:6380"));
    }

    #[test]
    fn new_keys_bad_values_name_the_key() {
        let cases: Vec<(&str, &str)> = vec![
            ("hsts_exempt = [\"*\"]", "hsts_exempt"),
            ("hsts_exempt = [\"a.test:80\"]", "hsts_exempt"),
            ("hsts_exempt = [\"*.*.test\"]", "hsts_exempt"),
            ("hsts_exempt = [\"\"]", "hsts_exempt"),
            ("max_learned_entries = 0", "max_learned_entries"),
            ("max_learned_per_site = 0", "max_learned_per_site"),
            ("response_timeout_secs = 0", "response_timeout_secs"),
            (
                "allow_private_destinations = [\"10.0.0.0/33\"]",
                "allow_private_destinations",
            ),
            (
                "allow_private_destinations = [\"lan\"]",
                "allow_private_destinations",
            ),
            ("hsts_redis = \"http://127.0.0.1:6379\"", "hsts_redis"),
            ("hsts_redis = \"redis://127.0.0.1:6379/zero\"", "hsts_redis"),
            ("hsts_redis = \"not a url\"", "hsts_redis"),
            ("hsts_redis_prefix = \"\"", "hsts_redis_prefix"),
            ("console_history = 0", "console_history"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for (toml, key) in cases {
            std::fs::write(&path, toml).unwrap();
            let err = Config::load(Some(&path), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("`{key}`")), "{toml}: {err}");
        }
    }

    #[test]
    fn redis_errors_never_repeat_the_password() {
        let overrides = Overrides {
            hsts_redis: Some("http://user:hunter2@127.0.0.1:6379".into()),
            ..Default::default()
        };
        let err = with(overrides).unwrap_err().to_string();
        assert!(err.contains("`hsts_redis`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn url_passwords_are_masked() {
        // (url, shown)
        let rows = [
            ("redis://user:secret@h:6379/0", "redis://user:***@h:6379/0"),
            ("rediss://:secret@h:6380", "rediss://:***@h:6380"),
            ("redis://h:6379/0", "redis://h:6379/0"),
            ("redis://user@h:6379", "redis://user@h:6379"),
            // Not a URL the parser accepts: the whole userinfo goes.
            ("redis://us er:sec ret@h:x", "redis://***@h:x"),
        ];
        for (url, shown) in rows {
            assert_eq!(mask_url_password(url), shown, "{url}");
        }
    }

    #[test]
    fn unknown_file_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let err = Config::load(Some(&path), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn open_listener_allowed_with_auth_or_consent() {
        let auth = Overrides {
            listen: Some("0.0.0.0:8080".into()),
            auth: Some("u:p".into()),
            ..Default::default()
        };
        assert!(with(auth).is_ok());
        let open = Overrides {
            listen: Some("0.0.0.0:8080".into()),
            allow_open: true,
            ..Default::default()
        };
        assert!(with(open).is_ok());
    }

    #[test]
    fn passthrough_patterns() {
        // (pattern, host, matches)
        let rows = [
            ("bank.example", "bank.example", true),
            ("bank.example", "BANK.example", true),
            ("bank.example", "www.bank.example", false),
            ("*.example.com", "example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "badexample.com", false),
            ("*.example.com", "example.com.evil", false),
        ];
        for (pattern, host, expected) in rows {
            assert_eq!(
                passthrough_matches(pattern, host),
                expected,
                "{pattern} {host}"
            );
        }
    }
}
