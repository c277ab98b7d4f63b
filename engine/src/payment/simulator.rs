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
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::charge_log::{self, Event, Line};
use super::{
    Card, ChargeOutcome, ChargeStatus, PaymentProvider, ProviderTimeout, charge_key_is_well_formed,
    currency_is_well_formed,
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
/// Misuse by the caller (a key that is not well formed, `charge_key_is_well_formed`; a
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
    /// A card the simulator approves.
    pub const CARD_APPROVED: &str = "4242424242424242";
    /// A card the simulator declines.
    pub const CARD_DECLINED: &str = "4000000000000002";
    /// A card the simulator refuses as over its limit.
    pub const CARD_LIMIT_EXCEEDED: &str = "4000000000009995";
    /// A card whose charge times out and was not charged (asked again: `NotCharged`).
    pub const CARD_TIMEOUT_NOT_CHARGED: &str = "4000000000000119";
    /// A card whose charge times out but was charged (asked again: `Charged`).
    pub const CARD_TIMEOUT_CHARGED: &str = "4000000000000259";

    /// Opens the record in `dir` (both created if missing), cutting a torn last line. Fails on a
    /// record damaged anywhere but at its end.
    pub fn open(dir: &Path) -> io::Result<PaymentSimulator> {
        crate::durable::create_dir_all(dir)?;
        let path = dir.join(CHARGES_FILE_NAME);
        let context =
            |error: io::Error| io::Error::new(error.kind(), format!("{}: {error}", path.display()));
        let existed = path.try_exists().map_err(context)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(context)?;
        if !existed {
            crate::durable::sync_dir(dir).map_err(context)?;
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
        ledger
            .append(&line, &self.path)
            .map_err(|()| ProviderTimeout)?;
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::Barrier;

    use super::*;

    /// 2026-03-15T12:00:00Z.
    const NOW_MS: u64 = 1_773_576_000_000;

    fn card(number: &str) -> Card {
        Card::parse(number, "12/30", "123", NOW_MS).unwrap()
    }

    fn charge(
        simulator: &PaymentSimulator,
        key: &str,
        number: &str,
    ) -> Result<ChargeOutcome, ProviderTimeout> {
        simulator.charge(key, 129_000, "KRW", &card(number))
    }

    fn log_bytes(dir: &Path) -> Vec<u8> {
        fs::read(dir.join(CHARGES_FILE_NAME)).unwrap()
    }

    #[test]
    fn each_card_of_the_table_answers_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let simulator = PaymentSimulator::open(dir.path()).unwrap();
        let table = [
            (
                "4242 4242 4242 4242",
                Ok(ChargeOutcome::Approved),
                ChargeStatus::Charged,
            ),
            (
                "4000 0000 0000 0002",
                Ok(ChargeOutcome::Declined),
                ChargeStatus::NotCharged,
            ),
            (
                "4000 0000 0000 9995",
                Ok(ChargeOutcome::LimitExceeded),
                ChargeStatus::NotCharged,
            ),
            (
                "4000 0000 0000 0119",
                Err(ProviderTimeout),
                ChargeStatus::NotCharged,
            ),
            (
                "4000 0000 0000 0259",
                Err(ProviderTimeout),
                ChargeStatus::Charged,
            ),
            // Any other valid number.
            (
                "5555 5555 5555 4444",
                Ok(ChargeOutcome::Approved),
                ChargeStatus::Charged,
            ),
        ];
        for (index, (number, answer, status)) in table.into_iter().enumerate() {
            let key = format!("ord_{index}/1");
            assert_eq!(charge(&simulator, &key, number), answer, "{number}");
            assert_eq!(simulator.status(&key), status, "{number}");
        }
        assert_eq!(simulator.charges(), 3);
    }

    #[test]
    fn the_same_key_twice_charges_once_and_answers_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let simulator = PaymentSimulator::open(dir.path()).unwrap();
        for (key, number, answer) in [
            (
                "ord_1/1",
                PaymentSimulator::CARD_APPROVED,
                Ok(ChargeOutcome::Approved),
            ),
            (
                "ord_2/1",
                PaymentSimulator::CARD_DECLINED,
                Ok(ChargeOutcome::Declined),
            ),
            (
                "ord_3/1",
                PaymentSimulator::CARD_LIMIT_EXCEEDED,
                Ok(ChargeOutcome::LimitExceeded),
            ),
            (
                "ord_4/1",
                PaymentSimulator::CARD_TIMEOUT_NOT_CHARGED,
                Err(ProviderTimeout),
            ),
        ] {
            assert_eq!(charge(&simulator, key, number), answer, "{number}");
            assert_eq!(charge(&simulator, key, number), answer, "{number}");
            // The record answers, not the card: another card under the same key changes nothing.
            assert_eq!(
                charge(&simulator, key, PaymentSimulator::CARD_APPROVED),
                answer,
                "{number}"
            );
        }
        assert_eq!(simulator.charges(), 1);
        assert_eq!(simulator.status("ord_2/1"), ChargeStatus::NotCharged);
        // One line per key: the repeats wrote nothing.
        let log = log_bytes(dir.path());
        assert_eq!(log.iter().filter(|&&b| b == b'\n').count(), 4);
    }

    #[test]
    fn a_timeout_that_did_not_charge_stays_uncharged() {
        let dir = tempfile::tempdir().unwrap();
        let simulator = PaymentSimulator::open(dir.path()).unwrap();
        let key = "ord_7/1";
        assert_eq!(
            charge(&simulator, key, PaymentSimulator::CARD_TIMEOUT_NOT_CHARGED),
            Err(ProviderTimeout)
        );
        assert_eq!(simulator.status(key), ChargeStatus::NotCharged);
        assert_eq!(
            charge(&simulator, key, PaymentSimulator::CARD_TIMEOUT_NOT_CHARGED),
            Err(ProviderTimeout)
        );
        assert_eq!(simulator.refund(key), ChargeStatus::NotCharged);
        assert_eq!(simulator.charges(), 0);
        // The saga's next attempt is a new key, and this card times out again.
        assert_eq!(
            charge(
                &simulator,
                "ord_7/2",
                PaymentSimulator::CARD_TIMEOUT_NOT_CHARGED
            ),
            Err(ProviderTimeout)
        );
        assert_eq!(simulator.charges(), 0);
    }

    #[test]
    fn a_timeout_that_charged_reports_the_charge_when_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let simulator = PaymentSimulator::open(dir.path()).unwrap();
        let key = "ord_8/1";
        assert_eq!(
            charge(&simulator, key, PaymentSimulator::CARD_TIMEOUT_CHARGED),
            Err(ProviderTimeout)
        );
        assert_eq!(simulator.status(key), ChargeStatus::Charged);
        assert_eq!(
            charge(&simulator, key, PaymentSimulator::CARD_TIMEOUT_CHARGED),
            Ok(ChargeOutcome::Approved)
        );
        assert_eq!(simulator.charges(), 1);
        assert_eq!(simulator.refund(key), ChargeStatus::Refunded);
    }

    #[test]
    fn a_charge_is_refunded_once() {
        let dir = tempfile::tempdir().unwrap();
        let simulator = PaymentSimulator::open(dir.path()).unwrap();
        let key = "ord_9/1";
        assert_eq!(
            charge(&simulator, key, PaymentSimulator::CARD_APPROVED),
            Ok(ChargeOutcome::Approved)
        );
        assert_eq!(simulator.refund(key), ChargeStatus::Refunded);
        let after_first_refund = log_bytes(dir.path());
        assert_eq!(simulator.refund(key), ChargeStatus::Refunded);
        assert_eq!(log_bytes(dir.path()), after_first_refund, "nothing written");
        assert_eq!(simulator.status(key), ChargeStatus::Refunded);
        // A refunded key is still answered, not charged again.
        assert_eq!(
            charge(&simulator, key, PaymentSimulator::CARD_APPROVED),
            Ok(ChargeOutcome::Approved)
        );
        assert_eq!(simulator.status(key), ChargeStatus::Refunded);
        assert_eq!(simulator.charges(), 1);
    }

    #[test]
    fn refunding_what_was_not_charged_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let simulator = PaymentSimulator::open(dir.path()).unwrap();
        assert_eq!(simulator.refund("ord_unknown/1"), ChargeStatus::NotCharged);
        assert_eq!(
            charge(&simulator, "ord_1/1", PaymentSimulator::CARD_DECLINED),
            Ok(ChargeOutcome::Declined)
        );
        assert_eq!(simulator.refund("ord_1/1"), ChargeStatus::NotCharged);
        assert_eq!(simulator.status("ord_unknown/1"), ChargeStatus::NotCharged);
        assert_eq!(
            log_bytes(dir.path())
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            1
        );
    }

    #[test]
    fn a_reopened_simulator_knows_every_key() {
        let dir = tempfile::tempdir().unwrap();
        {
            let simulator = PaymentSimulator::open(dir.path()).unwrap();
            charge(&simulator, "ord_1/1", PaymentSimulator::CARD_APPROVED).unwrap();
            charge(&simulator, "ord_2/1", PaymentSimulator::CARD_DECLINED).unwrap();
            charge(&simulator, "ord_3/1", PaymentSimulator::CARD_LIMIT_EXCEEDED).unwrap();
            charge(
                &simulator,
                "ord_4/1",
                PaymentSimulator::CARD_TIMEOUT_NOT_CHARGED,
            )
            .unwrap_err();
            charge(
                &simulator,
                "ord_5/1",
                PaymentSimulator::CARD_TIMEOUT_CHARGED,
            )
            .unwrap_err();
            charge(&simulator, "ord_6/1", PaymentSimulator::CARD_APPROVED).unwrap();
            assert_eq!(simulator.refund("ord_6/1"), ChargeStatus::Refunded);
        }

        let simulator = PaymentSimulator::open(dir.path()).unwrap();
        assert_eq!(simulator.charges(), 3);
        assert_eq!(simulator.status("ord_1/1"), ChargeStatus::Charged);
        assert_eq!(simulator.status("ord_2/1"), ChargeStatus::NotCharged);
        assert_eq!(simulator.status("ord_4/1"), ChargeStatus::NotCharged);
        assert_eq!(simulator.status("ord_5/1"), ChargeStatus::Charged);
        assert_eq!(simulator.status("ord_6/1"), ChargeStatus::Refunded);
        // Asked again after the restart: the recorded outcomes, no new charge.
        let again = |key, number| charge(&simulator, key, number);
        assert_eq!(
            again("ord_1/1", PaymentSimulator::CARD_APPROVED),
            Ok(ChargeOutcome::Approved)
        );
        assert_eq!(
            again("ord_2/1", PaymentSimulator::CARD_APPROVED),
            Ok(ChargeOutcome::Declined)
        );
        assert_eq!(
            again("ord_3/1", PaymentSimulator::CARD_APPROVED),
            Ok(ChargeOutcome::LimitExceeded)
        );
        assert_eq!(
            again("ord_4/1", PaymentSimulator::CARD_APPROVED),
            Err(ProviderTimeout)
        );
        assert_eq!(
            again("ord_5/1", PaymentSimulator::CARD_APPROVED),
            Ok(ChargeOutcome::Approved)
        );
        assert_eq!(simulator.refund("ord_6/1"), ChargeStatus::Refunded);
        assert_eq!(simulator.charges(), 3);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let simulator = PaymentSimulator::open(dir.path()).unwrap();
            charge(&simulator, "ord_1/1", PaymentSimulator::CARD_APPROVED).unwrap();
        }
        let intact = log_bytes(dir.path());
        let torn = Line {
            key: "ord_2/1".to_owned(),
            event: Event::Approved,
            amount: 129_000,
            currency: "KRW".to_owned(),
        }
        .encode();
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(CHARGES_FILE_NAME))
            .unwrap();
        file.write_all(&torn.as_bytes()[..torn.len() - 3]).unwrap();
        drop(file);

        {
            let simulator = PaymentSimulator::open(dir.path()).unwrap();
            assert_eq!(simulator.charges(), 1);
            assert_eq!(simulator.status("ord_2/1"), ChargeStatus::NotCharged);
            assert_eq!(log_bytes(dir.path()), intact, "the torn line is cut");
            // The next record starts on a clean line.
            charge(&simulator, "ord_2/1", PaymentSimulator::CARD_APPROVED).unwrap();
        }
        let simulator = PaymentSimulator::open(dir.path()).unwrap();
        assert_eq!(simulator.charges(), 2);
        assert_eq!(simulator.status("ord_2/1"), ChargeStatus::Charged);
    }

    #[test]
    fn a_corrupt_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let simulator = PaymentSimulator::open(dir.path()).unwrap();
            charge(&simulator, "ord_1/1", PaymentSimulator::CARD_APPROVED).unwrap();
            charge(&simulator, "ord_2/1", PaymentSimulator::CARD_APPROVED).unwrap();
        }
        let mut bytes = log_bytes(dir.path());
        let last_line_start = bytes[..bytes.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1;
        // A bit flipped in the amount of the last line: its CRC no longer matches.
        bytes[last_line_start + "ord_2/1 approved ".len()] ^= 0x01;
        fs::write(dir.path().join(CHARGES_FILE_NAME), &bytes).unwrap();

        let simulator = PaymentSimulator::open(dir.path()).unwrap();
        assert_eq!(simulator.charges(), 1);
        assert_eq!(simulator.status("ord_1/1"), ChargeStatus::Charged);
        assert_eq!(simulator.status("ord_2/1"), ChargeStatus::NotCharged);
        assert_eq!(log_bytes(dir.path()).len(), last_line_start);
    }

    #[test]
    fn a_corrupt_line_in_the_middle_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let simulator = PaymentSimulator::open(dir.path()).unwrap();
            charge(&simulator, "ord_1/1", PaymentSimulator::CARD_APPROVED).unwrap();
            charge(&simulator, "ord_2/1", PaymentSimulator::CARD_APPROVED).unwrap();
        }
        let mut bytes = log_bytes(dir.path());
        bytes[0] = b'x';
        fs::write(dir.path().join(CHARGES_FILE_NAME), &bytes).unwrap();

        let error = PaymentSimulator::open(dir.path()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(log_bytes(dir.path()), bytes, "nothing cut");
    }

    #[test]
    fn a_record_that_breaks_the_rules_refuses_to_open() {
        let line = |key: &str, event| {
            Line {
                key: key.to_owned(),
                event,
                amount: 129_000,
                currency: "KRW".to_owned(),
            }
            .encode()
        };
        for log in [
            line("ord_1/1", Event::Approved) + &line("ord_1/1", Event::Approved),
            line("ord_1/1", Event::Refunded),
            line("ord_1/1", Event::Declined) + &line("ord_1/1", Event::Refunded),
            line("ord_1/1", Event::Approved)
                + &line("ord_1/1", Event::Refunded)
                + &line("ord_1/1", Event::Refunded),
        ] {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(CHARGES_FILE_NAME), &log).unwrap();
            let error = PaymentSimulator::open(dir.path()).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{log}");
        }
    }

    #[test]
    fn the_same_key_at_once_from_many_threads_charges_once() {
        const THREADS: usize = 16;
        let dir = tempfile::tempdir().unwrap();
        let simulator = PaymentSimulator::open(dir.path()).unwrap();
        let start = Barrier::new(THREADS);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let (simulator, start) = (&simulator, &start);
                scope.spawn(move || {
                    let card = card(PaymentSimulator::CARD_APPROVED);
                    start.wait();
                    // Every thread charges the shared key and one of its own.
                    for key in ["ord_1/1".to_owned(), format!("ord_{}/1", thread + 2)] {
                        assert_eq!(
                            simulator.charge(&key, 129_000, "KRW", &card),
                            Ok(ChargeOutcome::Approved)
                        );
                    }
                });
            }
        });
        assert_eq!(simulator.charges(), THREADS + 1);
        drop(simulator);
        assert_eq!(
            PaymentSimulator::open(dir.path()).unwrap().charges(),
            THREADS + 1
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "malformed charge request")]
    fn an_over_long_key_is_a_bug_of_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let simulator = PaymentSimulator::open(dir.path()).unwrap();
        let _ = charge(
            &simulator,
            &"k".repeat(129),
            PaymentSimulator::CARD_APPROVED,
        );
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn an_over_long_key_charges_nothing_and_answers_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let simulator = PaymentSimulator::open(dir.path()).unwrap();
        let key = "k".repeat(129);
        assert_eq!(
            charge(&simulator, &key, PaymentSimulator::CARD_APPROVED),
            Err(ProviderTimeout)
        );
        assert_eq!(simulator.status(&key), ChargeStatus::NotCharged);
        assert_eq!(simulator.charges(), 0);
        assert!(log_bytes(dir.path()).is_empty());
    }

    #[test]
    fn open_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("payments").join("simulator");
        let simulator = PaymentSimulator::open(&nested).unwrap();
        charge(&simulator, "ord_1/1", PaymentSimulator::CARD_APPROVED).unwrap();
        assert!(nested.join(CHARGES_FILE_NAME).is_file());
    }
}
