//! `allot db backup` and `allot db restore` on real data directories: written by a purchase
//! load and by `allot serve`, copied, compared by `db stats`, served again after a restore, and
//! refused while a server holds the directory or when the backup is not whole.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{ALLOT, Server, assert_db_verify};

/// `allot ARGS… --data-dir DATA`.
fn allot(args: &[&str], data: &Path) -> Output {
    Command::new(ALLOT)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("ALLOT_LOG", "error")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn succeeds(output: Output) -> String {
    assert!(output.status.success(), "{}", text(&output));
    text(&output)
}

/// `allot db backup --to TO --data-dir DATA`.
fn backup_to(data: &Path, to: &Path) -> Output {
    allot(&["db", "backup", "--to", to.to_str().unwrap()], data)
}

/// `allot db restore --from FROM [--force] --data-dir DATA`.
fn restore(from: &Path, data: &Path, force: bool) -> Output {
    let mut args = vec!["db", "restore", "--from", from.to_str().unwrap()];
    if force {
        args.push("--force");
    }
    allot(&args, data)
}

/// Fails with exit code 1 and a message containing `expected`.
fn fails(output: Output, expected: &str) {
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains(expected), "{}", text(&output));
}

/// Purchases, sales, releases and restocks for a moment, as `allot debug load` makes them.
fn load(data: &Path, seconds: &str) {
    let acks = data.with_extension("acks");
    let output = Command::new(ALLOT)
        .args([
            "debug",
            "load",
            "--seconds",
            seconds,
            "--threads",
            "2",
            "--acks",
        ])
        .arg(&acks)
        .arg("--data-dir")
        .arg(data)
        .env("ALLOT_LOG", "error")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
}

/// What must be equal between a data directory and its copy.
fn contents(data: &Path) -> serde_json::Value {
    let stats: serde_json::Value =
        serde_json::from_str(&succeeds(allot(&["db", "stats", "--json"], data))).unwrap();
    serde_json::json!({
        "last_seq": stats["last_seq"],
        "skus": stats["skus"],
        "units": stats["units"],
        "reservations": stats["reservations"],
    })
}

/// The status line of `GET PATH`.
fn get(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let address = base.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: allot\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

/// Waits until the server has opened its data directory.
fn wait_ready(base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while get(base, "/readyz") != "HTTP/1.1 200 OK" {
        assert!(std::time::Instant::now() < deadline, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Nothing half-done is left beside `path`: no hidden staging directory.
fn assert_no_staging_beside(path: &Path) {
    let parent = path.parent().unwrap();
    let hidden: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "left behind: {hidden:?}");
}

#[test]
fn a_backup_is_a_whole_verified_copy_and_a_restore_brings_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    load(&data, "2");
    std::fs::create_dir_all(data.join("mail")).unwrap();
    std::fs::write(
        data.join("mail/welcome.eml"),
        b"Subject: hello\r\n\r\nhi\r\n",
    )
    .unwrap();
    let original = contents(&data);
    assert_ne!(original["last_seq"], 0, "the load wrote nothing");

    let backup = dir.path().join("backups/monday");
    let said = succeeds(backup_to(&data, &backup));
    assert!(said.contains("verify: clean"), "{said}");
    // Piped, the progress bar draws nothing.
    assert!(
        !said.contains("copying") && !said.contains("replaying"),
        "{said}"
    );
    assert_eq!(contents(&backup), original);
    assert_eq!(
        std::fs::read(backup.join("keys")).unwrap(),
        std::fs::read(data.join("keys")).unwrap()
    );
    assert!(backup.join("mail/welcome.eml").is_file());
    assert_no_staging_beside(&backup);

    // A backup never overwrites.
    fails(backup_to(&data, &backup), "already exists");
    assert_eq!(contents(&backup), original);

    // Into a new directory, and into an empty one, no --force is needed.
    let fresh = dir.path().join("fresh");
    succeeds(restore(&backup, &fresh, false));
    assert_eq!(contents(&fresh), original);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    succeeds(restore(&backup, &empty, false));
    assert_eq!(contents(&empty), original);

    // The shop moves on (the load sells out, so an admin is what changes); restoring over
    // it needs --force, and keeps what it replaced.
    let created = Command::new(ALLOT)
        .args([
            "admin",
            "create-admin",
            "--email",
            "boss@example.com",
            "--data-dir",
        ])
        .arg(&data)
        .env("ALLOT_ADMIN_PASSWORD", "Adm1n-pass-phrase")
        .env("ALLOT_LOG", "error")
        .output()
        .unwrap();
    succeeds(created);
    let moved_on = contents(&data);
    assert_ne!(moved_on, original);
    fails(restore(&backup, &data, false), "--force");
    assert_eq!(contents(&data), moved_on);
    let said = succeeds(restore(&backup, &data, true));
    assert_eq!(contents(&data), original);
    let aside = said
        .lines()
        .find_map(|l| l.strip_prefix("the directory it replaced is now "))
        .unwrap_or_else(|| panic!("no moved-aside path in {said}"));
    assert_eq!(contents(Path::new(aside)), moved_on);
    assert_no_staging_beside(&data);

    // The restored directory serves, stops cleanly and verifies. (The load's SKUs have no
    // products, and the demo catalog's would collide with them.)
    let mut server = Server::start(&data, &["--no-demo-catalog"], "error");
    wait_ready(&server.base);
    assert_eq!(get(&server.base, "/healthz"), "HTTP/1.1 200 OK");
    server.stop();
    assert_db_verify(&data, "after the restore");
}

#[test]
fn a_running_server_keeps_backup_and_restore_off_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let spare = dir.path().join("spare");
    load(&spare, "1");
    let backup = dir.path().join("backup");
    succeeds(backup_to(&spare, &backup));

    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[], "error");
    wait_ready(&server.base);
    let elsewhere = dir.path().join("elsewhere");
    fails(backup_to(&data, &elsewhere), "in use by another process");
    assert!(!elsewhere.exists());
    fails(restore(&backup, &data, true), "in use by another process");
    assert_no_staging_beside(&data);
    // Nor is a directory in use restored from: it would be copied half-written.
    fails(
        restore(&data, &elsewhere, false),
        "in use by another process",
    );
    assert!(!elsewhere.exists());
    assert_eq!(get(&server.base, "/healthz"), "HTTP/1.1 200 OK");
    server.stop();
    assert_db_verify(&data, "after the refused restore");
}

#[test]
fn a_backup_that_is_not_whole_is_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    load(&data, "1");
    let target = dir.path().join("target");

    // Not a data directory at all.
    let stray = dir.path().join("stray");
    std::fs::create_dir(&stray).unwrap();
    std::fs::write(stray.join("notes.txt"), b"nothing here").unwrap();
    fails(
        restore(&stray, &target, false),
        "not an allot data directory",
    );
    fails(backup_to(&stray, &target), "not an allot data directory");

    // A backup without its key file would make a server mint new keys, and every sealed
    // address and session would be lost with the old ones.
    let backup = dir.path().join("backup");
    succeeds(backup_to(&data, &backup));
    std::fs::remove_file(backup.join("keys")).unwrap();
    fails(restore(&backup, &target, false), "key file");
    // Backing up such a directory says so (the copy is kept: it is what there is).
    let copy = dir.path().join("copy");
    fails(backup_to(&backup, &copy), "PROBLEM: the key file");
    std::fs::write(backup.join("keys"), b"not a key file").unwrap();
    fails(restore(&backup, &target, false), "key file");
    assert!(!target.exists());
    assert_no_staging_beside(&target);
}

#[test]
fn a_backup_of_a_killed_directory_restores_as_opening_it_would() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut load = Command::new(ALLOT)
        .args([
            "debug",
            "load",
            "--seconds",
            "60",
            "--threads",
            "2",
            "--acks",
        ])
        .arg(dir.path().join("acks"))
        .arg("--data-dir")
        .arg(&data)
        .env("ALLOT_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed mid-load once it is writing: whatever a crash leaves (a torn batch, a batch
    // without its events) is in the backup too.
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(load.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");
    std::thread::sleep(std::time::Duration::from_millis(300));
    load.kill().unwrap();
    load.wait().unwrap();

    let backup = dir.path().join("backup");
    let said = text(&backup_to(&data, &backup));
    assert!(backup.join("store").is_dir(), "{said}");
    let before = listing(&backup);
    let restored = dir.path().join("restored");
    let said = succeeds(restore(&backup, &restored, false));
    assert!(said.contains("verify: clean"), "{said}");
    assert_db_verify(&restored, "the restored copy of a killed directory");
    // The repair happened on the copy: a restore writes nothing into the backup.
    assert_eq!(listing(&backup), before);
}

/// Every file under `dir` with its length and modification time.
fn listing(dir: &Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap().flatten() {
            let metadata = entry.metadata().unwrap();
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                files.push((entry.path(), metadata.len(), metadata.modified().unwrap()));
            }
        }
    }
    files.sort();
    files
}
