//! An email address, normalised once at the boundary (trimmed, lower-cased) so one mailbox has
//! one blind index. Debug output shows only the domain: addresses are personal data.
//!
//! Addresses are ASCII (an international domain in its `xn--` form): the mail relay does not
//! speak SMTPUTF8, and an ASCII rule can be written as the [`EMAIL_PATTERN`] the API documents.

use std::fmt;

use crate::accounts::AccountError;
use crate::error::EngineError;

/// Longest address SMTP can carry (RFC 5321 path limit), surrounding blanks included.
pub const EMAIL_BYTES_MAX: usize = 254;
const LOCAL_BYTES_MAX: usize = 64;

/// What [`Email::parse`] accepts, as an ECMA-262 / JSON Schema pattern (with a `maxLength` of
/// [`EMAIL_BYTES_MAX`]): blanks around; a local part of 1 to 64 printable ASCII characters
/// other than `"(),:;<>@[\]`; a domain of two or more dot-separated labels that neither start
/// nor end with `-`. A test holds the two to agree.
pub const EMAIL_PATTERN: &str = concat!(
    r"^[\t\n\f\r ]*",
    r"[!#-'*+\-./0-9=?A-Z^-~]{1,64}",
    r"@",
    r"[!#-'*+/0-9=?A-Z^-~]([!#-'*+\-/0-9=?A-Z^-~]*[!#-'*+/0-9=?A-Z^-~])?",
    r"(\.[!#-'*+/0-9=?A-Z^-~]([!#-'*+\-/0-9=?A-Z^-~]*[!#-'*+/0-9=?A-Z^-~])?)+",
    r"[\t\n\f\r ]*$",
);

/// Blanks a client may leave around an address.
fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// A character of a local part or a domain label.
fn is_address_char(c: char) -> bool {
    c.is_ascii_graphic() && !"\"(),:;<>@[\\]".contains(c)
}

/// A checked email address, trimmed and lower-cased; Debug output shows only its domain.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Checks and normalises `text` (blanks around dropped, lower-cased). Fails with
    /// `AccountError::InvalidEmail` for text over `EMAIL_BYTES_MAX` (254) bytes or that
    /// `EMAIL_PATTERN` does not match.
    pub fn parse(text: &str) -> Result<Self, EngineError> {
        let normalised = text.trim_matches(is_blank).to_ascii_lowercase();
        let label =
            |label: &str| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-');
        let valid = text.len() <= EMAIL_BYTES_MAX
            && match normalised.split_once('@') {
                Some((local, domain)) => {
                    (1..=LOCAL_BYTES_MAX).contains(&local.len())
                        && local.chars().all(is_address_char)
                        && domain.chars().all(is_address_char)
                        && domain.contains('.')
                        && domain.split('.').all(label)
                }
                None => false,
            };
        if valid {
            Ok(Self(normalised))
        } else {
            Err(EngineError::Account(AccountError::InvalidEmail))
        }
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the `@`, lower-cased.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email(…@{})", self.domain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised() {
        let email = Email::parse("  Alice.Smith@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "alice.smith@example.com");
        assert_eq!(format!("{email:?}"), "Email(…@example.com)");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        let long = format!("{}@example.com", "a".repeat(65));
        for text in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "alice@@example.com",
            "alice@-example.com",
            "alice@example..com",
            "<a>@example.com",
            "ali\u{e7}e@example.com",
            "alice@ex\u{e4}mple.com",
            "\u{a0}alice@example.com",
            &long,
        ] {
            assert!(Email::parse(text).is_err(), "{text:?} accepted");
        }
    }

    proptest::proptest! {
        /// The documented pattern and the parser accept the same addresses.
        #[test]
        fn the_pattern_is_the_rule(
            text in r"[ \ta-cA@.\-_+!~\x01\u{e9}\u{a0}\(\[]{0,12}(@[a-c\-.]{0,6})?[ \n]?",
        ) {
            let pattern = regex::Regex::new(EMAIL_PATTERN).expect("the pattern compiles");
            let documented = pattern.is_match(&text) && text.chars().count() <= EMAIL_BYTES_MAX;
            proptest::prop_assert_eq!(Email::parse(&text).is_ok(), documented, "{:?}", text);
        }
    }
}
