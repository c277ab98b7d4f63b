//! Identifiers. Inside the engine they are plain integers (cheap to hash, compact in the log);
//! at the edge they print with a kind prefix (`sku_…`, `usr_…`, `rsv_…`) so that an id of one
//! kind is never mistaken for another.

use std::fmt;
use std::str::FromStr;

use rkyv::{Archive, Deserialize, Serialize};

/// The digits of `<prefix>_<digits>` if they are canonical decimal: no sign, no leading zeros,
/// so one id has one spelling.
fn canonical_digits<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let digits = s.strip_prefix(prefix)?.strip_prefix('_')?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !(digits.len() > 1 && digits.starts_with('0'));
    canonical.then_some(digits)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
        )]
        #[rkyv(derive(Debug, PartialEq, Eq, Hash))]
        pub struct $name(pub u64);

        impl $name {
            /// The kind prefix of the id's text form, written before the `_` and the digits.
            pub const PREFIX: &'static str = $prefix;
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                canonical_digits(s, $prefix)
                    .and_then(|digits| digits.parse().ok())
                    .map($name)
                    .ok_or(InvalidId { expected: $prefix })
            }
        }

        impl $name {
            /// Reads a position in a list of these ids (a page cursor): the id's text, where
            /// canonical digits past `u64::MAX` read as `u64::MAX`, a place past every id.
            pub fn parse_position(s: &str) -> Result<Self, InvalidId> {
                let digits = canonical_digits(s, $prefix).ok_or(InvalidId { expected: $prefix })?;
                // Canonical digits fail to parse only when they overflow.
                Ok($name(digits.parse().unwrap_or(u64::MAX)))
            }
        }
    };
}

/// The text did not name an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid `{expected}_…` id")]
pub struct InvalidId {
    /// The prefix of the kind that was expected, such as `sku`.
    pub expected: &'static str,
}

id_type!(
    /// A stock-keeping unit: one counter of sellable units.
    Sku,
    "sku"
);
id_type!(
    /// A customer (or admin) account.
    UserId,
    "usr"
);
id_type!(
    /// Units held for one customer until a deadline.
    ReservationId,
    "rsv"
);
id_type!(
    /// A product of the catalog; it sells through the SKU with the same number.
    ProductId,
    "prd"
);
id_type!(
    /// An order, and the saga that drives it through payment.
    OrderId,
    "ord"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_past_every_id_reads_as_the_last() {
        assert_eq!(OrderId::parse_position("ord_7"), Ok(OrderId(7)));
        assert_eq!(
            OrderId::parse_position("ord_99999999999999999999999"),
            Ok(OrderId(u64::MAX))
        );
        for bad in [
            "ord_",
            "ord_01",
            "ord_-1",
            "ord_1x",
            "prd_1",
            "ord_099999999999999999999",
        ] {
            assert!(OrderId::parse_position(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_round_trip_through_their_text() {
        assert_eq!("sku_42".parse::<Sku>(), Ok(Sku(42)));
        assert_eq!(Sku(42).to_string(), "sku_42");
        assert_eq!(ReservationId(7).to_string().parse(), Ok(ReservationId(7)));
    }

    #[test]
    fn ids_of_another_kind_or_odd_spelling_are_refused() {
        for text in [
            "usr_42",
            "sku_",
            "sku_042",
            "sku_-1",
            "sku_1x",
            "sku42",
            "sku_99999999999999999999",
        ] {
            assert!(text.parse::<Sku>().is_err(), "{text} parsed");
        }
    }
}
