//! Outgoing mail (sign-up codes, password resets, receipts), sent off the request path.
//!
//! A handler calls [`Mailer::send`], which checks the recipient, renders the message and queues
//! it; a background task delivers it over SMTP (or, without a relay, writes it as an `.eml`
//! file) and retries transient failures with backoff. Bodies carry secret codes, so nothing
//! here logs a body: logs name the subject and the recipient's domain only.

mod eml_dir;
mod sender;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MessageBuilder};
use lettre::{AsyncSmtpTransport, Message, Tokio1Executor};
use tokio::sync::{mpsc, watch};

use sender::{Delivery, Job};

/// Mails waiting to be sent. Past it `send` refuses: a relay that is down for long must not
/// grow memory without bound, and the caller learns at once that the mail was dropped.
pub const MAIL_QUEUE_MAX: usize = 1024;
/// Mails being delivered (or waiting between retries) at the same time, so that one mail in
/// backoff does not hold up the others.
pub const SEND_CONCURRENCY_MAX: usize = 4;
/// Tries per mail, the first included.
pub const SEND_ATTEMPTS_MAX: u32 = 6;
/// Wait after the first failure; doubled after each further one, up to the cap.
pub const RETRY_DELAY_FIRST_MS: u64 = 200;
pub const RETRY_DELAY_MAX_MS: u64 = 5_000;
/// Longest wait for the relay's TCP (and TLS) connection.
pub const SMTP_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Longest one delivery attempt may take. lettre's async transport only bounds the connect,
/// so a relay that stops answering mid-conversation is cut off here.
pub const SEND_ATTEMPT_TIMEOUT_MS: u64 = 15_000;

/// Where mail goes.
#[derive(Clone)]
pub enum MailTransportConfig {
    /// `smtp://host:port` (plain, for a local relay), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS) or `smtps://user:pass@host:465` (implicit TLS). Credentials are
    /// percent-decoded.
    Smtp { url: String },
    /// No relay: each mail becomes an `.eml` file under `dir` and its subject is logged.
    Files { dir: PathBuf },
}

impl fmt::Debug for MailTransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Smtp { url } => f
                .debug_struct("Smtp")
                .field("url", &redact_url_password(url))
                .finish(),
            Self::Files { dir } => f.debug_struct("Files").field("dir", dir).finish(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    pub transport: MailTransportConfig,
    /// The `From` mailbox, e.g. `allot <no-reply@allot.local>`.
    pub from: String,
}

/// One mail to one recipient. The subject is logged; anything secret belongs in the body.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    pub to: String,
    pub subject: String,
    pub body_text: String,
}

impl fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("body_text", &"<redacted>")
            .finish()
    }
}

#[derive(Debug)]
pub enum MailError {
    /// The SMTP URL does not parse or names an unknown scheme or `tls` mode.
    InvalidSmtpUrl { reason: String },
    /// The configured `from` is not a mailbox.
    InvalidFrom { reason: String },
    /// The recipient is not an address; nothing was queued.
    InvalidRecipient { reason: String },
    /// The message could not be rendered; nothing was queued.
    InvalidMessage { reason: String },
    /// The directory for `.eml` files cannot be created.
    MailDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// `start` was called outside a tokio runtime.
    NoRuntime,
    /// [`MAIL_QUEUE_MAX`] mails are waiting; this one was dropped.
    QueueFull,
    /// `shutdown` was called; no more mail is taken.
    ShuttingDown,
    /// [`Mailer::deliver`]: the relay (or the mail directory) did not take the mail.
    NotDelivered { permanent: bool, reason: String },
}

impl fmt::Display for MailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSmtpUrl { reason } => write!(f, "invalid SMTP URL: {reason}"),
            Self::InvalidFrom { reason } => write!(f, "invalid from address: {reason}"),
            Self::InvalidRecipient { reason } => write!(f, "invalid recipient address: {reason}"),
            Self::InvalidMessage { reason } => write!(f, "cannot render the mail: {reason}"),
            Self::MailDir { dir, source } => {
                write!(
                    f,
                    "cannot create mail directory {}: {source}",
                    dir.display()
                )
            }
            Self::NoRuntime => f.write_str("the mailer must be started inside a tokio runtime"),
            Self::QueueFull => write!(f, "mail queue full ({MAIL_QUEUE_MAX} waiting)"),
            Self::ShuttingDown => f.write_str("the mailer is shutting down"),
            Self::NotDelivered { permanent, reason } => {
                let kind = if *permanent {
                    "refused"
                } else {
                    "not delivered"
                };
                write!(f, "mail {kind}: {reason}")
            }
        }
    }
}

impl std::error::Error for MailError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::MailDir { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A handle on the background sender; clones share it.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    from: Mailbox,
    delivery: Arc<Delivery>,
    queue: mpsc::Sender<Job>,
    stop: watch::Sender<bool>,
    drained: watch::Receiver<bool>,
    /// Mails taken by `send` and not yet delivered or given up.
    undelivered: Arc<AtomicUsize>,
    transport_kind: &'static str,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.inner.from.to_string())
            .field("transport", &self.inner.transport_kind)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Validates the config and spawns the background sender on the current tokio runtime.
    pub fn start(config: MailConfig) -> Result<Mailer, MailError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MailError::NoRuntime)?;
        let from: Mailbox =
            config
                .from
                .parse()
                .map_err(
                    |error: lettre::address::AddressError| MailError::InvalidFrom {
                        reason: error.to_string(),
                    },
                )?;
        let (delivery, transport_kind) = match config.transport {
            MailTransportConfig::Smtp { url } => {
                // Building the pool spawns its idle-connection reaper, hence inside the runtime.
                let _entered = runtime.enter();
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
                    .map_err(|error| MailError::InvalidSmtpUrl {
                        reason: error.to_string(),
                    })?
                    .timeout(Some(Duration::from_millis(SMTP_CONNECT_TIMEOUT_MS)))
                    .build();
                (Delivery::Smtp(transport), "smtp")
            }
            MailTransportConfig::Files { dir } => {
                std::fs::create_dir_all(&dir).map_err(|source| MailError::MailDir {
                    dir: dir.clone(),
                    source,
                })?;
                (Delivery::Files(dir), "files")
            }
        };
        let (queue, queue_receiver) = mpsc::channel(MAIL_QUEUE_MAX);
        let (stop, stop_receiver) = watch::channel(false);
        let (drained_sender, drained) = watch::channel(false);
        let undelivered = Arc::new(AtomicUsize::new(0));
        let delivery = Arc::new(delivery);
        runtime.spawn(sender::run(
            Arc::clone(&delivery),
            queue_receiver,
            stop_receiver,
            drained_sender,
            Arc::clone(&undelivered),
        ));
        Ok(Mailer {
            inner: Arc::new(Inner {
                from,
                delivery,
                queue,
                stop,
                drained,
                undelivered,
                transport_kind,
            }),
        })
    }

    /// Queues a mail and returns at once: sending never blocks the request path.
    /// Mails taken and not yet delivered or given up (the queue and the one being sent).
    pub fn undelivered(&self) -> usize {
        self.inner.undelivered.load(Ordering::Relaxed)
    }

    pub fn send(&self, mail: OutgoingMail) -> Result<(), MailError> {
        let job = self.render(mail, None)?;
        // Counted before the worker can see it, so the count never goes below zero.
        self.inner.undelivered.fetch_add(1, Ordering::Relaxed);
        self.inner.queue.try_send(job).map_err(|error| {
            self.inner.undelivered.fetch_sub(1, Ordering::Relaxed);
            match error {
                mpsc::error::TrySendError::Full(job) => {
                    tracing::error!(
                        subject = %job.subject,
                        recipient_domain = %job.recipient_domain,
                        queued_max = MAIL_QUEUE_MAX,
                        "mail queue full, mail dropped"
                    );
                    MailError::QueueFull
                }
                mpsc::error::TrySendError::Closed(_) => MailError::ShuttingDown,
            }
        })
    }

    /// Delivers one mail now, once, and answers whether the relay (or the mail directory)
    /// took it: for a caller that keeps its own durable progress and retries, like the
    /// notifier. `message_key` becomes the Message-ID's local part (`<key@from-domain>`), so a
    /// resend after a crash is recognisably the same message.
    pub async fn deliver(&self, mail: OutgoingMail, message_key: &str) -> Result<(), MailError> {
        let message_id = format!("<{message_key}@{}>", self.inner.from.email.domain());
        let job = self.render(mail, Some(message_id))?;
        sender::deliver_once(&self.inner.delivery, &job)
            .await
            .map_err(|failure| MailError::NotDelivered {
                permanent: failure.permanent,
                reason: failure.reason,
            })
    }

    /// Checks the recipient and renders the RFC 5322 message, so that every error a caller
    /// can fix surfaces synchronously, before anything is queued.
    fn render(&self, mail: OutgoingMail, message_id: Option<String>) -> Result<Job, MailError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(
                |error: lettre::address::AddressError| MailError::InvalidRecipient {
                    reason: error.to_string(),
                },
            )?;
        let recipient_domain = to.email.domain().to_owned();
        // A line break in a subject would start a new header: fold control characters away.
        let subject: String = mail
            .subject
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let message = self
            .message_builder(message_id)
            .to(to)
            .subject(subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body_text)
            .map_err(|error| MailError::InvalidMessage {
                reason: error.to_string(),
            })?;
        Ok(Job {
            envelope: message.envelope().clone(),
            formatted: message.formatted().into(),
            subject,
            recipient_domain,
            queued_unix_ms: unix_ms(),
        })
    }

    /// Stops taking mail and waits (up to `deadline`) for the queue to drain.
    pub async fn shutdown(&self, deadline: Duration) {
        self.inner.stop.send_replace(true);
        let mut drained = self.inner.drained.clone();
        let drained_in_time = tokio::time::timeout(deadline, drained.wait_for(|done| *done))
            .await
            .is_ok();
        if !drained_in_time {
            // They are lost when the process exits: say so at error.
            tracing::error!(
                undelivered = self.inner.undelivered.load(Ordering::Relaxed),
                deadline_ms = deadline.as_millis() as u64,
                "mail not all delivered by the shutdown deadline"
            );
        }
    }

    fn message_builder(&self, message_id: Option<String>) -> MessageBuilder {
        let from = &self.inner.from;
        let message_id = message_id.unwrap_or_else(|| {
            format!(
                "<{}.{:016x}@{}>",
                unix_ms(),
                rand::random::<u64>(),
                from.email.domain()
            )
        });
        Message::builder()
            .from(from.clone())
            .message_id(Some(message_id))
    }
}

fn unix_ms() -> u128 {
    // A clock before 1970 is a broken clock; 0 still yields a valid, if oddly sorted, name.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis())
}

/// `smtp://user:secret@host` -> `smtp://user:***@host`, for Debug output and logs.
fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |offset| authority_start + offset);
    let authority = &url[authority_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..authority_start],
        &authority[..colon],
        &url[authority_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_config(dir: PathBuf) -> MailConfig {
        MailConfig {
            transport: MailTransportConfig::Files { dir },
            from: "allot <no-reply@allot.local>".to_owned(),
        }
    }

    fn mail_to(to: &str) -> OutgoingMail {
        OutgoingMail {
            to: to.to_owned(),
            subject: "Your code".to_owned(),
            body_text: "code 123456".to_owned(),
        }
    }

    #[test]
    fn redacts_only_the_password() {
        assert_eq!(
            redact_url_password("smtp://me%40x.com:s3cr%2Ft@smtp.gmail.com:587?tls=required"),
            "smtp://me%40x.com:***@smtp.gmail.com:587?tls=required"
        );
        assert_eq!(
            redact_url_password("smtps://u:p@h:465"),
            "smtps://u:***@h:465"
        );
        assert_eq!(
            redact_url_password("smtp://127.0.0.1:25"),
            "smtp://127.0.0.1:25"
        );
        assert_eq!(redact_url_password("smtp://user@h"), "smtp://user@h");
        assert_eq!(redact_url_password("not a url"), "not a url");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = MailTransportConfig::Smtp {
            url: "smtps://user:hunter2@smtp.example.com:465".to_owned(),
        };
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!format!("{:?}", mail_to("a@b.c")).contains("123456"));
    }

    #[test]
    fn start_needs_a_runtime() {
        let result = Mailer::start(files_config(std::env::temp_dir()));
        assert!(matches!(result, Err(MailError::NoRuntime)));
    }

    #[tokio::test]
    async fn start_rejects_bad_config() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = files_config(dir.path().to_owned());
        config.from = "no address here".to_owned();
        assert!(matches!(
            Mailer::start(config),
            Err(MailError::InvalidFrom { .. })
        ));
        for url in ["http://h:25", "smtp://h:587?tls=sometimes", "smtp://", "::"] {
            let config = MailConfig {
                transport: MailTransportConfig::Smtp {
                    url: url.to_owned(),
                },
                from: "no-reply@allot.local".to_owned(),
            };
            assert!(
                matches!(Mailer::start(config), Err(MailError::InvalidSmtpUrl { .. })),
                "{url}"
            );
        }
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://me%40gmail.com:app%20pass@smtp.gmail.com:587?tls=required",
            "smtps://user:pass@smtp.example.com:465",
        ] {
            let config = MailConfig {
                transport: MailTransportConfig::Smtp {
                    url: url.to_owned(),
                },
                from: "no-reply@allot.local".to_owned(),
            };
            assert!(Mailer::start(config).is_ok(), "{url}");
        }
    }

    #[tokio::test]
    async fn send_rejects_a_bad_recipient_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mailer = Mailer::start(files_config(dir.path().to_owned())).expect("mailer");
        for to in ["", "no-at-sign", "two@@signs.com", "a@b.c\r\nBcc: x@y.z"] {
            assert!(
                matches!(
                    mailer.send(mail_to(to)),
                    Err(MailError::InvalidRecipient { .. })
                ),
                "{to:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_the_next_mail() {
        // On the current-thread runtime the sender does not run until this test yields, so
        // the queue fills deterministically.
        let dir = tempfile::tempdir().expect("temp dir");
        let mailer = Mailer::start(files_config(dir.path().to_owned())).expect("mailer");
        for _ in 0..MAIL_QUEUE_MAX {
            mailer.send(mail_to("a@example.com")).expect("queued");
        }
        assert!(matches!(
            mailer.send(mail_to("a@example.com")),
            Err(MailError::QueueFull)
        ));
    }

    #[tokio::test]
    async fn a_line_break_in_the_subject_adds_no_header() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mailer = Mailer::start(files_config(dir.path().to_owned())).expect("mailer");
        let job = mailer
            .render(
                OutgoingMail {
                    subject: "hi\r\nBcc: evil@example.com".to_owned(),
                    ..mail_to("a@example.com")
                },
                None,
            )
            .expect("rendered");
        let formatted = String::from_utf8(job.formatted.to_vec()).expect("utf-8");
        assert!(
            formatted.contains("Subject: hi  Bcc: evil@example.com\r\n"),
            "{formatted}"
        );
        assert!(!formatted.contains("\r\nBcc:"), "{formatted}");
        assert_eq!(job.envelope.to().len(), 1);
    }
}
