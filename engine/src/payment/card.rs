//! A card as the customer typed it, parsed once at the boundary. Its number and cvc are wiped
//! from memory when it is dropped and never appear in Debug output or in any record.

use std::fmt;
use std::mem;

use const_format::concatcp;
use zeroize::{Zeroize as _, Zeroizing};

use crate::clock::Millis;

/// The shortest card number, in digits (ISO/IEC 7812).
pub const CARD_NUMBER_DIGITS_MIN: usize = 13;
/// The longest card number, in digits (ISO/IEC 7812).
pub const CARD_NUMBER_DIGITS_MAX: usize = 19;
const CVC_DIGITS_MIN: usize = 3;
const CVC_DIGITS_MAX: usize = 4;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A card as the customer typed it; parse, don't validate.
#[derive(Clone)]
pub struct Card {
    /// 13 to 19 ASCII digits, separators removed, Luhn-valid.
    number: String,
    /// 1 to 12.
    expiry_month: u8,
    expiry_year: u16,
    /// 3 or 4 ASCII digits.
    cvc: String,
}

/// Why a card was refused; `reason` is fit to show the customer (it never quotes the input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidCard {
    /// Which rule the card broke, in a sentence for the customer.
    pub reason: &'static str,
}

const NUMBER_LENGTH: InvalidCard = InvalidCard {
    reason: concatcp!(
        "the card number must have ",
        CARD_NUMBER_DIGITS_MIN,
        " to ",
        CARD_NUMBER_DIGITS_MAX,
        " digits"
    ),
};
const NUMBER_CHARACTERS: InvalidCard = InvalidCard {
    reason: "the card number may hold only digits, spaces and dashes",
};
const NUMBER_CHECKSUM: InvalidCard = InvalidCard {
    reason: "the card number is mistyped (its check digit does not match)",
};
const EXPIRY_FORMAT: InvalidCard = InvalidCard {
    reason: "the expiry date must be written MM/YY or MM/YYYY",
};
const EXPIRY_MONTH: InvalidCard = InvalidCard {
    reason: "the expiry month must be 01 to 12",
};
const EXPIRED: InvalidCard = InvalidCard {
    reason: "the card has expired",
};
const CVC_FORMAT: InvalidCard = InvalidCard {
    reason: concatcp!(
        "the security code must be ",
        CVC_DIGITS_MIN,
        " or ",
        CVC_DIGITS_MAX,
        " digits"
    ),
};

impl Card {
    /// number: 13–19 digits, spaces and dashes allowed and removed, Luhn-valid; expiry "MM/YY"
    /// (or "MM/YYYY", spaces around the parts allowed), month 1–12, not in the past relative to
    /// `now_ms` (a card is valid to the end of its expiry month, UTC); cvc 3–4 digits.
    pub fn parse(
        number: &str,
        expiry: &str,
        cvc: &str,
        now_ms: Millis,
    ) -> Result<Card, InvalidCard> {
        let mut number = parse_number(number)?;
        let (expiry_month, expiry_year) = parse_expiry(expiry, now_ms)?;
        let mut cvc = parse_cvc(cvc)?;
        Ok(Card {
            // Moves the buffers out; the emptied `Zeroizing` shells have nothing left to wipe.
            number: mem::take(&mut *number),
            expiry_month,
            expiry_year,
            cvc: mem::take(&mut *cvc),
        })
    }

    /// The number's last four digits, the only part of it that Debug output shows.
    pub fn last4(&self) -> &str {
        &self.number[self.number.len() - 4..]
    }

    /// The expiry month, 1 to 12.
    pub fn expiry_month(&self) -> u8 {
        self.expiry_month
    }

    /// The expiry year in four digits (`MM/YY` is read as 20YY).
    pub fn expiry_year(&self) -> u16 {
        self.expiry_year
    }

    /// The full number, digits only: for the provider, never for a record or a log line.
    pub(super) fn digits(&self) -> &str {
        &self.number
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        self.number.zeroize();
        self.cvc.zeroize();
    }
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Card")
            .field("last4", &self.last4())
            .field(
                "expiry",
                &format_args!("{:02}/{}", self.expiry_month, self.expiry_year),
            )
            .finish_non_exhaustive()
    }
}

fn parse_number(input: &str) -> Result<Zeroizing<String>, InvalidCard> {
    // Sized once, so no reallocation leaves a copy of the digits behind in freed memory.
    let mut digits = Zeroizing::new(String::with_capacity(CARD_NUMBER_DIGITS_MAX));
    for c in input.chars() {
        match c {
            ' ' | '-' => {}
            '0'..='9' if digits.len() < CARD_NUMBER_DIGITS_MAX => digits.push(c),
            '0'..='9' => return Err(NUMBER_LENGTH),
            _ => return Err(NUMBER_CHARACTERS),
        }
    }
    if digits.len() < CARD_NUMBER_DIGITS_MIN {
        return Err(NUMBER_LENGTH);
    }
    if !passes_luhn(&digits) {
        return Err(NUMBER_CHECKSUM);
    }
    Ok(digits)
}

/// The Luhn check digit test: doubling every second digit from the right catches every single
/// mistyped digit and most swaps of two neighbours.
fn passes_luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn parse_expiry(input: &str, now_ms: Millis) -> Result<(u8, u16), InvalidCard> {
    let (month, year) = input.split_once('/').ok_or(EXPIRY_FORMAT)?;
    let (month, year) = (month.trim(), year.trim());
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if month.len() != 2 || !all_digits(month) || !all_digits(year) {
        return Err(EXPIRY_FORMAT);
    }
    let year: u16 = match year.len() {
        2 => 2000 + year.parse::<u16>().map_err(|_| EXPIRY_FORMAT)?,
        4 => year.parse().map_err(|_| EXPIRY_FORMAT)?,
        _ => return Err(EXPIRY_FORMAT),
    };
    let month: u8 = month.parse().map_err(|_| EXPIRY_FORMAT)?;
    if !(1..=12).contains(&month) {
        return Err(EXPIRY_MONTH);
    }
    let expired = i64::try_from(now_ms).map_or(true, |now| now >= month_end_ms(year, month));
    if expired {
        return Err(EXPIRED);
    }
    Ok((month, year))
}

fn parse_cvc(input: &str) -> Result<Zeroizing<String>, InvalidCard> {
    let cvc = input.trim();
    if !(CVC_DIGITS_MIN..=CVC_DIGITS_MAX).contains(&cvc.len())
        || !cvc.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(CVC_FORMAT);
    }
    let mut owned = Zeroizing::new(String::with_capacity(CVC_DIGITS_MAX));
    owned.push_str(cvc);
    Ok(owned)
}

/// The first millisecond after the expiry month ends, UTC: the first of the next month.
fn month_end_ms(year: u16, month: u8) -> i64 {
    let (year, month) = if month == 12 {
        (i64::from(year) + 1, 1)
    } else {
        (i64::from(year), i64::from(month) + 1)
    };
    days_from_civil(year, month, 1) * DAY_MS
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant's
/// `days_from_civil`): the year is counted from March, so the leap day falls at its end.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-15T12:00:00Z.
    const NOW_MS: Millis = 1_773_576_000_000;

    fn parse(number: &str, expiry: &str, cvc: &str) -> Result<Card, InvalidCard> {
        Card::parse(number, expiry, cvc, NOW_MS)
    }

    #[test]
    fn the_calendar_arithmetic_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(
            days_from_civil(2026, 3, 15) * DAY_MS + DAY_MS / 2,
            1_773_576_000_000
        );
        // 2028 is a leap year: February has 29 days.
        assert_eq!(
            month_end_ms(2028, 2) - days_from_civil(2028, 2, 1) * DAY_MS,
            29 * DAY_MS
        );
        assert_eq!(month_end_ms(2026, 12), days_from_civil(2027, 1, 1) * DAY_MS);
    }

    #[test]
    fn accepts_spaces_and_dashes_in_the_number() {
        for number in [
            "4242424242424242",
            "4242 4242 4242 4242",
            "4242-4242-4242-4242",
            " 4242 - 4242 4242-4242 ",
        ] {
            let card = parse(number, "12/30", "123").unwrap();
            assert_eq!(card.digits(), "4242424242424242");
            assert_eq!(card.last4(), "4242");
        }
    }

    #[test]
    fn accepts_13_and_19_digit_numbers() {
        // Luhn-valid numbers of the shortest and longest lengths.
        assert!(parse("4222222222222", "12/30", "123").is_ok());
        assert!(parse("4000 0000 0000 0000 006", "12/30", "123").is_ok());
    }

    #[test]
    fn rejects_numbers_of_the_wrong_length() {
        assert_eq!(parse("", "12/30", "123").unwrap_err(), NUMBER_LENGTH);
        assert_eq!(
            parse("4242 4242 42", "12/30", "123").unwrap_err(),
            NUMBER_LENGTH
        );
        assert_eq!(
            parse("424242424242", "12/30", "123").unwrap_err(),
            NUMBER_LENGTH
        );
        assert_eq!(
            parse("4242 4242 4242 4242 4242", "12/30", "123").unwrap_err(),
            NUMBER_LENGTH
        );
        assert_eq!(
            parse(&"4".repeat(10_000), "12/30", "123").unwrap_err(),
            NUMBER_LENGTH
        );
    }

    #[test]
    fn rejects_numbers_with_other_characters() {
        for number in [
            "4242 4242 4242 424x",
            "4242.4242.4242.4242",
            "4242\t4242 4242 4242",
            "４２４２ 4242 4242 4242",
            "+4242424242424242",
        ] {
            assert_eq!(
                parse(number, "12/30", "123").unwrap_err(),
                NUMBER_CHARACTERS,
                "{number:?}"
            );
        }
    }

    #[test]
    fn rejects_a_number_that_fails_the_luhn_check() {
        assert_eq!(
            parse("4242 4242 4242 4241", "12/30", "123").unwrap_err(),
            NUMBER_CHECKSUM
        );
        // Two neighbours swapped.
        assert_eq!(
            parse("4242 4242 4242 2442", "12/30", "123").unwrap_err(),
            NUMBER_CHECKSUM
        );
    }

    #[test]
    fn accepts_both_expiry_forms() {
        let short = parse("4242424242424242", "07/29", "123").unwrap();
        assert_eq!((short.expiry_month(), short.expiry_year()), (7, 2029));
        let long = parse("4242424242424242", " 07 / 2029 ", "123").unwrap();
        assert_eq!((long.expiry_month(), long.expiry_year()), (7, 2029));
    }

    #[test]
    fn rejects_malformed_expiry_dates() {
        for expiry in [
            "", "1230", "12-30", "1/30", "012/30", "12/3", "12/030", "ab/cd", "12/+3",
        ] {
            assert_eq!(
                parse("4242424242424242", expiry, "123").unwrap_err(),
                EXPIRY_FORMAT,
                "{expiry:?}"
            );
        }
    }

    #[test]
    fn rejects_a_bad_month() {
        for expiry in ["00/30", "13/30", "99/2030"] {
            assert_eq!(
                parse("4242424242424242", expiry, "123").unwrap_err(),
                EXPIRY_MONTH,
                "{expiry:?}"
            );
        }
    }

    #[test]
    fn a_card_is_valid_to_the_end_of_its_expiry_month() {
        // NOW_MS is in March 2026.
        assert!(parse("4242424242424242", "03/26", "123").is_ok());
        assert_eq!(
            parse("4242424242424242", "02/26", "123").unwrap_err(),
            EXPIRED
        );
        assert_eq!(
            parse("4242424242424242", "12/2025", "123").unwrap_err(),
            EXPIRED
        );
        assert_eq!(
            parse("4242424242424242", "03/0026", "123").unwrap_err(),
            EXPIRED
        );

        let april_first_ms = u64::try_from(month_end_ms(2026, 3)).unwrap();
        assert!(Card::parse("4242424242424242", "03/26", "123", april_first_ms - 1).is_ok());
        assert_eq!(
            Card::parse("4242424242424242", "03/26", "123", april_first_ms).unwrap_err(),
            EXPIRED
        );
    }

    #[test]
    fn rejects_a_bad_cvc() {
        assert!(parse("4242424242424242", "12/30", "1234").is_ok());
        for cvc in ["", "12", "12345", "12a", "1 23", "-123"] {
            assert_eq!(
                parse("4242424242424242", "12/30", cvc).unwrap_err(),
                CVC_FORMAT,
                "{cvc:?}"
            );
        }
    }

    #[test]
    fn debug_shows_only_the_last_four_digits() {
        let card = parse("4000 0566 5566 5556", "12/30", "987").unwrap();
        let debug = format!("{card:?}");
        assert_eq!(debug, "Card { last4: \"5556\", expiry: 12/2030, .. }");
        assert!(!debug.contains("4000"));
        assert!(!debug.contains("987"));
    }
}
