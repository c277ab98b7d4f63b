//! The simulator's own record of charges: an append-only text file, one event per line.
//!
//! ```text
//! ord_17/1 approved 129000 KRW 5f0c6a1e
//! ord_18/1 declined 45000 KRW 0b9d3c77
//! ord_17/1 refunded 129000 KRW 9a81e2d4
//! ```
//!
//! Fields are separated by one space: the idempotency key, the event, the amount in minor units,
//! the currency, and the CRC-32 (lower-case hex) of everything before the space that precedes it.
//! A key has no spaces (`charge_key_is_well_formed`), so the split is unambiguous, and every line
//! is at most [`LINE_BYTES_MAX`] bytes.
//!
//! A line is appended and fsynced before its answer is given, so only the last line can be torn
//! by a crash, and a torn line was never answered: it is cut on open. A damaged line followed by
//! an intact one is not a torn write but corruption, and opening refuses it rather than forget a
//! charge from the middle of the record. So does an intact line whose fields do not parse.

use std::io;

use super::{charge_key_is_well_formed, currency_is_well_formed};

/// The longest line, newline included. The longest real one is 183 bytes: a key of
/// [`CHARGE_KEY_BYTES_MAX`](super::CHARGE_KEY_BYTES_MAX) bytes, `timeout_not_charged`, a
/// 20-digit amount, a currency, a CRC and five separators.
pub(super) const LINE_BYTES_MAX: usize = 256;
const CRC_HEX_DIGITS: usize = 8;

/// One event of a key's life, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// Charged, and the answer said so.
    Approved,
    Declined,
    LimitExceeded,
    /// Answered with a timeout; nothing was charged.
    TimedOutNotCharged,
    /// Answered with a timeout, but the card was charged.
    TimedOutCharged,
    /// The charge of the key was refunded.
    Refunded,
}

impl Event {
    const ALL: [Event; 6] = [
        Event::Approved,
        Event::Declined,
        Event::LimitExceeded,
        Event::TimedOutNotCharged,
        Event::TimedOutCharged,
        Event::Refunded,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Event::Approved => "approved",
            Event::Declined => "declined",
            Event::LimitExceeded => "limit_exceeded",
            Event::TimedOutNotCharged => "timeout_not_charged",
            Event::TimedOutCharged => "timeout_charged",
            Event::Refunded => "refunded",
        }
    }

    fn parse(text: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|event| event.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Line {
    pub key: String,
    pub event: Event,
    pub amount: u64,
    pub currency: String,
}

impl Line {
    /// The line as stored, newline included.
    pub fn encode(&self) -> String {
        debug_assert!(charge_key_is_well_formed(&self.key));
        debug_assert!(currency_is_well_formed(&self.currency));
        let body = format!(
            "{} {} {} {}",
            self.key,
            self.event.as_str(),
            self.amount,
            self.currency
        );
        let crc = crc32fast::hash(body.as_bytes());
        let line = format!("{body} {crc:08x}\n");
        debug_assert!(line.len() <= LINE_BYTES_MAX);
        line
    }
}

/// Why a stored line was not taken.
#[derive(Debug, PartialEq, Eq)]
enum Defect {
    /// Incomplete or failing its CRC: what a torn write leaves.
    Damaged,
    /// Intact by its CRC but not a record this code writes.
    Unreadable(&'static str),
}

/// Decodes one line, its newline removed.
fn decode(bytes: &[u8]) -> Result<Line, Defect> {
    if bytes.len() >= LINE_BYTES_MAX {
        return Err(Defect::Damaged);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| Defect::Damaged)?;
    let (body, crc) = text.rsplit_once(' ').ok_or(Defect::Damaged)?;
    if crc.len() != CRC_HEX_DIGITS || !crc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Defect::Damaged);
    }
    let crc = u32::from_str_radix(crc, 16).map_err(|_| Defect::Damaged)?;
    if crc != crc32fast::hash(body.as_bytes()) {
        return Err(Defect::Damaged);
    }

    let mut fields = body.split(' ');
    let (Some(key), Some(event), Some(amount), Some(currency), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(Defect::Unreadable("expected key, event, amount, currency"));
    };
    if !charge_key_is_well_formed(key) {
        return Err(Defect::Unreadable("malformed idempotency key"));
    }
    let event = Event::parse(event).ok_or(Defect::Unreadable("unknown event"))?;
    if !amount.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Defect::Unreadable("malformed amount"));
    }
    let amount = amount
        .parse()
        .map_err(|_| Defect::Unreadable("malformed amount"))?;
    if !currency_is_well_formed(currency) {
        return Err(Defect::Unreadable("malformed currency"));
    }
    Ok(Line {
        key: key.to_owned(),
        event,
        amount,
        currency: currency.to_owned(),
    })
}

/// The readable part of a stored log.
#[derive(Debug)]
pub(super) struct Scan {
    pub lines: Vec<Line>,
    /// Length of the intact prefix: the file is cut here before anything is appended.
    pub intact_bytes: usize,
    /// 1-based number of the first line cut away, if any.
    pub cut_at_line: Option<usize>,
}

/// Reads a whole stored log. A damaged tail is reported for cutting; damage before an intact
/// line, or an intact line that does not parse, is an error.
pub(super) fn scan(bytes: &[u8]) -> io::Result<Scan> {
    let corrupt = |message: String| io::Error::new(io::ErrorKind::InvalidData, message);
    let mut lines = Vec::new();
    let mut offset = 0;
    // (line number, byte offset) of the first damaged line.
    let mut damage: Option<(usize, usize)> = None;
    for (index, segment) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let decoded = match segment.strip_suffix(b"\n") {
            Some(line) => decode(line),
            // No newline: the write stopped inside this line.
            None => Err(Defect::Damaged),
        };
        match (decoded, damage) {
            (Ok(line), None) => lines.push(line),
            (Ok(_), Some((damaged, _))) => {
                return Err(corrupt(format!(
                    "line {damaged} is damaged but line {number} after it is intact: \
                     the record is corrupt, not torn by a crash"
                )));
            }
            (Err(Defect::Damaged), _) => {
                damage.get_or_insert((number, offset));
            }
            (Err(Defect::Unreadable(reason)), _) => {
                return Err(corrupt(format!("line {number}: {reason}")));
            }
        }
        offset += segment.len();
    }
    Ok(Scan {
        lines,
        intact_bytes: damage.map_or(bytes.len(), |(_, at)| at),
        cut_at_line: damage.map(|(number, _)| number),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::CHARGE_KEY_BYTES_MAX;

    fn line(key: &str, event: Event) -> Line {
        Line {
            key: key.to_owned(),
            event,
            amount: 129_000,
            currency: "KRW".to_owned(),
        }
    }

    fn encode_all(lines: &[Line]) -> Vec<u8> {
        lines
            .iter()
            .map(Line::encode)
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn every_event_round_trips() {
        let lines: Vec<Line> = Event::ALL
            .into_iter()
            .enumerate()
            .map(|(index, event)| line(&format!("ord_{index}/1"), event))
            .collect();
        let bytes = encode_all(&lines);
        let scan = scan(&bytes).unwrap();
        assert_eq!(scan.lines, lines);
        assert_eq!(scan.intact_bytes, bytes.len());
        assert_eq!(scan.cut_at_line, None);
    }

    #[test]
    fn the_format_is_stable() {
        let encoded = line("ord_17/1", Event::Approved).encode();
        let body = "ord_17/1 approved 129000 KRW";
        assert_eq!(
            encoded,
            format!("{body} {:08x}\n", crc32fast::hash(body.as_bytes()))
        );
    }

    #[test]
    fn the_longest_line_fits_the_bound() {
        let longest = Line {
            key: "k".repeat(CHARGE_KEY_BYTES_MAX),
            event: Event::TimedOutNotCharged,
            amount: u64::MAX,
            currency: "KRW".to_owned(),
        };
        let encoded = longest.encode();
        assert_eq!(encoded.len(), 183);
        assert!(encoded.len() <= LINE_BYTES_MAX);
        assert_eq!(scan(encoded.as_bytes()).unwrap().lines, [longest]);
    }

    #[test]
    fn an_empty_log_is_empty() {
        let scan = scan(b"").unwrap();
        assert!(scan.lines.is_empty());
        assert_eq!(scan.intact_bytes, 0);
    }

    #[test]
    fn every_torn_prefix_of_the_last_line_is_cut() {
        let first = line("ord_1/1", Event::Approved).encode();
        let last = line("ord_2/1", Event::Declined).encode();
        for torn in 1..last.len() {
            let bytes = [first.as_bytes(), &last.as_bytes()[..torn]].concat();
            let scan = scan(&bytes).unwrap();
            assert_eq!(scan.lines.len(), 1, "torn at {torn}");
            assert_eq!(scan.intact_bytes, first.len());
            assert_eq!(scan.cut_at_line, Some(2));
        }
    }

    #[test]
    fn a_damaged_tail_of_several_lines_is_cut() {
        let first = line("ord_1/1", Event::Approved).encode();
        let mut flipped = line("ord_2/1", Event::Approved).encode().into_bytes();
        flipped[3] ^= 0x01;
        let bytes = [first.as_bytes(), &flipped, b"\0\0\0\0"].concat();
        let scan = scan(&bytes).unwrap();
        assert_eq!(scan.lines.len(), 1);
        assert_eq!(scan.intact_bytes, first.len());
        assert_eq!(scan.cut_at_line, Some(2));
    }

    #[test]
    fn damage_before_an_intact_line_is_corruption() {
        let mut flipped = line("ord_1/1", Event::Approved).encode().into_bytes();
        flipped[0] = b'x';
        let bytes = [
            &flipped,
            line("ord_2/1", Event::Approved).encode().as_bytes(),
        ]
        .concat();
        let error = scan(&bytes).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("line 1 is damaged"), "{error}");
    }

    #[test]
    fn an_intact_line_that_does_not_parse_is_corruption() {
        for body in [
            "ord_1/1 approved 129000",
            "ord_1/1 charged 129000 KRW",
            "ord_1/1 approved 12x KRW",
            "ord_1/1 approved +129000 KRW",
            "ord_1/1 approved 129000 krw",
            "ord_1/1 approved 129000 KRW extra",
        ] {
            let bytes = format!("{body} {:08x}\n", crc32fast::hash(body.as_bytes()));
            let error = scan(bytes.as_bytes()).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{body}");
        }
    }

    #[test]
    fn an_over_long_line_is_damaged() {
        let body = format!("{} approved 1 KRW", "k".repeat(LINE_BYTES_MAX));
        let bytes = format!("{body} {:08x}\n", crc32fast::hash(body.as_bytes()));
        assert_eq!(scan(bytes.as_bytes()).unwrap().cut_at_line, Some(1));
    }
}
