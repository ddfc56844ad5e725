//! The `strictproxy` binary: parses the command line, loads the configuration, and runs the
//! proxy or one of the subcommands (`ca export`, `hsts …`, `report`, `lab`). All the work is
//! in the library; this file only wires it to the terminal and to signals.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use strictproxy::config::{mask_url_password, Config, FlagSet, KeySet, LogFormat, Overrides};
use strictproxy::hsts::interop::Format;
use strictproxy::hsts::store::normalize_host;

/// mimalloc instead of glibc's malloc: a proxied request makes about 75 small allocations
/// (hyper's heads, header maps, the record), and glibc's malloc and free cost ~17,000
/// instructions of each request (issue 15, measured with bench/callgrind.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "strictproxy",
    version,
    about = "A forward proxy that enforces HSTS for every client behind it and makes redirects correct"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The proxy's flags; each is also a key of the same name (snake_case) in the TOML config.
    /// Given before a subcommand, they still apply to it (`strictproxy --listen A lab`).
    #[command(flatten)]
    flags: FlagSet<ProxyFlags>,
}

/// Running the proxy: every flag.
struct ProxyFlags;
impl KeySet for ProxyFlags {
    const KEYS: &'static [&'static str] = &["*"];
}

/// `strictproxy hsts …`: the store and what is loaded into it. `--ca-dir` is accepted (older
/// scripts pass it) but unused, so not shown.
struct HstsFlags;
impl KeySet for HstsFlags {
    const KEYS: &'static [&'static str] = &["hsts_store", "preload", "hsts_redis"];
    const HIDDEN: &'static [&'static str] = &["ca_dir"];
    const GLOBAL: bool = true;
}

/// `strictproxy ca …`: where the CA lives.
struct CaFlags;
impl KeySet for CaFlags {
    const KEYS: &'static [&'static str] = &["ca_dir"];
    const GLOBAL: bool = true;
}

/// `strictproxy lab`: what the lab honours (see `lab::run`).
struct LabFlags;
impl KeySet for LabFlags {
    const KEYS: &'static [&'static str] = &[
        "listen",
        "admin",
        "ca_dir",
        "traffic_log",
        "preload",
        "upstream_ca",
        "resolve",
        "passthrough",
        "log_format",
    ];
}

#[derive(Subcommand)]
enum Command {
    /// The local CA
    Ca {
        #[command(subcommand)]
        action: CaAction,
        #[command(flatten)]
        flags: FlagSet<CaFlags>,
    },
    /// Inspect or edit the HSTS store file (--hsts-store) while the proxy is stopped
    Hsts {
        #[command(subcommand)]
        action: HstsAction,
        #[command(flatten)]
        flags: FlagSet<HstsFlags>,
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
    Lab {
        #[command(flatten)]
        flags: FlagSet<LabFlags>,
    },
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
    /// Write the learned and manual entries for curl (--hsts), wget (--hsts-file), Chromium
    /// (a preload list) or as JSON, to stdout or --output
    Export {
        /// File format: curl's --hsts cache, wget's --hsts-file, a Chromium preload list, or JSON
        #[arg(long, value_name = "curl|wget|chromium-preload|json")]
        format: Format,
        /// Write to FILE (created with mode 0600: it is a browsing history) instead of stdout
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Read a curl, wget, Chromium preload or JSON file into the store (all of it, or nothing)
    Import {
        /// File format: curl's --hsts cache, wget's --hsts-file, a Chromium preload list, or JSON
        #[arg(long, value_name = "curl|wget|chromium-preload|json")]
        format: Format,
        /// The file to read
        file: PathBuf,
        /// Add the entries as manual ones (they outrank learned entries), or as learned ones
        #[arg(long = "as", value_name = "manual|learned", value_enum, default_value_t = ImportAs::Manual)]
        import_as: ImportAs,
    },
}

impl HstsAction {
    /// Whether the action writes to the store (so the store file must be saved after it).
    fn changes_the_store(&self) -> bool {
        matches!(
            self,
            HstsAction::Add { .. } | HstsAction::Delete { .. } | HstsAction::Import { .. }
        )
    }
}

/// What `hsts import` makes of each entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ImportAs {
    Manual,
    Learned,
}

/// Turns transparent huge pages off for this process before the allocator maps anything. With
/// THP at `always` (common on servers), the first touch of a 2 MiB-aligned region — mimalloc's
/// arenas are — commits 2 MiB at once: the idle proxy held 22 MiB instead of 11, and 32 MiB
/// instead of 17 with the 150k preload list (issue 15, S6). A proxy's memory is many small
/// per-connection blocks, which huge pages do not help.
///
/// It runs as an ELF constructor with a priority: those run before constructors without one,
/// such as mimalloc's own start-up, which maps its first arena.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[used]
#[link_section = ".init_array.00101"]
static DISABLE_THP_BEFORE_THE_ALLOCATOR: extern "C" fn() = disable_transparent_huge_pages;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
extern "C" fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process's memory map; it takes no
    // pointers and allocates nothing. A failure (an old kernel) leaves THP as it was.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
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

/// The configuration from the top-level flags and the subcommand's (which win).
fn load<S, T>(top: FlagSet<S>, sub: FlagSet<T>) -> Result<Config> {
    let (path, overrides): (Option<PathBuf>, Overrides) = top.merge(sub);
    Ok(Config::load(path.as_deref(), &overrides)?)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let top = cli.flags;
    match cli.command {
        None => {
            let config = Config::load(top.config.as_deref(), &top.overrides)?;
            // Declared before the runtime, so dropped after it: the last lines get written.
            let _log = init_logging(config.log_format);
            let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
            runtime.block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Ca {
            action: CaAction::Export,
            flags,
        }) => {
            let config = load(top, flags)?;
            let ca = strictproxy::ca::LocalCa::load_or_create(&config.ca_dir)?;
            let mut out = std::io::stdout().lock();
            out.write_all(ca.cert_pem().as_bytes())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Hsts { action, flags }) => hsts_command(&load(top, flags)?, action),
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
        Some(Command::Lab { flags }) => {
            let config = load(top, flags)?;
            let _log = init_logging(config.log_format);
            let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
            runtime.block_on(strictproxy::lab::run(config))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Sets up the console log on stderr. The per-exchange info lines are buffered and written
/// at most every 100 ms by a thread of their own (no write system call per request);
/// warnings and errors are written at once. The guard writes what is left when dropped.
fn init_logging(format: LogFormat) -> strictproxy::log_writer::FlushGuard {
    use tracing_subscriber::EnvFilter;
    // RUST_LOG wins; otherwise one line per exchange and every finding.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = strictproxy::log_writer::BufferedConsole::stderr();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => {
            let ansi = std::io::stderr().is_terminal();
            builder
                .with_ansi(ansi)
                .event_format(strictproxy::console_format::ConsoleFormat::new(ansi))
                .init()
        }
    }
    guard
}

async fn serve(config: Config) -> Result<()> {
    let shown = Shown::from(&config);
    let proxy = strictproxy::server::start(config).await?;
    let ca_path = proxy.ca_path().display().to_string();
    // The banner is for a person; a closed stdout (a supervisor, `| head -1`) must not stop
    // the proxy, so write errors are ignored.
    let mut lines = banner(proxy.addr, proxy.admin_addr, &ca_path, &shown);
    if let Some(fleet) = &proxy.fleet {
        // Says how much of the shared store this instance loaded before it reported ready.
        use strictproxy::hsts::fleet::sync::FirstSync;
        let line = match fleet.first_sync() {
            FirstSync::Loaded(n) => {
                format!(
                    "  shared HSTS store: {} ({n} entries loaded)",
                    fleet.shown_url()
                )
            }
            FirstSync::Unreachable => format!(
                "  shared HSTS store: {} unreachable; enforcing from the local copy, retrying",
                fleet.shown_url()
            ),
        };
        // After the address lines, which scripts read first.
        lines.insert(lines.len().min(3), line);
    }
    let _ = print_lines(&lines);
    wait_for_shutdown(&proxy).await?;
    tracing::info!(
        "shutting down: draining requests, then writing the HSTS store and the traffic log"
    );
    proxy.shutdown().await;
    Ok(())
}

/// What the banner tells about the configuration, taken before the proxy owns it.
struct Shown {
    hsts_exempt: Vec<String>,
    hsts_redis: Option<String>,
    hsts_redis_prefix: String,
}

impl From<&Config> for Shown {
    fn from(config: &Config) -> Shown {
        Shown {
            hsts_exempt: config.hsts_exempt.clone(),
            hsts_redis: config.hsts_redis.clone(),
            hsts_redis_prefix: config.hsts_redis_prefix.clone(),
        }
    }
}

/// The start-up lines. The first two are read by scripts and tests: the listen address and
/// the CA path, then the admin API's address.
fn banner(
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    ca_path: &str,
    shown: &Shown,
) -> Vec<String> {
    let mut lines = vec![format!(
        "strictproxy listening on http://{addr} (CA: {ca_path})"
    )];
    match admin {
        Some(admin) => {
            lines.push(format!(
                "  admin API: http://{admin}/hsts  http://{admin}/metrics"
            ));
            lines.push(format!("  console: http://{admin}/"));
        }
        None => lines.push("  admin API: off (enable with --admin 127.0.0.1:8081)".to_string()),
    }
    if !shown.hsts_exempt.is_empty() {
        // The operator's exemptions switch HSTS off for these hosts: never silently.
        lines.push(format!(
            "  HSTS exempt (never upgraded): {}",
            shown.hsts_exempt.join(", ")
        ));
    }
    if let Some(url) = &shown.hsts_redis {
        // The password never reaches a terminal, a log collector or a screenshot.
        lines.push(format!(
            "  HSTS store shared through {} (prefix {})",
            mask_url_password(url),
            shown.hsts_redis_prefix
        ));
    }
    lines.push(format!(
        "  trust the CA:  sudo cp {ca_path} /usr/local/share/ca-certificates/strictproxy.crt && sudo update-ca-certificates"
    ));
    lines.push(format!(
        "  or per client: curl -x http://{addr} --cacert {ca_path} https://example.org/   (other devices: open http://strictproxy.local/ through the proxy)"
    ));
    lines
}

fn print_lines(lines: &[String]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

#[cfg(unix)]
async fn wait_for_shutdown(proxy: &strictproxy::server::RunningProxy) -> Result<()> {
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
async fn wait_for_shutdown(_proxy: &strictproxy::server::RunningProxy) -> Result<()> {
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch Ctrl-C")?;
    Ok(())
}

fn hsts_command(config: &Config, action: HstsAction) -> Result<ExitCode> {
    use strictproxy::hsts::persist;
    if config.hsts_redis.is_some() {
        let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
        return runtime.block_on(hsts_shared_command(config, action));
    }
    let Some(path) = &config.hsts_store else {
        bail!("the hsts subcommands work on a store file: pass --hsts-store FILE (or set hsts_store in the config)");
    };
    let store = strictproxy::hsts::load::load_hsts(config)?;
    let changes = action.changes_the_store();
    let code = hsts_action(config, store.as_ref(), action)?;
    if changes && code == ExitCode::SUCCESS {
        persist::save_atomic(path, &store.dynamic_entries())?;
    }
    Ok(code)
}

/// One `hsts` action on a store, whichever backs it (the store file or the shared store).
fn hsts_action(
    config: &Config,
    store: &dyn strictproxy::hsts::store::HstsStore,
    action: HstsAction,
) -> Result<ExitCode> {
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
            let value = strictproxy::admin::host_status(
                store,
                &strictproxy::hsts::exempt::Exemptions::new(&config.hsts_exempt),
                &host,
            );
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        }
        HstsAction::Add {
            domain,
            include_subdomains,
            max_age,
        } => {
            let domain = domain_of(&domain)?;
            let entry = store.add_manual(&domain, include_subdomains, max_age)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&entry)?)?;
        }
        HstsAction::Delete { domain } => {
            let domain = domain_of(&domain)?;
            if !store.remove(&domain) {
                eprintln!("strictproxy: no learned or manual HSTS entry for {domain}");
                return Ok(ExitCode::from(1));
            }
            writeln!(out, "deleted {domain}")?;
        }
        HstsAction::Export { format, output } => {
            hsts_export(store, format, output.as_deref(), &mut out)?
        }
        HstsAction::Import {
            format,
            file,
            import_as,
        } => hsts_import(store, format, &file, import_as, &mut out)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `hsts export`: the store in another tool's format, to stdout or to a private file (wget
/// ignores an HSTS database that others can write to; the store is a browsing history).
fn hsts_export(
    store: &dyn strictproxy::hsts::store::HstsStore,
    format: strictproxy::hsts::interop::Format,
    output: Option<&std::path::Path>,
    out: &mut impl Write,
) -> Result<()> {
    use strictproxy::hsts::{interop, store::now_unix};
    let text = interop::export_store(store, format, now_unix());
    match output {
        Some(file) => strictproxy::private_file::create_private(file)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write {}", file.display()))?,
        None => out.write_all(text.as_bytes())?,
    }
    Ok(())
}

/// `hsts import`: all the file's entries or none (a malformed line names its number).
fn hsts_import(
    store: &dyn strictproxy::hsts::store::HstsStore,
    format: strictproxy::hsts::interop::Format,
    file: &std::path::Path,
    import_as: ImportAs,
    out: &mut impl Write,
) -> Result<()> {
    use strictproxy::hsts::{interop, store::now_unix};
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let imported = interop::import(&text, format, now_unix())
        .with_context(|| format!("{} ({format}): nothing imported", file.display()))?;
    let learned = import_as == ImportAs::Learned;
    let taken = interop::import_into(store, &imported, learned);
    writeln!(
        out,
        "imported {taken} of {} entries from {} as {}; skipped {} expired, {} for a non-default port, {} not forcing https",
        imported.entries.len(),
        file.display(),
        if learned { "learned" } else { "manual" },
        imported.skipped_expired,
        imported.skipped_ports,
        imported.skipped_not_enforcing,
    )?;
    Ok(())
}

/// The `hsts` subcommands on the shared store (`--hsts-redis`): read from and write to Redis
/// directly; every running instance hears the change.
async fn hsts_shared_command(config: &Config, action: HstsAction) -> Result<ExitCode> {
    let (store, fleet) = strictproxy::hsts::fleet::open_shared_store(config).await?;
    let code = hsts_action(config, store.as_ref(), action)?;
    if !fleet.flush(std::time::Duration::from_secs(5)).await {
        bail!(strictproxy::hsts::fleet::FleetError::NotWritten(
            fleet.shown_url().to_string()
        ));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn help(path: &[&str]) -> String {
        let mut cmd = Cli::command();
        // Propagates the global flags into the nested subcommands, as parsing does.
        cmd.build();
        let mut sub = &mut cmd;
        for name in path {
            sub = sub.find_subcommand_mut(name).unwrap();
        }
        sub.render_long_help().to_string()
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn each_subcommand_lists_only_its_flags() {
        // (subcommand, flags its help must show, flags it must not)
        let rows: &[(&[&str], &[&str], &[&str])] = &[
            (
                &[],
                &["--listen", "--hsts-exempt", "--hsts-redis", "--config"],
                &[],
            ),
            (
                &["report"],
                &["--har"],
                &["--listen", "--config", "--ca-dir", "--preload"],
            ),
            (
                &["hsts"],
                &["--config", "--hsts-store", "--preload", "--hsts-redis"],
                &["--listen", "--admin", "--ca-dir", "--resolve", "--auth"],
            ),
            // Given after the action too (`hsts list --hsts-store F`).
            (
                &["hsts", "list"],
                &["--hsts-store", "--preload", "--hsts-redis"],
                &["--listen"],
            ),
            (
                &["ca", "export"],
                &["--config", "--ca-dir"],
                &["--listen", "--hsts-store"],
            ),
            (
                &["lab"],
                &["--listen", "--ca-dir", "--admin"],
                &["--auth", "--allow-open", "--hsts-redis"],
            ),
        ];
        for (path, shown, absent) in rows {
            let text = help(path);
            for flag in *shown {
                assert!(
                    text.contains(&format!("{flag} ")),
                    "{path:?} lacks {flag}:\n{text}"
                );
            }
            for flag in *absent {
                assert!(
                    !text.contains(&format!("{flag} ")),
                    "{path:?} lists {flag}:\n{text}"
                );
            }
        }
    }

    /// Every way the tests, the scripts and the README pass flags keeps parsing.
    #[test]
    fn existing_invocations_still_parse() {
        let rows: &[&[&str]] = &[
            &["--listen", "127.0.0.1:0", "ca", "export", "--ca-dir", "d"],
            &["ca", "--ca-dir", "d", "export"],
            &[
                "hsts",
                "add",
                "x.test",
                "--include-subdomains",
                "--max-age",
                "1000",
                "--hsts-store",
                "s",
                "--ca-dir",
                "d",
            ],
            &["--hsts-store", "s", "hsts", "list"],
            &["hsts", "--hsts-store", "s", "query", "x.test"],
            &[
                "--listen",
                "0.0.0.0:0",
                "--allow-open",
                "lab",
                "--ca-dir",
                "d",
            ],
            &["--listen", "127.0.0.1:0", "lab", "--ca-dir", "d"],
            &[
                "--listen",
                "127.0.0.1:0",
                "report",
                "f.jsonl",
                "--har",
                "o.har",
            ],
            &[
                "--config",
                "c.toml",
                "--hsts-exempt",
                "a.test",
                "--hsts-exempt",
                "*.b.test",
            ],
        ];
        for args in rows {
            let argv = std::iter::once("strictproxy").chain(args.iter().copied());
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!("{args:?}: {e}");
            }
        }
    }

    #[test]
    fn subcommand_flags_win_and_top_level_flags_still_apply() {
        let cli = Cli::try_parse_from([
            "strictproxy",
            "--listen",
            "127.0.0.1:1",
            "--ca-dir",
            "top",
            "lab",
            "--ca-dir",
            "sub",
        ])
        .unwrap();
        let Some(Command::Lab { flags }) = cli.command else {
            panic!("not lab")
        };
        let config = load(cli.flags, flags).unwrap();
        assert_eq!(config.listen.port(), 1);
        assert_eq!(config.ca_dir, PathBuf::from("sub"));
    }

    #[test]
    fn hsts_export_and_import_round_trip_through_a_curl_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let hsts = |store: &str, args: &[&str]| {
            let argv = ["strictproxy", "hsts", "--hsts-store", store]
                .into_iter()
                .chain(args.iter().copied());
            run(Cli::try_parse_from(argv).unwrap())
        };
        let (a, b, curl) = (path("a.json"), path("b.json"), path("curl.txt"));
        hsts(&a, &["add", "cli.test", "--include-subdomains"]).unwrap();
        hsts(&a, &["export", "--format", "curl", "--output", &curl]).unwrap();
        let text = std::fs::read_to_string(&curl).unwrap();
        assert!(text.contains(".cli.test \""), "{text}");
        hsts(
            &b,
            &["import", "--format", "curl", &curl, "--as", "learned"],
        )
        .unwrap();
        let stored = std::fs::read_to_string(&b).unwrap();
        assert!(
            stored.contains("cli.test") && stored.contains("learned"),
            "{stored}"
        );

        // A malformed line: the error names it, and nothing is imported.
        let bad = path("bad.txt");
        std::fs::write(&bad, "ok.test \"unlimited\"\nnot a line\n").unwrap();
        let c = path("c.json");
        let err = hsts(&c, &["import", "--format", "curl", &bad]).unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        assert!(!std::path::Path::new(&c).exists());
    }

    #[test]
    fn banner_lines() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let admin: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let shown = Shown {
            hsts_exempt: vec!["a.test".into(), "*.lab.test".into()],
            hsts_redis: Some("redis://user:secret@h:6379/0".into()),
            hsts_redis_prefix: "strictproxy:hsts:".into(),
        };
        let lines = banner(addr, Some(admin), "certs/ca.pem", &shown);
        assert!(lines[0]
            .starts_with("strictproxy listening on http://127.0.0.1:8080 (CA: certs/ca.pem)"));
        assert!(
            lines[1].starts_with("  admin API: http://127.0.0.1:8081/"),
            "{}",
            lines[1]
        );
        let text = lines.join("\n");
        assert!(text.contains("console: http://127.0.0.1:8081/\n"), "{text}");
        assert!(
            text.contains("HSTS exempt (never upgraded): a.test, *.lab.test"),
            "{text}"
        );
        assert!(text.contains("redis://user:***@h:6379/0"), "{text}");
        assert!(!text.contains("secret"), "{text}");

        let quiet = Shown {
            hsts_exempt: vec![],
            hsts_redis: None,
            hsts_redis_prefix: "strictproxy:hsts:".into(),
        };
        let text = banner(addr, None, "certs/ca.pem", &quiet).join("\n");
        assert!(text.contains("admin API: off"), "{text}");
        assert!(!text.contains("console:"), "{text}");
        assert!(!text.contains("exempt"), "{text}");
        assert!(!text.contains("Redis") && !text.contains("redis"), "{text}");
    }
}
