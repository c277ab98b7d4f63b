//! LazyFS for tests: a FUSE file system that keeps written data in its own cache until the
//! program fsyncs it; [`LazyFs::power_cut`] drops everything not fsynced, as a power cut drops
//! the page cache, and unmounts. Built once into the target directory by `lazyfs.sh` beside
//! this file, which also installs the Debian packages it needs. Needs root and /dev/fuse.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/lazyfs.sh");
/// Mounting and unmounting take milliseconds; this is the bound for a loaded machine.
const WAIT_MAX: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(10);
const CLEAR_CACHE: &str = "lazyfs::clear-cache\n";
const CLEARED: &str = "finished::clear-cache";

/// The lazyfs binary, built on first use (a minute, once per target directory).
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lazyfs");
        let built = Command::new("bash")
            .arg(SCRIPT)
            .arg(&out)
            .stderr(Stdio::inherit())
            .output()
            .expect("run lazyfs.sh");
        assert!(built.status.success(), "lazyfs.sh failed: {built:?}");
        let path = String::from_utf8(built.stdout).expect("a UTF-8 path");
        PathBuf::from(
            path.lines()
                .last()
                .expect("lazyfs.sh prints the binary")
                .trim(),
        )
    })
}

/// One LazyFS mount of `under` (the "disk") at `mount`.
pub struct LazyFs {
    root: PathBuf,
    under: PathBuf,
    mount: PathBuf,
    child: Option<Child>,
    cleared: Option<File>,
}

impl LazyFs {
    /// Prepares `root/under` (the disk), `root/mnt` (the mount point) and LazyFS's
    /// configuration, and mounts.
    pub fn mount_in(root: &Path) -> LazyFs {
        assert!(
            Path::new("/dev/fuse").exists(),
            "the power-loss test needs /dev/fuse (and root) for LazyFS"
        );
        let under = root.join("under");
        let mount = root.join("mnt");
        fs::create_dir_all(&under).unwrap();
        fs::create_dir_all(&mount).unwrap();
        let config = format!(
            "[faults]\nfifo_path=\"{fifo}\"\nfifo_path_completed=\"{completed}\"\n\
             [cache]\napply_eviction=false\n\
             [cache.simple]\ncustom_size=\"1gb\"\nblocks_per_page=1\n\
             [filesystem]\nlog_all_operations=false\nlogfile=\"{log}\"\n",
            fifo = root.join("faults.fifo").display(),
            completed = root.join("completed.fifo").display(),
            log = root.join("lazyfs.log").display(),
        );
        fs::write(root.join("config.toml"), config).unwrap();
        let mut lazyfs = LazyFs {
            root: root.to_path_buf(),
            under,
            mount,
            child: None,
            cleared: None,
        };
        lazyfs.mount();
        lazyfs
    }

    /// Where programs read and write: through LazyFS's cache.
    pub fn mount_point(&self) -> &Path {
        &self.mount
    }

    /// The disk below: what survives a power cut.
    pub fn disk(&self) -> &Path {
        &self.under
    }

    /// Mounts again after [`power_cut`](Self::power_cut).
    pub fn mount(&mut self) {
        assert!(self.child.is_none(), "mounted already");
        let output = File::create(self.root.join("lazyfs.out")).unwrap();
        let child = Command::new(binary())
            .arg(&self.mount)
            .arg("--config-path")
            .arg(self.root.join("config.toml"))
            .args(["-o", "allow_other", "-o", "modules=subdir", "-o"])
            .arg(format!("subdir={}", self.under.display()))
            .arg("-f")
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("spawn lazyfs");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT_MAX;
        while !self.is_mounted() {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "lazyfs did not mount: {}",
                self.output()
            );
            std::thread::sleep(POLL);
        }
        // LazyFS makes its fifos at start; its fault worker opens the "completed" one for writing
        // and waits for a reader, so it is opened here, without waiting for the writer.
        let completed = self.root.join("completed.fifo");
        while !completed.exists() {
            assert!(
                Instant::now() < deadline,
                "lazyfs made no fifo: {}",
                self.output()
            );
            std::thread::sleep(POLL);
        }
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&completed)
            .unwrap();
        self.cleared = Some(reader);
    }

    /// The power cut: drops every write not fsynced (LazyFS's clear-cache, waited for), then
    /// unmounts. Whoever had files open on the mount must be gone already (killed): a running
    /// program would go on writing into a file system that has forgotten part of what it wrote,
    /// which no real power cut allows.
    ///
    /// A LazyFS that died on its own (it crashes now and then on sparse writes, a defect of
    /// LazyFS) has already lost what was not fsynced, as a power cut does: then it is only
    /// unmounted.
    pub fn power_cut(&mut self) {
        if let Some(status) = self.crashed() {
            eprintln!(
                "lazyfs died on its own ({status}); its lost cache is this round's power cut: {}",
                self.output().lines().last().unwrap_or_default()
            );
            self.unmount();
            return;
        }
        let mut faults = OpenOptions::new()
            .write(true)
            .open(self.root.join("faults.fifo"))
            .unwrap();
        faults.write_all(CLEAR_CACHE.as_bytes()).unwrap();
        drop(faults);
        let deadline = Instant::now() + WAIT_MAX;
        let mut heard = String::new();
        let reader = self.cleared.as_mut().expect("mounted");
        while !heard.contains(CLEARED) {
            let mut buffer = [0u8; 256];
            match reader.read(&mut buffer) {
                Ok(n) => heard.push_str(&String::from_utf8_lossy(&buffer[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("reading lazyfs's completed fifo: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "lazyfs never finished clearing its cache (heard {heard:?})"
            );
            std::thread::sleep(POLL);
        }
        self.unmount();
    }

    /// How LazyFS ended, if it has ended on its own.
    pub fn crashed(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    fn unmount(&mut self) {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            // A dead LazyFS leaves a mount that answers nothing; the kernel lets go of it lazily.
            if self.crashed().is_some() && self.is_mounted() {
                let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
            }
            let status = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mount)
                .stderr(Stdio::null())
                .status()
                .expect("run fusermount3");
            if status.success() || !self.is_mounted() {
                break;
            }
            // Busy: a process killed a moment ago may still be letting go of its files.
            assert!(
                Instant::now() < deadline,
                "could not unmount {}",
                self.mount.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut child = self.child.take().expect("mounted");
        let deadline = Instant::now() + WAIT_MAX;
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "lazyfs did not exit after unmount"
            );
            std::thread::sleep(POLL);
        }
        self.cleared = None;
    }

    fn is_mounted(&self) -> bool {
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let point = self.mount.to_string_lossy();
        mounts
            .lines()
            .any(|line| line.split(' ').nth(1) == Some(point.as_ref()))
    }

    fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("started");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("lazyfs exited ({status}): {}", self.output());
        }
    }

    fn output(&self) -> String {
        fs::read_to_string(self.root.join("lazyfs.out")).unwrap_or_default()
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A LazyFS that died under the server fails its writes ("Transport endpoint is not
            // connected"); say why, before its directory goes.
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("lazyfs had exited on its own ({status}): {}", self.output());
            }
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mount)
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            if self.is_mounted() {
                let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
            }
        }
    }
}
