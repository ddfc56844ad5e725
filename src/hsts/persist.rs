//! Persistence of learned and manual HSTS entries (`--hsts-store FILE`).
//!
//! The file is JSON, `{"version": 1, "entries": [StoredEntry…]}`, learned and manual entries only
//! (preload entries come from `--preload` at every start). It is rewritten atomically: the
//! snapshot goes to a temporary file in the same directory, which is fsynced, renamed over the
//! old file, and the directory fsynced, so a crash or power cut leaves either the old file or
//! the new one, never a truncated mix (the same write-then-rename Chromium's
//! `ImportantFileWriter` uses for its `TransportSecurity` file).
//!
//! Writes are debounced: the first change wakes the persister, which waits [`DEBOUNCE`] for
//! more changes and then writes them all at once, and two writes start at least
//! [`MIN_WRITE_INTERVAL`] apart. A continuous flood of learned headers (issue 11 item 5: a
//! wildcard site teaching one entry per random subdomain) thus costs at most one rewrite a
//! second, and any change still reaches the file within the 2 seconds the contract
//! promises. The last write happens at shutdown ([`Persister::shutdown`]).
//!
//! A missing file is a first start. A corrupt or unreadable one gives a warning naming the
//! file and the error, a copy of it kept beside it as `FILE.corrupt`, and an empty store:
//! never a crash.

use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex, Notify};
use tokio::task::JoinHandle;

use super::host::normalize_host;
use super::store::{now_unix, HstsStore, Source, StoredEntry};

/// The file format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// How long the persister gathers changes before it writes them.
pub const DEBOUNCE: Duration = Duration::from_millis(400);

/// The least time between the starts of two writes: bounds the rewrite rate under a flood.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// After a failed write (disk full, permissions), how long before trying again without
/// waiting for another change.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A file-system step failed; says which step and which file.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The path has no file name to write to.
    #[error("HSTS store path {} does not name a file", .0.display())]
    NotAFile(PathBuf),
    /// The entries could not be serialized (cannot happen for well-formed entries).
    #[error("cannot serialize the HSTS store: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The blocking write task panicked or was cancelled.
    #[error("the HSTS store writer task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What [`load`] found.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// The unexpired learned and manual entries, ready for [`super::store::MemoryStore::restore`].
    pub entries: Vec<StoredEntry>,
    /// A message for the operator when the file could not be used in full.
    pub warning: Option<String>,
}

#[derive(Serialize)]
struct FileOut<'a> {
    version: u32,
    entries: &'a [StoredEntry],
}

/// Entries are read one by one, so that one bad entry costs only itself.
#[derive(Deserialize)]
struct FileIn {
    version: u32,
    entries: Vec<serde_json::Value>,
}

/// Reads the store file. Never fails: problems become a warning and as much of the file as
/// could be used. Expired, preload-sourced and malformed entries are dropped.
pub fn load(path: &Path) -> LoadOutcome {
    load_at(path, now_unix())
}

/// [`load`] at a given time.
pub fn load_at(path: &Path, now: u64) -> LoadOutcome {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        // First start: nothing learned yet, nothing to warn about.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LoadOutcome::default(),
        Err(e) => {
            return LoadOutcome {
                entries: Vec::new(),
                warning: Some(format!(
                    "cannot read HSTS store {}: {e}; starting with no learned entries, and \
                     changes will not be saved until it is readable and writable",
                    path.display()
                )),
            }
        }
    };

    let file: FileIn = match serde_json::from_slice(&bytes) {
        Ok(file) => file,
        Err(e) => return corrupt(path, &bytes, &format!("it is not a valid store file ({e})")),
    };
    if file.version != FORMAT_VERSION {
        return corrupt(
            path,
            &bytes,
            &format!(
                "it has format version {}, this strictproxy reads version {FORMAT_VERSION}",
                file.version
            ),
        );
    }

    let total = file.entries.len();
    let mut entries = Vec::with_capacity(total);
    let mut malformed = 0usize;
    for value in file.entries {
        let Ok(entry) = serde_json::from_value::<StoredEntry>(value) else {
            malformed += 1;
            continue;
        };
        let usable = entry.source != Source::Preload
            && entry.expires_at.is_some()
            && normalize_host(&entry.domain).is_some();
        if !usable {
            malformed += 1;
        } else if !entry.is_expired_at(now) {
            entries.push(entry);
        }
    }
    let warning = (malformed > 0).then(|| {
        format!(
            "HSTS store {}: ignored {malformed} of {total} entries that are not valid learned \
             or manual entries",
            path.display()
        )
    });
    LoadOutcome { entries, warning }
}

/// A corrupt file is kept as `FILE.corrupt` for the operator before the next save replaces it.
fn corrupt(path: &Path, bytes: &[u8], why: &str) -> LoadOutcome {
    let backup = sibling(path, ".corrupt");
    let kept = match backup.as_deref().map(|b| fs::write(b, bytes).map(|()| b)) {
        Some(Ok(b)) => format!("a copy is kept as {}", b.display()),
        Some(Err(e)) => format!("no copy could be kept ({e})"),
        None => "no copy could be kept".to_owned(),
    };
    LoadOutcome {
        entries: Vec::new(),
        warning: Some(format!(
            "HSTS store {} is unusable: {why}; starting with no learned entries ({kept}); \
             the file will be replaced at the next change",
            path.display()
        )),
    }
}

/// `dir/name` → `dir/name<suffix>`, or `None` when the path has no file name.
fn sibling(path: &Path, suffix: &str) -> Option<PathBuf> {
    let mut name = path.file_name()?.to_os_string();
    name.push(suffix);
    Some(path.with_file_name(name))
}

/// `dir/name` → `dir/.name.tmp`: in the same directory, so the rename is atomic (POSIX
/// rename(2) only is within one file system).
fn temp_path(path: &Path) -> Option<PathBuf> {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name()?);
    name.push(".tmp");
    Some(path.with_file_name(name))
}

/// Writes `entries` to `path` atomically: temp file, fsync, rename, fsync of the directory.
/// The old file is untouched until the new one is complete. A leftover temp file from an
/// interrupted run is simply overwritten.
pub fn save_atomic(path: &Path, entries: &[StoredEntry]) -> Result<(), PersistError> {
    let tmp = temp_path(path).ok_or_else(|| PersistError::NotAFile(path.to_owned()))?;
    let result = write_then_rename(path, &tmp, entries);
    if result.is_err() {
        // Best effort: do not leave a half-written temp file behind.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(path: &Path, tmp: &Path, entries: &[StoredEntry]) -> Result<(), PersistError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| PersistError::Io {
            action,
            path,
            source,
        }
    };

    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // The learned hosts are a browsing history: readable by the owner only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(tmp).map_err(io("create", tmp))?;

    let mut writer = BufWriter::new(file);
    serde_json::to_writer_pretty(
        &mut writer,
        &FileOut {
            version: FORMAT_VERSION,
            entries,
        },
    )?;
    writer.write_all(b"\n").map_err(io("write", tmp))?;
    let file = writer
        .into_inner()
        .map_err(|e| io("write", tmp)(e.into_error()))?;
    file.sync_all().map_err(io("fsync", tmp))?;
    drop(file);

    fs::rename(tmp, path).map_err(io("rename the new store over", path))?;

    // The rename is durable only once the directory entry is (rename(2) + fsync(dir)).
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync the directory", dir))?;
    }
    Ok(())
}

/// The background writer of the store file. Dropping it stops the task without a final
/// write; call [`Persister::shutdown`] for that.
pub struct Persister {
    inner: Arc<Inner>,
    stop: Arc<Notify>,
    task: Option<JoinHandle<()>>,
}

struct Inner {
    store: Arc<dyn HstsStore>,
    path: PathBuf,
    /// Serializes writers (the task and `flush`), so snapshots reach the file in order.
    write_lock: Mutex<()>,
    /// The store generation the file reflects.
    saved: watch::Sender<u64>,
    /// Completed writes, for metrics and tests.
    writes: AtomicU64,
}

impl Inner {
    /// Snapshots the store and writes it, unless the file is already current (and `force`
    /// is false).
    async fn write(&self, force: bool) -> Result<(), PersistError> {
        let _guard = self.write_lock.lock().await;
        let generation = self.store.generation();
        if !force && generation == *self.saved.borrow() {
            return Ok(());
        }
        self.store.prune_expired();
        let entries = self.store.dynamic_entries();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || save_atomic(&path, &entries)).await??;
        self.saved.send_replace(generation);
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Starts the persister for `store` on the current tokio runtime. It writes `path` within
/// [`DEBOUNCE`] (plus the write itself) of each change. The store's current state is taken
/// as already saved (it was just loaded from `path`).
pub fn spawn_persister(store: Arc<dyn HstsStore>, path: PathBuf) -> Persister {
    let (saved, _) = watch::channel(store.generation());
    let inner = Arc::new(Inner {
        store,
        path,
        write_lock: Mutex::new(()),
        saved,
        writes: AtomicU64::new(0),
    });
    let stop = Arc::new(Notify::new());
    let task = tokio::spawn(run(Arc::clone(&inner), Arc::clone(&stop)));
    Persister {
        inner,
        stop,
        task: Some(task),
    }
}

async fn run(inner: Arc<Inner>, stop: Arc<Notify>) {
    let mut failed = false;
    let mut last_write: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = stop.notified() => return,
            () = inner.store.changed().notified() => {}
            () = tokio::time::sleep(RETRY_AFTER), if failed => {}
        }
        // Gather the rest of a burst into the same write, and keep writes apart.
        let mut until = tokio::time::Instant::now() + DEBOUNCE;
        if let Some(last) = last_write {
            until = until.max(last + MIN_WRITE_INTERVAL);
        }
        tokio::select! {
            () = stop.notified() => return,
            () = tokio::time::sleep_until(until) => {}
        }
        last_write = Some(tokio::time::Instant::now());
        match inner.write(false).await {
            Ok(()) => failed = false,
            Err(error) => {
                failed = true;
                tracing::warn!(path = %inner.path.display(), %error, "cannot save the HSTS store; will retry");
            }
        }
    }
}

impl Persister {
    /// Writes the current state now, whether or not it changed since the last write.
    pub async fn flush(&self) -> Result<(), PersistError> {
        self.inner.write(true).await
    }

    /// Stops the background task and writes the final state (graceful shutdown).
    pub async fn shutdown(mut self) -> Result<(), PersistError> {
        self.stop.notify_one();
        if let Some(task) = self.task.take() {
            // The task only ends by returning; a JoinError would mean it panicked, and the
            // final flush below still saves the state.
            let _ = task.await;
        }
        self.flush().await
    }

    /// The store generation the file reflects; changes after each completed write. Lets a
    /// caller (or a test) wait for a change to be on disk without sleeping.
    pub fn saved_generation(&self) -> watch::Receiver<u64> {
        self.inner.saved.subscribe()
    }

    /// How many snapshots have been written so far.
    pub fn writes(&self) -> u64 {
        self.inner.writes.load(Ordering::Relaxed)
    }

    /// The file this persister writes.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsts::header::StsPolicy;
    use crate::hsts::learn::StsUpdate;
    use crate::hsts::store::MemoryStore;
    use std::time::Instant;

    const NOW: u64 = 1_700_000_000;

    fn entry(domain: &str, expires_at: Option<u64>, source: Source) -> StoredEntry {
        StoredEntry {
            domain: domain.into(),
            include_subdomains: true,
            expires_at,
            source,
        }
    }

    fn learn(host: &str, max_age: u64) -> StsUpdate {
        StsUpdate::Learn {
            host: host.into(),
            policy: StsPolicy {
                max_age,
                include_subdomains: false,
                preload: false,
            },
        }
    }

    #[test]
    fn round_trip_keeps_unexpired_learned_and_manual() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsts.json");
        let entries = vec![
            entry("a.test", Some(NOW + 10), Source::Learned),
            entry("b.test", Some(NOW + 20), Source::Manual),
        ];
        save_atomic(&path, &entries).unwrap();
        let out = load_at(&path, NOW);
        assert_eq!(out.entries, entries);
        assert_eq!(out.warning, None);

        // The documented format.
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["entries"][1]["source"], "manual");
        assert_eq!(json["entries"][0]["expires_at"], NOW + 10);

        // Expired entries are pruned on load.
        let later = load_at(&path, NOW + 15);
        assert_eq!(later.entries, entries[1..]);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsts.json");
        save_atomic(&path, &[]).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn missing_file_is_a_quiet_first_start() {
        let dir = tempfile::tempdir().unwrap();
        let out = load_at(&dir.path().join("none.json"), NOW);
        assert!(out.entries.is_empty());
        assert_eq!(out.warning, None);
    }

    #[test]
    fn corrupt_files_warn_and_are_kept_aside() {
        let rows: &[(&str, &[u8], &str)] = &[
            (
                "truncated",
                b"{\"version\": 1, \"entries\": [ {\"domain\": \"a.te",
                "not a valid store file",
            ),
            ("garbage", b"\x00\x01 not json", "not a valid store file"),
            ("empty", b"", "not a valid store file"),
            ("wrong shape", b"[1, 2, 3]", "not a valid store file"),
            (
                "future version",
                b"{\"version\": 2, \"entries\": []}",
                "format version 2",
            ),
        ];
        for &(case, bytes, why) in rows {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("hsts.json");
            fs::write(&path, bytes).unwrap();
            let out = load_at(&path, NOW);
            assert!(out.entries.is_empty(), "{case}");
            let warning = out.warning.unwrap_or_default();
            assert!(
                warning.contains(&path.display().to_string()),
                "{case}: {warning}"
            );
            assert!(warning.contains(why), "{case}: {warning}");
            assert!(warning.contains("hsts.json.corrupt"), "{case}: {warning}");
            // The original is kept for the operator, byte for byte.
            assert_eq!(
                fs::read(dir.path().join("hsts.json.corrupt")).unwrap(),
                bytes
            );
            assert_eq!(
                fs::read(&path).unwrap(),
                bytes,
                "{case}: load never writes the file"
            );
        }
    }

    #[test]
    fn bad_entries_are_dropped_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsts.json");
        let text = serde_json::json!({"version": 1, "entries": [
            {"domain": "good.test", "include_subdomains": false, "expires_at": NOW + 5, "source": "learned"},
            {"domain": "bad source.test", "include_subdomains": false, "expires_at": NOW + 5, "source": "wat"},
            {"domain": "pre.test", "include_subdomains": false, "expires_at": null, "source": "preload"},
            {"domain": "noexp.test", "include_subdomains": false, "expires_at": null, "source": "manual"},
            {"domain": "bad..name", "include_subdomains": false, "expires_at": NOW + 5, "source": "manual"},
            {"domain": "old.test", "include_subdomains": false, "expires_at": NOW - 5, "source": "learned"},
        ]});
        fs::write(&path, text.to_string()).unwrap();
        let out = load_at(&path, NOW);
        let names: Vec<_> = out.entries.iter().map(|e| e.domain.as_str()).collect();
        assert_eq!(names, ["good.test"]);
        let warning = out.warning.unwrap();
        assert!(warning.contains("ignored 4 of 6 entries"), "{warning}");
    }

    #[test]
    fn interrupted_write_never_damages_the_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsts.json");
        let entries = vec![entry("kept.test", Some(NOW + 100), Source::Learned)];
        save_atomic(&path, &entries).unwrap();
        let before = fs::read(&path).unwrap();

        // A crash mid-write leaves a truncated temp file beside the real one.
        let tmp = dir.path().join(".hsts.json.tmp");
        fs::write(&tmp, b"{\"version\": 1, \"entries\": [ {\"dom").unwrap();
        assert_eq!(fs::read(&path).unwrap(), before);
        // load reads only the real file and ignores the leftover.
        let out = load_at(&path, NOW);
        assert_eq!((out.entries, out.warning), (entries, None));

        // The next save overwrites the leftover and replaces the file whole.
        let newer = vec![entry("new.test", Some(NOW + 100), Source::Manual)];
        save_atomic(&path, &newer).unwrap();
        assert!(!tmp.exists());
        assert_eq!(load_at(&path, NOW).entries, newer);
    }

    #[test]
    fn a_failed_save_leaves_the_old_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsts.json");
        save_atomic(&path, &[entry("old.test", Some(NOW + 9), Source::Learned)]).unwrap();
        let before = fs::read(&path).unwrap();
        // The temp path is taken by a directory: creating the temp file fails.
        fs::create_dir(dir.path().join(".hsts.json.tmp")).unwrap();
        let err = save_atomic(&path, &[]).unwrap_err();
        assert!(err.to_string().starts_with("cannot create "), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);
        // A path that is not a file name at all.
        assert!(matches!(
            save_atomic(Path::new("/"), &[]),
            Err(PersistError::NotAFile(_))
        ));
    }

    async fn wait_saved(persister: &Persister, generation: u64, limit: Duration) -> Duration {
        let start = Instant::now();
        let mut rx = persister.saved_generation();
        tokio::time::timeout(limit, rx.wait_for(|&g| g >= generation))
            .await
            .expect("the change reached the file in time")
            .unwrap();
        start.elapsed()
    }

    #[tokio::test]
    async fn a_change_reaches_the_file_within_two_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsts.json");
        let store = Arc::new(MemoryStore::new());
        let persister = spawn_persister(store.clone(), path.clone());

        assert!(store.apply(&learn("fresh.test", 3600)));
        let took = wait_saved(&persister, store.generation(), Duration::from_secs(2)).await;
        assert!(took >= DEBOUNCE, "debounced: {took:?}");
        let names: Vec<_> = load(&path).entries.into_iter().map(|e| e.domain).collect();
        assert_eq!(names, ["fresh.test"]);

        // Removal is a change too.
        assert!(store.remove("fresh.test"));
        wait_saved(&persister, store.generation(), Duration::from_secs(2)).await;
        assert!(load(&path).entries.is_empty());
        persister.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_flood_of_changes_is_coalesced_into_few_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsts.json");
        let store = Arc::new(MemoryStore::new());
        let persister = spawn_persister(store.clone(), path.clone());

        for i in 0..2000 {
            // Ten sites, so that the per-site bound (1,000) keeps all 2,000.
            assert!(store.apply(&learn(&format!("h{i}.flood{}.test", i % 10), 3600)));
            if i % 200 == 0 {
                tokio::task::yield_now().await;
            }
        }
        wait_saved(&persister, store.generation(), Duration::from_secs(2)).await;
        assert_eq!(load(&path).entries.len(), 2000);
        let writes = persister.writes();
        assert!(
            (1..=3).contains(&writes),
            "2000 changes took {writes} writes"
        );
        // A stale wake-up after the burst finds the file current and writes nothing.
        tokio::time::sleep(DEBOUNCE * 2).await;
        assert_eq!(persister.writes(), writes);
        persister.shutdown().await.unwrap();
    }

    /// Issue 11 item 5: a learning flood that never pauses still costs at most one rewrite
    /// a second, and the last change still reaches the file within two seconds.
    #[tokio::test]
    async fn a_continuous_flood_is_written_at_a_bounded_rate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsts.json");
        let store = Arc::new(MemoryStore::new());
        let persister = spawn_persister(store.clone(), path.clone());
        let start = Instant::now();
        let mut i = 0;
        while start.elapsed() < Duration::from_millis(3500) {
            store.apply(&learn(&format!("h{i}.flood{}.test", i % 50), 3600));
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = wait_saved(&persister, store.generation(), Duration::from_secs(2)).await;
        let writes = persister.writes();
        // 3.5 s of changes plus the final write: one write a second at most.
        assert!(
            (3..=5).contains(&writes),
            "{i} changes in 3.5 s took {writes} writes"
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert_eq!(load(&path).entries.len(), i);
        persister.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_writes_the_final_state_and_restart_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsts.json");
        let store = Arc::new(MemoryStore::new());
        let persister = spawn_persister(store.clone(), path.clone());
        store.apply(&learn("last.test", 3600));
        store.add_manual("ops.test", true, 7200).unwrap();
        // Shut down at once, before the debounce would have written.
        persister.shutdown().await.unwrap();

        let out = load(&path);
        assert_eq!(out.warning, None);
        let restarted = MemoryStore::new();
        assert_eq!(restarted.restore(out.entries), 2);
        assert!(restarted.is_enforced("last.test"));
        assert!(restarted.is_enforced("www.ops.test"));
        assert_eq!(restarted.counts(), (1, 1, 0));
    }

    #[tokio::test]
    async fn flush_writes_even_without_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("hsts.json");
        fs::create_dir(dir.path().join("sub")).unwrap();
        let store = Arc::new(MemoryStore::new());
        let persister = spawn_persister(store, path.clone());
        persister.flush().await.unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\n  \"version\": 1,\n  \"entries\": []\n}\n"
        );
        assert_eq!(persister.path(), path);
    }
}
