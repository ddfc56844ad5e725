//! The `strictproxy lab` process as the lab and browser tests drive it: started with
//! `--listen LISTEN lab --ca-dir CA`, its stdout read line by line, its stderr (the console log)
//! kept whole, stopped by a signal as a person would.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lab binary, its stdout read line by line and its stderr (the console log) kept whole.
pub struct LabProcess {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    /// TMPDIR of the lab, so its folder goes away with the test.
    _tmp: tempfile::TempDir,
}

impl LabProcess {
    /// Starts `strictproxy --listen LISTEN lab --ca-dir CA` and waits for the lessons.
    pub fn start(listen: &str, ca_dir: &Path) -> LabProcess {
        let tmp = tempfile::tempdir().unwrap();
        // The flags go before `lab`: main.rs declares --listen for the top-level command.
        let mut child = Command::new(env!("CARGO_BIN_EXE_strictproxy"))
            .args(["--listen", listen, "lab", "--ca-dir"])
            .arg(ca_dir)
            .env("TMPDIR", tmp.path())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = stdout.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let text = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lab = LabProcess {
            child,
            stdout,
            stderr,
            _tmp: tmp,
        };
        lab.wait_for_line("Ctrl-C stops the lab", Duration::from_secs(60));
        lab
    }

    pub fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Polls stdout until a line contains `needle`; panics with what was printed otherwise.
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the lab exited ({status}) before printing {needle:?}\nstdout:\n{}\nstderr:\n{}",
                    self.lines().join("\n"),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needle:?} within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                self.lines().join("\n"),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value printed after a label in the lab's header, e.g. `traffic log  /tmp/…`.
    pub fn field(&self, label: &str) -> String {
        let line = self
            .lines()
            .into_iter()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` line in:\n{}", self.lines().join("\n")));
        line.trim_start()[label.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    /// The printed commands, in order, without their `  $ ` prompt.
    pub fn commands(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("  $ "))
            .map(str::to_string)
            .collect()
    }

    /// The `origin` lines so far: the requests that reached a demo origin.
    pub fn origin_lines(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.starts_with("origin "))
            .collect()
    }

    /// Sends `signal` (by name, to this child's pid only) and waits for the exit.
    pub fn stop(&mut self, signal: &str, limit: Duration) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the lab did not exit within {limit:?} of SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port the lab printed for a demo origin.
    pub fn origin_port(&self, host: &str) -> u16 {
        let line = self
            .lines()
            .into_iter()
            .find(|l| l.contains("demo origins"))
            .unwrap();
        let at = line.find(&format!("{host}:")).unwrap() + host.len() + 1;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGINT first, as a person would; it flushes the log and the store.
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
