//! An email address, normalised once at the boundary (trimmed, lower-cased) so one mailbox has
//! one blind index. Debug output shows only the domain: addresses are personal data.

use std::fmt;

use crate::error::EngineError;

/// Longest address SMTP can carry (RFC 5321 path limit).
pub const EMAIL_BYTES_MAX: usize = 254;
const LOCAL_BYTES_MAX: usize = 64;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(text: &str) -> Result<Self, EngineError> {
        let normalised = text.trim().to_lowercase();
        let valid = normalised.len() <= EMAIL_BYTES_MAX
            && normalised
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[]\\,;:\"".contains(c))
            && match normalised.rsplit_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && local.len() <= LOCAL_BYTES_MAX
                        && !local.contains('@')
                        && domain.contains('.')
                        && domain.split('.').all(|label| {
                            !label.is_empty() && !label.starts_with('-') && !label.ends_with('-')
                        })
                }
                None => false,
            };
        if valid {
            Ok(Self(normalised))
        } else {
            Err(EngineError::InvalidEmail)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

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
            &long,
        ] {
            assert!(Email::parse(text).is_err(), "{text:?} accepted");
        }
    }
}
