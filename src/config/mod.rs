//! Configuration: every key declared once, in the table below, with its type, its default,
//! its flag (if it has one) and its validation. From that one table come the TOML file's
//! struct ([`FileConfig`]), the command-line and embedder layer ([`Overrides`], and the clap
//! flags through [`FlagSet`]), and the validated [`Config`] the proxy runs with.
//!
//! Layering: a flag wins over the file's key, which wins over the built-in default. Every flag
//! has a key of the same name in snake_case. A test proves that `config/strictproxy.toml`
//! documents exactly these defaults. Validation happens here, once, so a bad value stops
//! start-up with a message that names the key and what it allows.

use clap::ArgMatches;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

use crate::redirect::RedirectPolicy;

mod flags;
mod parse;
mod value;

pub use flags::{FlagSet, KeySet};
pub use parse::{mask_url_password, passthrough_matches};
use value::{FromLiteral, KeyValue};

/// The documented default configuration (each key with its built-in default, as a test
/// checks), for people and for `--config`.
pub const DEFAULT_TOML: &str = include_str!("../../config/strictproxy.toml");

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

/// Generates every layer from the key table. Each row:
///
/// ```text
/// /// doc (for the Config field)
/// key: RawType = default, [flag("long-name", "VALUE", "help"),]
///     => field: Type = validate;
/// ```
///
/// `RawType` is what TOML and the command line give ([`KeyValue`]); `validate` is a function
/// of [`parse`] from (key name, raw value) to the field's type.
macro_rules! config_keys {
    ($(
        $(#[doc = $doc:literal])+
        $key:ident: $raw:ty = $default:expr,
            $(flag($long:literal, $value_name:literal, $help:literal),)?
            => $field:ident: $ty:ty = $validate:path;
    )+) => {
        /// The settings as written in the TOML file: every key optional, unknown keys refused.
        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct FileConfig {
            $( $(#[doc = $doc])+ pub $key: Option<$raw>, )+
        }

        /// Values given on the command line (or by an embedder or a test); each one, when
        /// given, wins over the file. A list is given when it is not empty.
        #[derive(Clone, Debug, Default)]
        pub struct Overrides {
            $( $(#[doc = $doc])+ pub $key: <$raw as KeyValue>::Slot, )+
        }

        /// The validated settings the proxy runs with.
        #[derive(Clone, Debug)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $field: $ty, )+
        }

        /// Every key's value before validation, one layer or all layers merged.
        #[derive(Clone, Debug, PartialEq)]
        struct Raw {
            $( $key: $raw, )+
        }

        impl Raw {
            /// The built-in defaults: the one place they are written.
            fn defaults() -> Raw {
                Raw { $( $key: <$raw as FromLiteral<_>>::from_literal($default), )+ }
            }

            /// Each key from the flag, else the file, else the default.
            fn layered(file: FileConfig, cli: &Overrides) -> Raw {
                let defaults = Raw::defaults();
                Raw {
                    $( $key: <$raw as KeyValue>::given(&cli.$key)
                        .or(file.$key)
                        .unwrap_or(defaults.$key), )+
                }
            }

            /// Each key through its validation, in table order.
            fn validate(self) -> Result<Config, ConfigError> {
                Ok(Config { $( $field: $validate(stringify!($key), self.$key)?, )+ })
            }
        }

        impl FileConfig {
            /// The keys this file leaves out.
            #[cfg(test)]
            fn missing(&self) -> Vec<&'static str> {
                let mut missing = Vec::new();
                $( if self.$key.is_none() { missing.push(stringify!($key)); } )+
                missing
            }
        }

        impl Overrides {
            fn from_matches(matches: &ArgMatches) -> Overrides {
                Overrides { $( $key: <$raw as KeyValue>::read(matches, stringify!($key)), )+ }
            }

            /// `self`, with each key that `later` gives replaced by `later`'s value.
            pub fn merge(self, later: Overrides) -> Overrides {
                Overrides { $( $key: <$raw as KeyValue>::merge(self.$key, later.$key), )+ }
            }
        }

        /// The flags, in table order: (key, clap argument with its help and default).
        fn flag_args() -> Vec<(&'static str, clap::Arg)> {
            let defaults = Raw::defaults();
            let mut args = Vec::new();
            $($(
                let arg = clap::Arg::new(stringify!($key)).long($long);
                let arg = if $value_name.is_empty() { arg } else { arg.value_name($value_name) };
                let help = match defaults.$key.shown() {
                    Some(default) => format!("{} [default: {default}]", $help),
                    None => $help.to_string(),
                };
                args.push((stringify!($key), <$raw as KeyValue>::takes(arg.help(help))));
            )?)+
            args
        }
    };
}

config_keys! {
    /// Address the proxy listens on (`--listen`). Loopback by default; a non-loopback
    /// address requires `auth` or `allow_open`.
    listen: String = "127.0.0.1:8080",
        flag("listen", "ADDR", "Address to listen on"),
        => listen: SocketAddr = parse::addr;
    /// Address of the admin API (`--admin`), loopback only; none when empty.
    admin: String = "",
        flag("admin", "ADDR", "Admin API and web console address (loopback only), e.g. 127.0.0.1:8081"),
        => admin: Option<SocketAddr> = parse::admin_addr;
    /// Folder that holds `ca.pem` and `ca-key.pem` (`--ca-dir`), created if absent.
    ca_dir: PathBuf = "certs",
        flag("ca-dir", "DIR", "Folder of the local CA (ca.pem, ca-key.pem; created if absent)"),
        => ca_dir: PathBuf = parse::keep;
    /// JSON file where learned and manual HSTS entries persist (`--hsts-store`); none when
    /// empty.
    hsts_store: PathBuf = "",
        flag("hsts-store", "FILE", "JSON file where learned and manual HSTS entries persist"),
        => hsts_store: Option<PathBuf> = parse::optional_path;
    /// Chromium-format preload lists to import (`--preload`, repeatable).
    preload: Vec<PathBuf> = [],
        flag("preload", "FILE", "Chromium-format HSTS preload list to import (repeatable)"),
        => preload: Vec<PathBuf> = parse::keep;
    /// Extra CA certificates (PEM) trusted for upstream TLS (`--upstream-ca`, repeatable).
    upstream_ca: Vec<PathBuf> = [],
        flag("upstream-ca", "FILE", "Extra CA certificate (PEM) trusted for upstream TLS (repeatable)"),
        => upstream_ca: Vec<PathBuf> = parse::keep;
    /// Host → IP overrides for upstream connections, like curl's `--resolve` (`--resolve HOST=IP`).
    resolve: Vec<String> = [],
        flag("resolve", "HOST=IP", "Send upstream connections for HOST to IP, like curl --resolve (repeatable)"),
        => resolve: HashMap<String, IpAddr> = parse::resolve;
    /// Hosts tunnelled blind, without interception (`--passthrough`, `host` or `*.domain`).
    passthrough: Vec<String> = [],
        flag("passthrough", "PATTERN", "Tunnel HOST (or *.DOMAIN) blind, without interception (repeatable)"),
        => passthrough: Vec<String> = parse::passthrough;
    /// What to do with ambiguous 301/302 answers to non-GET requests (`--redirect-policy`).
    redirect_policy: String = "log",
        flag("redirect-policy", "log|rewrite", "Ambiguous 301/302 after non-GET: log them, or rewrite them to 308/307"),
        => redirect_policy: RedirectPolicy = parse::redirect_policy;
    /// JSON-lines traffic log (`--traffic-log`); none when empty.
    traffic_log: PathBuf = "",
        flag("traffic-log", "FILE", "JSON-lines traffic log, one object per exchange"),
        => traffic_log: Option<PathBuf> = parse::optional_path;
    /// Proxy credentials `USER:PASS` required from clients (`--auth`); none when empty.
    auth: String = "",
        flag("auth", "USER:PASS", "Require proxy credentials USER:PASS (Proxy-Authorization: Basic)"),
        => auth: Option<(String, String)> = parse::auth;
    /// Allow listening on a non-loopback address without `--auth` (`--allow-open`).
    allow_open: bool = false,
        flag("allow-open", "", "Allow a non-loopback listen address without --auth"),
        => allow_open: bool = parse::keep;
    /// Console log format (`--log-format`).
    log_format: String = "text",
        flag("log-format", "text|json", "Console log format"),
        => log_format: LogFormat = parse::log_format;
    /// Time a client has to send a complete HTTP/1 request head, from its first byte: the
    /// slowloris guard. It does not run while a connection waits for its next (or first)
    /// request; `idle_timeout` bounds that wait.
    header_read_timeout_secs: u64 = 10,
        => header_read_timeout: Duration = parse::seconds;
    /// Time a client connection may go without any traffic: an HTTP/1.1 connection waiting
    /// for its first or next request, HTTP/2 connections, tunnels and WebSockets.
    idle_timeout_secs: u64 = 300,
        => idle_timeout: Duration = parse::seconds;
    /// Time allowed for the TCP connect to an upstream.
    connect_timeout_secs: u64 = 10,
        => connect_timeout: Duration = parse::seconds;
    /// Time allowed for a TLS handshake, with the client or with the upstream.
    tls_handshake_timeout_secs: u64 = 10,
        => tls_handshake_timeout: Duration = parse::seconds;
    /// How long SIGTERM waits for requests in flight before the store and log are flushed.
    shutdown_grace_secs: u64 = 10,
        => shutdown_grace: Duration = parse::seconds;
    /// Concurrent client connections; past this a client gets `503` and is closed.
    max_connections: usize = 4096,
        => max_connections: usize = parse::positive;
    /// Leaf certificates (and TLS configs) kept in memory.
    leaf_cache_size: usize = 1024,
        => leaf_cache_size: usize = parse::positive;
    /// Largest request head accepted (request line plus headers), in bytes.
    max_header_bytes: usize = 65536,
        => max_header_bytes: usize = parse::positive;
    /// Longest request target accepted, in bytes; past it the answer is `414`.
    max_uri_bytes: usize = 16384,
        => max_uri_bytes: usize = parse::positive;
    /// Hosts never upgraded to HTTPS (`--hsts-exempt`, repeatable; `host` or `*.domain`): the
    /// operator's explicit exemption for an http-only lab or device, and the only way to
    /// exempt a host. The banner lists them.
    hsts_exempt: Vec<String> = [],
        flag("hsts-exempt", "PATTERN", "Never upgrade HOST (or *.DOMAIN) to HTTPS: an http-only lab or device (repeatable)"),
        => hsts_exempt: Vec<String> = parse::hsts_exempt;
    /// Learned HSTS entries kept in all; past it a site's least recently observed go first.
    max_learned_entries: usize = 100_000,
        => max_learned_entries: usize = parse::positive;
    /// Learned HSTS entries kept per registrable domain (eTLD+1), so that one site learning
    /// an entry per random subdomain cannot flush every other site's entries.
    max_learned_per_site: usize = 1_000,
        => max_learned_per_site: usize = parse::positive;
    /// Time allowed between a request sent upstream and the response head; past it `504`
    /// (like nginx's `proxy_read_timeout`).
    response_timeout_secs: u64 = 60,
        => response_timeout: Duration = parse::seconds;
    /// Private destinations (CIDRs) that clients not on loopback may reach anyway
    /// (`--allow-private-destination`, repeatable); loopback, unspecified and link-local
    /// answers are otherwise refused to them.
    allow_private_destinations: Vec<String> = [],
        flag("allow-private-destination", "CIDR", "Let clients not on loopback reach this private CIDR anyway (repeatable)"),
        => allow_private_destinations: Vec<ipnet::IpNet> = parse::cidrs;
    /// Redis (or Valkey) URL of the HSTS store shared by a fleet of proxies (`--hsts-redis`,
    /// `redis://[user:password@]host:port/db` or `rediss://`); none: this instance alone.
    hsts_redis: String = "",
        flag("hsts-redis", "URL", "Share the HSTS store with a fleet through Redis: redis://[user:pass@]host:port/db"),
        => hsts_redis: Option<String> = parse::redis_url;
    /// Prefix of the HSTS keys in Redis, one key per domain under it.
    hsts_redis_prefix: String = "strictproxy:hsts:",
        => hsts_redis_prefix: String = parse::redis_prefix;
    /// Exchanges the web console keeps in memory (the newest ones).
    console_history: usize = 1_000,
        => console_history: usize = parse::positive;
    /// Replace the values of `Authorization`, `Proxy-Authorization`, `Cookie` and `Set-Cookie`
    /// by `"[redacted]"` in the traffic log, the console and the HAR.
    redact_credentials: bool = true,
        => redact_credentials: bool = parse::keep;
}

impl Config {
    /// Loads `path` (no file when `None`) and applies the overrides on top.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
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
        let config = Raw::layered(file, overrides).validate()?;
        config.check_exposure()?;
        Ok(config)
    }

    /// The built-in defaults alone, as `strictproxy` with no arguments runs.
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::load(None, &Overrides::default())
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

fn parse_toml(origin: &str, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_string(),
        message: e.to_string(),
    })
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

    /// The documented file names every key, with exactly the built-in default.
    #[test]
    fn the_documented_defaults_are_the_built_in_defaults() {
        let documented = parse_toml("config/strictproxy.toml", DEFAULT_TOML).unwrap();
        assert_eq!(
            documented.missing(),
            Vec::<&str>::new(),
            "keys not documented"
        );
        assert_eq!(
            Raw::layered(documented, &Overrides::default()),
            Raw::defaults()
        );
    }

    /// Every flag is in the README's flags table.
    #[test]
    fn the_readme_lists_every_flag() {
        let readme = include_str!("../../README.md");
        for (key, arg) in flag_args() {
            let long = arg.get_long().unwrap();
            assert!(readme.contains(&format!("| `--{long}")), "{key}: --{long}");
        }
    }

    #[test]
    fn subcommand_flags_win_over_top_level_flags() {
        let top = Overrides {
            listen: Some("127.0.0.1:1".into()),
            preload: vec!["a.json".into()],
            allow_open: Some(true),
            ..Default::default()
        };
        let sub = Overrides {
            listen: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let merged = top.merge(sub);
        assert_eq!(merged.listen.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(merged.preload, [PathBuf::from("a.json")]);
        assert_eq!(merged.allow_open, Some(true));
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
            allow_open: Some(true),
            ..Default::default()
        };
        assert!(with(open).is_ok());
    }
}
