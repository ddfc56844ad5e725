//! Files that hold browsing history — the traffic log, the HAR, the HSTS store — are
//! created readable by their owner only (mode 0600), whatever the umask: a full URL carries
//! tokens in its query string, and the store is a list of the sites someone visited.
//!
//! An existing file keeps the mode its owner gave it when appended to (a log shipper may
//! need group read); [`warn_if_exposed`] says so once at start instead.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Owner read and write, nothing for group and others.
#[cfg(unix)]
const PRIVATE_MODE: u32 = 0o600;

/// Creates `path` (or truncates it) for writing, with mode 0600. A file that existed with a
/// wider mode is narrowed too: `mode` on open applies only when the file is new.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(PRIVATE_MODE);
        let file = options.open(path)?;
        // On the open descriptor (fchmod), so no other path can be swapped in between.
        file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_MODE))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    {
        options.open(path)
    }
}

/// Opens `path` for appending, creating it with mode 0600 if absent. An existing file's
/// mode is left as it is (see [`warn_if_exposed`]).
pub fn open_private_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(PRIVATE_MODE);
    }
    options.open(path)
}

/// A one-line warning when `path` exists and its group or others may read it; `None` when
/// it is private, absent or unreadable (the open that follows reports real errors).
pub fn warn_if_exposed(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        let readers = match (mode & 0o040 != 0, mode & 0o004 != 0) {
            (true, true) => "its group and all users",
            (true, false) => "its group",
            (false, true) => "all users",
            (false, false) => return None,
        };
        Some(format!(
            "{} (mode {mode:03o}) is readable by {readers} and holds browsing history; consider `chmod 600 {}`",
            path.display(),
            path.display()
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The usual umask, which would make a plain `File::create` 0644. Process-wide, but
    /// every test in this crate expects 022 anyway.
    fn umask_022() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: umask only swaps the process's file-creation mask; it cannot fail.
        unsafe {
            libc::umask(0o022);
        }
    }

    #[test]
    fn created_files_are_private_under_umask_022() {
        umask_022();
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        File::create(&plain).unwrap();
        let created = dir.path().join("store.json");
        create_private(&created).unwrap().write_all(b"{}").unwrap();
        let appended = dir.path().join("traffic.jsonl");
        open_private_append(&appended)
            .unwrap()
            .write_all(b"x\n")
            .unwrap();
        assert_eq!(mode(&created), 0o600);
        assert_eq!(mode(&appended), 0o600);
        // Only meaningful where the umask was really set to 022.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert_eq!(mode(&plain), 0o644, "umask 022 in effect");
    }

    #[test]
    fn create_private_narrows_and_truncates_an_existing_file() {
        umask_022();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("traffic.har");
        std::fs::write(&path, b"old content").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private(&path).unwrap().write_all(b"new").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn append_keeps_content_and_the_owner_s_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("traffic.jsonl");
        std::fs::write(&path, b"one\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        open_private_append(&path)
            .unwrap()
            .write_all(b"two\n")
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\n");
        assert_eq!(mode(&path), 0o640);
    }

    #[test]
    fn exposure_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.json");
        assert_eq!(warn_if_exposed(&path), None, "absent");
        std::fs::write(&path, b"[]").unwrap();
        // (mode, warned, who)
        let rows = [
            (0o600, false, ""),
            (0o400, false, ""),
            (0o640, true, "its group"),
            (0o604, true, "all users"),
            (0o644, true, "its group and all users"),
            (0o620, false, ""), // group may write but not read: no history leaks
        ];
        for (m, warned, who) in rows {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
            let warning = warn_if_exposed(&path);
            assert_eq!(warning.is_some(), warned, "{m:o}");
            if let Some(line) = warning {
                assert!(line.contains(who), "{line}");
                assert!(line.contains("chmod 600"), "{line}");
                assert!(!line.contains('\n'), "{line}");
            }
        }
    }
}
