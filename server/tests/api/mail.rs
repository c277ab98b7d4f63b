//! The mailer against real peers: the file system, and a real SMTP server (aiosmtpd).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::smtp::{SmtpServer, body_text, free_port, header};
use allot_server::mail::{MailConfig, MailError, MailTransportConfig, Mailer, OutgoingMail};

const FROM: &str = "allot <no-reply@allot.local>";
const WAIT: Duration = Duration::from_secs(10);

fn mail(to: &str, subject: &str, body_text: &str) -> OutgoingMail {
    OutgoingMail {
        to: to.to_owned(),
        subject: subject.to_owned(),
        body_text: body_text.to_owned(),
    }
}

fn start_mailer(transport: MailTransportConfig) -> Mailer {
    Mailer::start(MailConfig {
        transport,
        from: FROM.to_owned(),
    })
    .expect("mailer starts")
}

/// The `.eml` files in `dir`, sorted by name, once there are `count` of them.
async fn wait_for_eml_files(dir: &Path, count: usize) -> Vec<PathBuf> {
    let started = Instant::now();
    loop {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("list the mail directory")
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        if files.len() >= count {
            files.sort();
            return files;
        }
        assert!(
            started.elapsed() < WAIT,
            "{count} .eml files expected, found {files:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_mode_writes_each_mail_as_an_eml_file() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mail_dir = data_dir.path().join("mail");
    let mailer = start_mailer(MailTransportConfig::Files {
        dir: mail_dir.clone(),
    });
    assert!(mail_dir.is_dir(), "start creates the directory");

    mailer
        .send(mail(
            "alice@example.com",
            "Your sign-up code",
            "Your code is 314159.\nIt expires in 10 minutes.",
        ))
        .expect("first mail queued");
    mailer
        .send(mail(
            "Bob <bob@example.org>",
            "Password reset",
            "Reset code: 271828",
        ))
        .expect("second mail queued");

    let files = wait_for_eml_files(&mail_dir, 2).await;
    assert_eq!(files.len(), 2, "{files:?}");
    let texts: Vec<String> = files
        .iter()
        .map(|path| std::fs::read_to_string(path).expect("read .eml"))
        .collect();
    let alice = texts
        .iter()
        .find(|raw| header(raw, "To").as_deref() == Some("alice@example.com"))
        .unwrap_or_else(|| panic!("a mail to alice in {texts:#?}"));
    assert_eq!(
        header(alice, "Subject").as_deref(),
        Some("Your sign-up code")
    );
    assert_eq!(header(alice, "From").as_deref(), Some(FROM));
    assert!(header(alice, "Date").is_some());
    assert!(header(alice, "Message-ID").is_some_and(|id| id.ends_with("@allot.local>")));
    assert!(
        body_text(alice).contains("Your code is 314159.\nIt expires in 10 minutes."),
        "{alice}"
    );
    let bob = texts
        .iter()
        .find(|raw| header(raw, "To").as_deref() == Some("Bob <bob@example.org>"))
        .unwrap_or_else(|| panic!("a mail to bob in {texts:#?}"));
    assert_eq!(header(bob, "Subject").as_deref(), Some("Password reset"));
    assert!(body_text(bob).contains("Reset code: 271828"), "{bob}");

    let leftovers: Vec<_> = std::fs::read_dir(&mail_dir)
        .expect("list")
        .map(|entry| entry.expect("entry").file_name())
        .filter(|name| !name.to_string_lossy().ends_with(".eml"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_the_queue_then_refuses_mail() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mail_dir = data_dir.path().join("mail");
    let mailer = start_mailer(MailTransportConfig::Files {
        dir: mail_dir.clone(),
    });
    for n in 0..20 {
        mailer
            .send(mail("carol@example.com", &format!("Mail {n}"), "hello"))
            .expect("queued");
    }

    mailer.shutdown(Duration::from_secs(5)).await;

    let written = std::fs::read_dir(&mail_dir).expect("list").count();
    assert_eq!(
        written, 20,
        "every queued mail is written before shutdown returns"
    );
    assert!(matches!(
        mailer.send(mail("carol@example.com", "Too late", "hello")),
        Err(MailError::ShuttingDown)
    ));
}

#[tokio::test]
async fn an_invalid_recipient_is_refused_synchronously() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mail_dir = data_dir.path().join("mail");
    let mailer = start_mailer(MailTransportConfig::Files {
        dir: mail_dir.clone(),
    });
    let result = mailer.send(mail("not an address", "Hello", "secret 999"));
    assert!(
        matches!(result, Err(MailError::InvalidRecipient { .. })),
        "{result:?}"
    );
    mailer.shutdown(Duration::from_secs(5)).await;
    assert_eq!(std::fs::read_dir(&mail_dir).expect("list").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_mode_delivers_to_a_real_smtp_server() {
    let smtp = SmtpServer::start();
    let mailer = start_mailer(MailTransportConfig::Smtp { url: smtp.url() });

    mailer
        .send(mail(
            "alice@example.com",
            "Your sign-up code",
            "Your code is 161803.\nIt expires in 10 minutes.",
        ))
        .expect("queued");
    // Non-ASCII and a line past 76 characters: sent quoted-printable, decoded by `body_text`.
    let link_body = format!(
        "Bonjour Zoë,\nconfirm: https://allot.local/verify?token={}\n",
        "x".repeat(90)
    );
    mailer
        .send(mail("zoe@example.net", "Confirm your address", &link_body))
        .expect("queued");

    let raw = smtp.wait_for_mail_to("alice@example.com", WAIT).await;
    assert_eq!(header(&raw, "To").as_deref(), Some("alice@example.com"));
    assert_eq!(header(&raw, "From").as_deref(), Some(FROM));
    assert_eq!(
        header(&raw, "Subject").as_deref(),
        Some("Your sign-up code")
    );
    assert!(
        body_text(&raw).contains("Your code is 161803.\nIt expires in 10 minutes."),
        "{raw}"
    );
    let raw = smtp.wait_for_mail_to("zoe@example.net", WAIT).await;
    assert_eq!(
        header(&raw, "Subject").as_deref(),
        Some("Confirm your address")
    );
    assert_eq!(body_text(&raw), link_body.trim_end(), "{raw}");

    mailer.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_is_retried_until_the_relay_comes_up() {
    // A port that was free a moment ago; nothing listens on it until the server starts.
    let port = free_port();
    let mailer = start_mailer(MailTransportConfig::Smtp {
        url: format!("smtp://127.0.0.1:{port}"),
    });
    mailer
        .send(mail("dave@example.com", "Your code", "Code 141421"))
        .expect("queued while the relay is down");

    // Long enough for the first attempt (refused at once) to fail, well within the retries.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let smtp = tokio::task::spawn_blocking(move || SmtpServer::start_on_port(port))
        .await
        .expect("SMTP server starts");

    let raw = smtp.wait_for_mail_to("dave@example.com", WAIT).await;
    assert!(body_text(&raw).contains("Code 141421"), "{raw}");
    mailer.shutdown(Duration::from_secs(5)).await;
}
