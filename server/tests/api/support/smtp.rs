//! A real SMTP server for tests: Python's aiosmtpd (`smtp_sink.py` beside this file), started
//! on a free port, storing every message it receives in a temporary directory.
//!
//! aiosmtpd is installed on first use with pip into the target directory, so a fresh machine
//! needs only `python3` with pip and access to PyPI.
//!
//! ```ignore
//! let smtp = SmtpServer::start();
//! // ... configure the mailer with `smtp.url()`, trigger a mail ...
//! let raw = smtp.wait_for_mail_to("alice@example.com", Duration::from_secs(5)).await;
//! assert!(body_text(&raw).contains("123456"));
//! ```

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use base64::Engine as _;

const PYTHON: &str = "python3";
/// Pinned so that every machine runs the same server; the install directory is named after it,
/// so changing the pin installs afresh.
const AIOSMTPD_REQUIREMENT: &str = "aiosmtpd==1.4.6";
const SINK_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/api/support/smtp_sink.py"
);
/// Python start-up and the aiosmtpd import take a few hundred ms; this is the bound for a
/// slow, loaded machine.
const STARTUP_TIMEOUT_MS: u64 = 15_000;
const POLL_INTERVAL_MS: u64 = 20;

pub struct SmtpServer {
    port: u16,
    child: Child,
    mail_dir: tempfile::TempDir,
    log_path: PathBuf,
    /// Messages already handed out by `wait_for_mail_to`, so that a second wait for the same
    /// recipient returns the next message.
    taken: Mutex<HashSet<String>>,
}

impl SmtpServer {
    /// Starts a server on a free port of 127.0.0.1 and returns once it accepts connections.
    pub fn start() -> SmtpServer {
        Self::start_on_port(0)
    }

    /// Starts a server on `port` of 127.0.0.1 (0: a free one) and returns once it accepts.
    pub fn start_on_port(port: u16) -> SmtpServer {
        let python_path = aiosmtpd_python_path();
        let mail_dir = tempfile::tempdir().expect("temp dir for received mail");
        // Outside `mail_dir`, which holds only messages.
        let log_path = mail_dir.path().with_extension("smtpd.log");
        let log = fs::File::create(&log_path).expect("create the SMTP server's log");
        let mut command = Command::new(PYTHON);
        command
            .arg(SINK_SCRIPT)
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(mail_dir.path())
            // The script exits when its stdin closes, i.e. when this process goes.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(path) = python_path {
            command.env("PYTHONPATH", path);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {PYTHON} for the SMTP server: {error}"));
        let stdout = child.stdout.take().expect("piped stdout");
        // From here on, Drop kills the process whatever happens.
        let mut server = SmtpServer {
            port: 0,
            child,
            mail_dir,
            log_path,
            taken: Mutex::new(HashSet::new()),
        };

        let (line_sender, line_receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line);
            let _ = line_sender.send(read.map(|_| line));
        });
        let startup_timeout = Duration::from_millis(STARTUP_TIMEOUT_MS);
        let line = match line_receiver.recv_timeout(startup_timeout) {
            Ok(Ok(line)) => line,
            Ok(Err(error)) => panic!("reading the SMTP server's port: {error}"),
            Err(_) => panic!(
                "the SMTP server did not start within {STARTUP_TIMEOUT_MS} ms:\n{}",
                server.log()
            ),
        };
        server.port = line.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the SMTP server printed no port ({line:?}); its log:\n{}",
                server.log()
            )
        });

        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", server.port)).is_err() {
            assert!(
                started.elapsed() < startup_timeout,
                "the SMTP server does not accept on port {}:\n{}",
                server.port,
                server.log()
            );
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
        server
    }

    /// A URL for `MailTransportConfig::Smtp`: plain SMTP, no authentication.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The raw text of the oldest message for `to` (an envelope recipient) not returned
    /// before; it starts with `Delivered-To:` lines. Panics after `timeout`.
    pub async fn wait_for_mail_to(&self, to: &str, timeout: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(raw) = self.take_mail_to(to) {
                return raw;
            }
            if started.elapsed() > timeout {
                let recipients: Vec<String> = self
                    .all_mail()
                    .iter()
                    .flat_map(|raw| delivered_to(raw))
                    .collect();
                panic!(
                    "no mail to {to} within {timeout:?}; mail arrived for {recipients:?}; \
                     server log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        }
    }

    /// Every message received so far, in arrival order.
    pub fn all_mail(&self) -> Vec<String> {
        self.message_files()
            .into_iter()
            .map(|(_, raw)| raw)
            .collect()
    }

    fn take_mail_to(&self, to: &str) -> Option<String> {
        let mut taken = self.taken.lock().expect("taken set");
        self.message_files()
            .into_iter()
            .filter(|(name, _)| !taken.contains(name))
            .find(|(_, raw)| {
                delivered_to(raw)
                    .iter()
                    .any(|rcpt| rcpt.eq_ignore_ascii_case(to))
            })
            .map(|(name, raw)| {
                taken.insert(name);
                raw
            })
    }

    /// (file name, text) of each stored message, sorted by name, which is arrival order.
    fn message_files(&self) -> Vec<(String, String)> {
        let mut messages: Vec<(String, String)> = fs::read_dir(self.mail_dir.path())
            .expect("list received mail")
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                // Temp files start with a dot; only renamed, complete files count.
                if name.starts_with('.') || !name.ends_with(".eml") {
                    return None;
                }
                let bytes = fs::read(self.mail_dir.path().join(&name)).ok()?;
                Some((name, String::from_utf8_lossy(&bytes).into_owned()))
            })
            .collect();
        messages.sort();
        messages
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log_path);
    }
}

fn delivered_to(raw: &str) -> Vec<String> {
    raw.lines()
        .map_while(|line| line.strip_prefix("Delivered-To: "))
        .map(|rcpt| rcpt.trim().to_owned())
        .collect()
}

/// The unfolded value of the first header `name` (case-insensitive), as written: RFC 2047
/// encoded words are left encoded.
pub fn header(raw: &str, name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in raw.lines() {
        if line.is_empty() {
            break;
        }
        match value.as_mut() {
            Some(value) if line.starts_with([' ', '\t']) => value.push_str(line),
            Some(_) => break,
            None => {
                if let Some((field, rest)) = line.split_once(':')
                    && field.eq_ignore_ascii_case(name)
                {
                    value = Some(rest.trim_start().to_owned());
                }
            }
        }
    }
    value.map(|value| value.trim_end().to_owned())
}

/// The body of a single-part message, with its Content-Transfer-Encoding undone, line ends
/// turned to `\n` and trailing line ends trimmed (the sender adds one to end the message).
pub fn body_text(raw: &str) -> String {
    let body = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))
        .map_or("", |(_, body)| body);
    let encoding = header(raw, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let decoded = match encoding.as_str() {
        "quoted-printable" => decode_quoted_printable(body),
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .expect("base64 body");
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => body.to_owned(),
    };
    decoded
        .replace("\r\n", "\n")
        .trim_end_matches('\n')
        .to_owned()
}

fn decode_quoted_printable(body: &str) -> String {
    let body = body.replace("=\r\n", "").replace("=\n", "");
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'=')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

static AIOSMTPD_PYTHON_PATH: OnceLock<Option<PathBuf>> = OnceLock::new();

/// The PYTHONPATH under which `import aiosmtpd` works (None: it works as it is), installing
/// aiosmtpd on first use. Threads of one test binary wait on the OnceLock; separate test
/// processes each install into their own directory and rename it into place, and the loser of
/// that race keeps the winner's.
fn aiosmtpd_python_path() -> &'static Option<PathBuf> {
    AIOSMTPD_PYTHON_PATH.get_or_init(|| {
        let install_name = format!("python-{}", AIOSMTPD_REQUIREMENT.replace("==", "-"));
        let site = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&install_name);
        if site.join("aiosmtpd").is_dir() {
            return Some(site);
        }
        if python_imports_aiosmtpd() {
            return None;
        }
        let partial = site.with_file_name(format!("{install_name}.partial-{}", std::process::id()));
        let _ = fs::remove_dir_all(&partial);
        let output = Command::new(PYTHON)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-input", "--target"])
            .arg(&partial)
            .arg(AIOSMTPD_REQUIREMENT)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("cannot run {PYTHON} -m pip: {error}"));
        assert!(
            output.status.success(),
            "`{PYTHON} -m pip install {AIOSMTPD_REQUIREMENT}` failed (the SMTP tests need \
             python3 with pip and access to PyPI):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if let Err(error) = fs::rename(&partial, &site) {
            let _ = fs::remove_dir_all(&partial);
            assert!(
                site.join("aiosmtpd").is_dir(),
                "cannot move aiosmtpd into {}: {error}",
                site.display()
            );
        }
        Some(site)
    })
}

fn python_imports_aiosmtpd() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A local port that was free a moment ago: nothing listens on it until a test starts a relay
/// there.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
