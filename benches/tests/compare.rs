//! benches/compare/run.sh end to end in its short mode: the ceiling, allot and the three
//! baselines (Redis + Lua + MariaDB, a fair lock in Redis around MariaDB, PostgreSQL's row lock)
//! each take a small drop from the same generator, and every drop's invariant checks pass
//! (nothing oversold, conservation, limits, every acknowledged order kept). It asserts that the
//! harness works and the systems are correct at a low rate, not how fast any of them is.

use std::path::{Path, PathBuf};
use std::process::Command;

const SYSTEMS: [&str; 5] = ["ceiling", "allot", "redis-lua", "fair-lock", "postgres"];

/// The `allot` binary of this build: beside the baseline's (a workspace test run builds it;
/// alone, this package's tests build it first).
fn allot_bin(root: &Path) -> PathBuf {
    let baseline = Path::new(env!("CARGO_BIN_EXE_baseline"));
    let allot = baseline.with_file_name("allot");
    if !allot.exists() {
        let built = Command::new(env!("CARGO"))
            .args(["build", "-p", "allot", "--bin", "allot"])
            .current_dir(root)
            .status()
            .expect("cargo runs");
        assert!(built.success(), "cargo build -p allot failed");
    }
    allot
}

#[test]
fn the_same_drop_on_allot_and_the_alternatives_oversells_nowhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new("bash")
        .arg(root.join("benches/compare/run.sh"))
        .arg("--short")
        .env("ALLOT_BIN", allot_bin(&root))
        .env("BASELINE_BIN", env!("CARGO_BIN_EXE_baseline"))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{text}");
    assert!(stdout.contains("compare: OK"), "{text}");
    for system in SYSTEMS {
        let row = stdout
            .lines()
            .find(|line| line.starts_with(&format!("| {system} |")))
            .unwrap_or_else(|| panic!("no row for {system}:\n{text}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | system | answered/s | × ceiling | placed | p50 | p99 | p99.9 | oversold | failed | checks |
        assert_eq!(cells[8], "0", "{system} oversold: {row}");
        assert_eq!(cells[9], "0", "{system} failed answers: {row}");
        assert_eq!(cells[10], "all passed", "{row}");
        let placed: u64 = cells[4].parse().unwrap_or_else(|_| panic!("{row}"));
        if system == "ceiling" {
            assert_eq!(placed, 0, "the ceiling places nothing: {row}");
        } else {
            assert!(placed > 0, "{system} placed nothing: {row}");
        }
    }
}
