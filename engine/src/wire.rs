//! Numbers as JSON clients write them. JSON has one number type, and JSON Schema's `integer`
//! is any number without a fractional part, so `2.0` is as whole as `2`: a client generated
//! from the OpenAPI document (or a JavaScript one that rounds through a double) may send
//! either. Fields that count units or money read through [`whole`] and [`whole_option`],
//! which take both and refuse `2.5`, `"2"` and values past the field's type.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};

/// Reads a whole number into `T`: `#[serde(deserialize_with = "allot_engine::wire::whole")]`.
pub fn whole<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    Whole::<T>::deserialize(deserializer).map(|w| w.0)
}

/// Reads an absent or `null` field as `None`, else as [`whole`]; pair it with
/// `#[serde(default)]` so that a missing field is `None`.
pub fn whole_option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    Option::<Whole<T>>::deserialize(deserializer).map(|w| w.map(|w| w.0))
}

struct Whole<T>(T);

impl<'de, T: TryFrom<i128>> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(WholeVisitor(PhantomData))
            .map(Whole)
    }
}

struct WholeVisitor<T>(PhantomData<T>);

/// Doubles from -2^127 to 2^127 (exclusive) convert to `i128` without saturating.
const I128_BOUND: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;

impl<T: TryFrom<i128>> WholeVisitor<T> {
    fn fit<E: de::Error>(&self, value: i128, unexpected: Unexpected<'_>) -> Result<T, E> {
        T::try_from(value).map_err(|_| E::invalid_value(unexpected, self))
    }
}

impl<T: TryFrom<i128>> Visitor<'_> for WholeVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = std::any::type_name::<T>();
        write!(f, "a whole number that fits {bits}")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.fit(i128::from(v), Unexpected::Signed(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.fit(i128::from(v), Unexpected::Unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        let whole = v.is_finite() && v.fract() == 0.0 && v.abs() < I128_BOUND;
        if !whole {
            return Err(E::invalid_value(Unexpected::Float(v), &self));
        }
        // Exact: `v` has no fraction and lies inside i128.
        self.fit(v as i128, Unexpected::Float(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
    struct Form {
        #[serde(deserialize_with = "whole")]
        quantity: u32,
        #[serde(default, deserialize_with = "whole_option")]
        limit: Option<u8>,
    }

    fn read(json: &str) -> Result<Form, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn a_whole_number_reads_with_or_without_a_fraction_of_zero() {
        let two = Form {
            quantity: 2,
            limit: None,
        };
        assert_eq!(read(r#"{"quantity": 2}"#), Ok(two));
        assert_eq!(read(r#"{"quantity": 2.0, "limit": null}"#), Ok(two));
        assert_eq!(
            read(r#"{"quantity": 2e0, "limit": 5.0}"#).map(|f| f.limit),
            Ok(Some(5))
        );
        assert_eq!(
            read(r#"{"quantity": 4294967295.0}"#).map(|f| f.quantity),
            Ok(u32::MAX)
        );
    }

    #[test]
    fn fractions_text_and_numbers_past_the_type_are_refused() {
        for json in [
            r#"{"quantity": 2.5}"#,
            r#"{"quantity": "2"}"#,
            r#"{"quantity": -1}"#,
            r#"{"quantity": -1.0}"#,
            r#"{"quantity": 4294967296}"#,
            r#"{"quantity": 1e300}"#,
            r#"{"quantity": 100000000000000000000000000000000000000000}"#,
            r#"{"quantity": null}"#,
            r#"{"quantity": 1, "limit": 256}"#,
            r#"{"quantity": 1, "limit": 0.5}"#,
        ] {
            let error = read(json).expect_err(json);
            assert!(
                error.contains("whole number") || error.contains("invalid type"),
                "{json}: {error}"
            );
        }
    }
}
