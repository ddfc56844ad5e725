//! The `strictproxy` binary: parses the command line, loads the configuration, and runs the
//! proxy or one of the subcommands (`ca export`, `hsts …`, `report`, `lab`). All the work is
//! in the library; this file only wires it to the terminal and to signals.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use strictproxy::config::{Config, LogFormat, Overrides};
use strictproxy::hsts::store::normalize_host;

#[derive(Parser)]
#[command(
    name = "strictproxy",
    version,
    about = "A forward proxy that enforces HSTS for every client behind it and makes redirects correct"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    flags: Flags,
}

/// The flags; each is also a key of the same name (snake_case) in the TOML config.
#[derive(Args, Default)]
struct Flags {
    /// TOML configuration file (see config/strictproxy.toml); flags win over it
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    /// Admin API address (loopback only), e.g. 127.0.0.1:8081
    #[arg(long, global = true, value_name = "ADDR")]
    admin: Option<String>,
    /// Folder of the local CA (ca.pem, ca-key.pem; created if absent) [default: certs]
    #[arg(long, global = true, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// JSON file where learned and manual HSTS entries persist
    #[arg(long, global = true, value_name = "FILE")]
    hsts_store: Option<PathBuf>,
    /// Chromium-format HSTS preload list to import (repeatable)
    #[arg(long, global = true, value_name = "FILE")]
    preload: Vec<PathBuf>,
    /// Extra CA certificate (PEM) trusted for upstream TLS (repeatable)
    #[arg(long, global = true, value_name = "FILE")]
    upstream_ca: Vec<PathBuf>,
    /// Send upstream connections for HOST to IP, like curl --resolve (repeatable)
    #[arg(long, global = true, value_name = "HOST=IP")]
    resolve: Vec<String>,
    /// Tunnel HOST (or *.DOMAIN) blind, without interception (repeatable)
    #[arg(long, global = true, value_name = "PATTERN")]
    passthrough: Vec<String>,
    /// Ambiguous 301/302 after non-GET: log them, or rewrite them to 308/307 [default: log]
    #[arg(long, global = true, value_name = "log|rewrite")]
    redirect_policy: Option<String>,
    /// JSON-lines traffic log, one object per exchange
    #[arg(long, global = true, value_name = "FILE")]
    traffic_log: Option<PathBuf>,
    /// Require proxy credentials USER:PASS (Proxy-Authorization: Basic)
    #[arg(long, global = true, value_name = "USER:PASS")]
    auth: Option<String>,
    /// Allow a non-loopback listen address without --auth
    #[arg(long, global = true)]
    allow_open: bool,
    /// Console log format [default: text]
    #[arg(long, global = true, value_name = "text|json")]
    log_format: Option<String>,
    /// Never upgrade HOST (or *.DOMAIN) to HTTPS: an http-only lab or device (repeatable)
    #[arg(long, global = true, value_name = "PATTERN")]
    hsts_exempt: Vec<String>,
    /// Let clients not on loopback reach this private CIDR anyway (repeatable)
    #[arg(long, global = true, value_name = "CIDR")]
    allow_private_destination: Vec<String>,
    /// Share the HSTS store with a fleet through Redis: redis://[user:pass@]host:port/db
    #[arg(long, global = true, value_name = "URL")]
    hsts_redis: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// The local CA
    Ca {
        #[command(subcommand)]
        action: CaAction,
    },
    /// Inspect or edit the HSTS store file (--hsts-store) while the proxy is stopped
    Hsts {
        #[command(subcommand)]
        action: HstsAction,
    },
    /// Summarize a traffic log (counts, findings, STS senders); HAR 1.2, JUnit, a CI gate
    Report {
        /// The traffic log (JSON lines)
        file: PathBuf,
        /// Also write the log as HAR 1.2 to this file (credential headers redacted)
        #[arg(long, value_name = "OUT")]
        har: Option<PathBuf>,
        /// Exit 1 when the log holds a finding of one of these kinds ("all" for every kind)
        #[arg(long, value_name = "KIND[,KIND...]|all")]
        fail_on: Option<String>,
        /// Also write the findings as a JUnit XML report to this file
        #[arg(long, value_name = "OUT.xml")]
        junit: Option<PathBuf>,
        /// Summary format [default: text]
        #[arg(long, value_name = "text|json|markdown")]
        format: Option<String>,
        /// Keep Authorization, Proxy-Authorization, Cookie and Set-Cookie values in the HAR
        #[arg(long)]
        no_redact: bool,
    },
    /// Run a self-contained demo on loopback: the proxy plus demo origins, with the lessons
    Lab,
}

#[derive(Subcommand)]
enum CaAction {
    /// Print the CA certificate (PEM) to stdout, creating the CA if absent
    Export,
}

#[derive(Subcommand)]
enum HstsAction {
    /// List every learned and manual entry (JSON)
    List,
    /// Show whether HOST is enforced and which entry decides
    Query { host: String },
    /// Add a manual entry
    Add {
        domain: String,
        #[arg(long)]
        include_subdomains: bool,
        /// Lifetime in seconds [default: one year]
        #[arg(long, default_value_t = 31_536_000)]
        max_age: u64,
    },
    /// Delete a learned or manual entry
    Delete { domain: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("strictproxy: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn overrides(flags: &Flags) -> Overrides {
    Overrides {
        listen: flags.listen.clone(),
        admin: flags.admin.clone(),
        ca_dir: flags.ca_dir.clone(),
        hsts_store: flags.hsts_store.clone(),
        preload: flags.preload.clone(),
        upstream_ca: flags.upstream_ca.clone(),
        resolve: flags.resolve.clone(),
        passthrough: flags.passthrough.clone(),
        redirect_policy: flags.redirect_policy.clone(),
        traffic_log: flags.traffic_log.clone(),
        auth: flags.auth.clone(),
        allow_open: flags.allow_open,
        log_format: flags.log_format.clone(),
        hsts_exempt: flags.hsts_exempt.clone(),
        allow_private_destinations: flags.allow_private_destination.clone(),
        hsts_redis: flags.hsts_redis.clone(),
        ..Overrides::default()
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config = Config::load(cli.flags.config.as_deref(), &overrides(&cli.flags))?;
    match cli.command {
        None => {
            init_logging(config.log_format);
            let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
            runtime.block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Ca {
            action: CaAction::Export,
        }) => {
            let ca = strictproxy::ca::LocalCa::load_or_create(&config.ca_dir)?;
            let mut out = std::io::stdout().lock();
            out.write_all(ca.cert_pem().as_bytes())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Hsts { action }) => hsts_command(&config, action),
        Some(Command::Report {
            file,
            har,
            fail_on,
            junit,
            format,
            no_redact,
        }) => {
            let args = strictproxy::report::ReportArgs {
                file,
                har,
                fail_on,
                junit,
                format,
                no_redact,
            };
            let (mut out, mut notes) = (std::io::stdout().lock(), std::io::stderr().lock());
            match strictproxy::report::run(&args, &mut out, &mut notes) {
                Ok(code) => Ok(ExitCode::from(code)),
                // A usage mistake exits 2, as clap's own do.
                Err(err) if err.is_usage() => {
                    eprintln!("strictproxy: {err}");
                    Ok(ExitCode::from(2))
                }
                Err(err) => Err(err.into()),
            }
        }
        Some(Command::Lab) => {
            init_logging(config.log_format);
            let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
            runtime.block_on(strictproxy::lab::run(config))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // RUST_LOG wins; otherwise one line per exchange and every finding.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .compact()
            .init(),
    }
}

async fn serve(config: Config) -> Result<()> {
    let proxy = strictproxy::proxy::start(config).await?;
    let ca_path = proxy.ca_path().display().to_string();
    // The banner is for a person; a closed stdout (a supervisor, `| head -1`) must not stop
    // the proxy, so write errors are ignored.
    let _ = print_banner(&proxy, &ca_path);
    wait_for_shutdown(&proxy).await?;
    tracing::info!(
        "shutting down: draining requests, then writing the HSTS store and the traffic log"
    );
    proxy.shutdown().await;
    Ok(())
}

fn print_banner(proxy: &strictproxy::proxy::RunningProxy, ca_path: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "strictproxy listening on http://{} (CA: {ca_path})",
        proxy.addr
    )?;
    match proxy.admin_addr {
        Some(admin) => writeln!(
            out,
            "  admin API: http://{admin}/hsts  http://{admin}/metrics"
        )?,
        None => writeln!(out, "  admin API: off (enable with --admin 127.0.0.1:8081)")?,
    }
    writeln!(
            out,
            "  trust the CA:  sudo cp {ca_path} /usr/local/share/ca-certificates/strictproxy.crt && sudo update-ca-certificates"
        )?;
    writeln!(
            out,
            "  or per client: curl -x http://{} --cacert {ca_path} https://example.org/   (other devices: open http://strictproxy.local/ through the proxy)",
            proxy.addr
        )?;
    out.flush()
}

#[cfg(unix)]
async fn wait_for_shutdown(proxy: &strictproxy::proxy::RunningProxy) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reopening the traffic log");
                proxy.reopen_traffic_log();
            }
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_shutdown(_proxy: &strictproxy::proxy::RunningProxy) -> Result<()> {
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch Ctrl-C")?;
    Ok(())
}

fn hsts_command(config: &Config, action: HstsAction) -> Result<ExitCode> {
    use strictproxy::hsts::persist;
    let Some(path) = &config.hsts_store else {
        bail!("the hsts subcommands work on a store file: pass --hsts-store FILE (or set hsts_store in the config)");
    };
    let store = strictproxy::hsts::load::load_hsts(config)?;
    let domain_of = |raw: &str| -> Result<String> {
        normalize_host(raw)
            .map(|h| h.into_owned())
            .with_context(|| format!("`{raw}` is not a valid host name"))
    };
    let mut out = std::io::stdout().lock();
    match action {
        HstsAction::List => {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&store.dynamic_entries())?
            )?;
        }
        HstsAction::Query { host } => {
            let host = domain_of(&host)?;
            let value = strictproxy::admin::host_status(store.as_ref(), &host);
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        }
        HstsAction::Add {
            domain,
            include_subdomains,
            max_age,
        } => {
            let domain = domain_of(&domain)?;
            let entry = store.add_manual(&domain, include_subdomains, max_age)?;
            persist::save_atomic(path, &store.dynamic_entries())?;
            writeln!(out, "{}", serde_json::to_string_pretty(&entry)?)?;
        }
        HstsAction::Delete { domain } => {
            let domain = domain_of(&domain)?;
            if !store.remove(&domain) {
                eprintln!("strictproxy: no learned or manual HSTS entry for {domain}");
                return Ok(ExitCode::from(1));
            }
            persist::save_atomic(path, &store.dynamic_entries())?;
            writeln!(out, "deleted {domain}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
