//! The built-in payment simulator: answers by card number (API.md, "Payment simulator cards") and,
//! like a real provider, keeps its own durable record of every idempotency key it answered.
//!
//! One mutex covers check, append, fsync and update, so two calls with the same key, even at the
//! same moment, charge once. Calls for different keys queue behind each other's fsync; that is
//! fine for a simulator and not something to copy into a real provider client.
//!
//! A timeout is simulated by its answer alone: the call returns at once.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::charge_log::{self, Event, Line};
use super::{
    Card, ChargeOutcome, ChargeStatus, PaymentProvider, ProviderTimeout,
    charge_key_is_well_formed, currency_is_well_formed,
};

/// The simulator's record inside the directory it is given.
const CHARGES_FILE_NAME: &str = "charges.log";

/// The built-in simulator (API.md card table): 4242 4242 4242 4242 approved; 4000 0000 0000 0002
/// declined; 4000 0000 0000 9995 card limit exceeded; 4000 0000 0000 0119 times out and did not
/// charge (asking again: NotCharged); 4000 0000 0000 0259 times out but did charge (asking again:
/// Charged); any other valid number approved.
///
/// Answers to a key asked again, by `charge` with the same key, come from the record:
/// - approved, declined, limit exceeded: the same outcome;
/// - 0119: a timeout again, still not charged (this card never gets through);
/// - 0259: `Approved`. The card was charged the first time, only the answer was lost: this is
///   how a provider with idempotency keys behaves, and what lets the saga finish the order.
///
/// Misuse by the caller (a key that is not [well formed](super::charge_key_is_well_formed), a
/// currency that is not three capital letters, an amount of zero) fails a `debug_assert!`; in a
/// release build the call records and charges nothing and answers `Err(ProviderTimeout)`, and
/// `status` of that key answers `NotCharged`, so the saga compensates instead of charging under a
/// key it could not ask about again.
///
/// The record is `<dir>/charges.log` (format in `charge_log`), appended and fsynced before
/// `charge` or `refund` answers. It is read whole on open, so its size is bounded by the keys it
/// holds, which are in memory anyway. If an append fails, the simulator stops taking money: every
/// later new charge answers `Err(ProviderTimeout)` and every refund answers the current status,
/// until it is opened again, which settles what the record holds. Only one simulator may use a
/// directory at a time.
pub struct PaymentSimulator {
    path: PathBuf,
    ledger: Mutex<Ledger>,
}

impl PaymentSimulator {
    pub const CARD_APPROVED: &str = "4242424242424242";
    pub const CARD_DECLINED: &str = "4000000000000002";
    pub const CARD_LIMIT_EXCEEDED: &str = "4000000000009995";
    pub const CARD_TIMEOUT_NOT_CHARGED: &str = "4000000000000119";
    pub const CARD_TIMEOUT_CHARGED: &str = "4000000000000259";

    /// Opens the record in `dir` (both created if missing), cutting a torn last line. Fails on a
    /// record damaged anywhere but at its end.
    pub fn open(dir: &Path) -> io::Result<PaymentSimulator> {
        fs::create_dir_all(dir)?;
        let path = dir.join(CHARGES_FILE_NAME);
        let context = |error: io::Error| {
            io::Error::new(error.kind(), format!("{}: {error}", path.display()))
        };
        let existed = path.try_exists().map_err(context)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(context)?;
        if !existed {
            sync_dir(dir).map_err(context)?;
        }

        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(context)?;
        let scan = charge_log::scan(&bytes).map_err(context)?;
        if let Some(line) = scan.cut_at_line {
            tracing::warn!(
                path = %path.display(),
                line,
                bytes_removed = bytes.len() - scan.intact_bytes,
                "payment simulator: cutting a torn tail off the charges log"
            );
            // Appends must start on a line boundary, or the next record is glued to the torn one.
            file.set_len(scan.intact_bytes as u64).map_err(context)?;
            file.sync_all().map_err(context)?;
        }

        let mut ledger = Ledger {
            file,
            keys: HashMap::new(),
            charged_keys: 0,
            failed: false,
        };
        for (index, line) in scan.lines.into_iter().enumerate() {
            ledger.apply(line).map_err(|reason| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: line {}: {reason}", path.display(), index + 1),
                )
            })?;
        }
        tracing::info!(
            path = %path.display(),
            keys = ledger.keys.len(),
            charged = ledger.charged_keys,
            "payment simulator opened"
        );
        Ok(PaymentSimulator {
            path,
            ledger: Mutex::new(ledger),
        })
    }

    /// How many keys were actually charged, refunded ones included (tests: "one side effect per
    /// key").
    pub fn charges(&self) -> usize {
        self.ledger.lock().charged_keys
    }
}

impl PaymentProvider for PaymentSimulator {
    fn charge(
        &self,
        key: &str,
        amount: u64,
        currency: &str,
        card: &Card,
    ) -> Result<ChargeOutcome, ProviderTimeout> {
        let misuse = request_misuse(key, amount, currency);
        debug_assert!(misuse.is_none(), "malformed charge request: {misuse:?}");
        if let Some(misuse) = misuse {
            tracing::error!(
                key_bytes = key.len(),
                misuse,
                "payment simulator: malformed charge request, answering a timeout, nothing charged"
            );
            return Err(ProviderTimeout);
        }

        let mut ledger = self.ledger.lock();
        if let Some(record) = ledger.keys.get(key) {
            debug_assert!(
                record.amount == amount && record.currency == currency,
                "charge key {key} reused for another amount or currency"
            );
            return record.charge_event.answer_again();
        }
        if ledger.failed {
            return Err(ProviderTimeout);
        }
        let event = simulated_event(card);
        let line = Line {
            key: key.to_owned(),
            event,
            amount,
            currency: currency.to_owned(),
        };
        ledger.append(&line, &self.path).map_err(|()| ProviderTimeout)?;
        ledger
            .apply(line)
            .expect("a new key takes any charge event");
        event.answer_first()
    }

    fn status(&self, key: &str) -> ChargeStatus {
        self.ledger.lock().status(key)
    }

    fn refund(&self, key: &str) -> ChargeStatus {
        let mut ledger = self.ledger.lock();
        let status = ledger.status(key);
        if status != ChargeStatus::Charged || ledger.failed {
            return status;
        }
        let record = &ledger.keys[key];
        let line = Line {
            key: key.to_owned(),
            event: Event::Refunded,
            amount: record.amount,
            currency: record.currency.clone(),
        };
        if ledger.append(&line, &self.path).is_err() {
            return status;
        }
        ledger.apply(line).expect("a charged key takes a refund");
        ChargeStatus::Refunded
    }
}

impl fmt::Debug for PaymentSimulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ledger = self.ledger.lock();
        f.debug_struct("PaymentSimulator")
            .field("path", &self.path)
            .field("keys", &ledger.keys.len())
            .field("charged_keys", &ledger.charged_keys)
            .field("failed", &ledger.failed)
            .finish()
    }
}

/// What the caller got wrong, if anything.
fn request_misuse(key: &str, amount: u64, currency: &str) -> Option<&'static str> {
    if !charge_key_is_well_formed(key) {
        Some("the idempotency key is not 1 to 128 bytes of printable ASCII without spaces")
    } else if !currency_is_well_formed(currency) {
        Some("the currency is not three capital letters")
    } else if amount == 0 {
        Some("the amount is zero")
    } else {
        None
    }
}

fn simulated_event(card: &Card) -> Event {
    match card.digits() {
        PaymentSimulator::CARD_DECLINED => Event::Declined,
        PaymentSimulator::CARD_LIMIT_EXCEEDED => Event::LimitExceeded,
        PaymentSimulator::CARD_TIMEOUT_NOT_CHARGED => Event::TimedOutNotCharged,
        PaymentSimulator::CARD_TIMEOUT_CHARGED => Event::TimedOutCharged,
        _ => Event::Approved,
    }
}

impl Event {
    fn charged(self) -> bool {
        matches!(self, Event::Approved | Event::TimedOutCharged)
    }

    /// The answer the charge that recorded this event gave.
    fn answer_first(self) -> Result<ChargeOutcome, ProviderTimeout> {
        match self {
            Event::Approved => Ok(ChargeOutcome::Approved),
            Event::Declined => Ok(ChargeOutcome::Declined),
            Event::LimitExceeded => Ok(ChargeOutcome::LimitExceeded),
            Event::TimedOutNotCharged | Event::TimedOutCharged => Err(ProviderTimeout),
            Event::Refunded => unreachable!("a refund is not the answer to a charge"),
        }
    }

    /// The answer to a charge with a key that already holds this event: the outcome on record.
    fn answer_again(self) -> Result<ChargeOutcome, ProviderTimeout> {
        match self {
            Event::TimedOutCharged => Ok(ChargeOutcome::Approved),
            event => event.answer_first(),
        }
    }
}

/// One key's record.
#[derive(Debug)]
struct KeyRecord {
    /// Never `Refunded`: that is `refunded` below.
    charge_event: Event,
    amount: u64,
    currency: String,
    refunded: bool,
}

struct Ledger {
    /// Opened for appending: every write lands at the end.
    file: File,
    keys: HashMap<String, KeyRecord>,
    /// Keys whose charge event charged the card; a refund does not take one back.
    charged_keys: usize,
    /// An append failed: the file may end in a partial line, so nothing more is written.
    failed: bool,
}

impl Ledger {
    fn status(&self, key: &str) -> ChargeStatus {
        match self.keys.get(key) {
            Some(record) if record.refunded => ChargeStatus::Refunded,
            Some(record) if record.charge_event.charged() => ChargeStatus::Charged,
            _ => ChargeStatus::NotCharged,
        }
    }

    /// Writes one line and makes it durable. On failure the ledger stops writing for good.
    fn append(&mut self, line: &Line, path: &Path) -> Result<(), ()> {
        let written = self
            .file
            .write_all(line.encode().as_bytes())
            .and_then(|()| self.file.sync_data());
        written.map_err(|error| {
            self.failed = true;
            tracing::error!(
                path = %path.display(),
                key = %line.key,
                %error,
                "payment simulator: writing the charges log failed; no more charges until reopened"
            );
        })
    }

    /// Takes one recorded event into memory. The rules are those `charge` and `refund` follow,
    /// so a record that breaks them was not written by this code.
    fn apply(&mut self, line: Line) -> Result<(), &'static str> {
        if line.event == Event::Refunded {
            let record = self
                .keys
                .get_mut(&line.key)
                .ok_or("a refund of a key that was never charged")?;
            if !record.charge_event.charged() || record.refunded {
                return Err("a refund of a key that is not charged");
            }
            if record.amount != line.amount || record.currency != line.currency {
                return Err("a refund of another amount than the charge");
            }
            record.refunded = true;
            return Ok(());
        }
        if self.keys.contains_key(&line.key) {
            return Err("a second charge of one key");
        }
        if line.event.charged() {
            self.charged_keys += 1;
        }
        self.keys.insert(
            line.key,
            KeyRecord {
                charge_event: line.event,
                amount: line.amount,
                currency: line.currency,
                refunded: false,
            },
        );
        Ok(())
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

