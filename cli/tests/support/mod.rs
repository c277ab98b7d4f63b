//! Helpers shared by the command-line tests: random seeds that can be replayed, a small
//! deterministic generator, and `allot serve` as a child process.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support code"
)]

pub mod lazyfs;
pub mod shop;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ALLOT: &str = env!("CARGO_BIN_EXE_allot");

/// `count` seeds, random per run; the comma-separated ones in the variable `replay` if set.
pub fn seeds(replay: &str, count: u64) -> Vec<u64> {
    if let Ok(given) = std::env::var(replay) {
        return given
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
    }
    let base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64);
    (0..count)
        .map(|i| base.wrapping_add(i * 7_919) % 1_000_000)
        .collect()
}

/// A small deterministic generator, so a seed fixes every random choice of a test.
pub fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

/// `allot serve` on a free loopback port.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, as the server printed it.
    pub base: String,
}

impl Drop for Server {
    /// A failed check must not leave a server running; after a kill or a stop this is a no-op.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `command` with its stdout piped, and waits for the first line it prints (how allot
/// says it is ready).
pub fn spawn_until_first_line(command: &mut Command) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().expect("spawn allot");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("a piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read allot's first line");
    (child, line)
}

impl Server {
    /// Starts `allot serve --listen 127.0.0.1:0 --data-dir DATA ARGS…` with `ALLOT_LOG=log`
    /// (or `ALLOT_TEST_SERVER_LOG`, when set, to look closer at a failing run) and waits for
    /// the line that says where it listens.
    pub fn start(data: &Path, args: &[&str], log: &str) -> Server {
        let log = std::env::var("ALLOT_TEST_SERVER_LOG").unwrap_or_else(|_| log.to_string());
        let mut command = Command::new(ALLOT);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(args)
            .env("ALLOT_LOG", log);
        let (child, line) = spawn_until_first_line(&mut command);
        let base = line
            .trim()
            .strip_prefix("allot listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, base }
    }
}

impl Server {
    /// SIGTERM, as an operator stops it: it must exit 0.
    pub fn stop(&mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit status {status:?} after SIGTERM");
    }
}

/// `allot db verify` on `data` must pass; `what` names the run in the failure.
pub fn assert_db_verify(data: &Path, what: &str) {
    let verify = Command::new(ALLOT)
        .args(["db", "verify", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{what}: db verify failed:\n{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}
