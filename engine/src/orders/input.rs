//! What a customer or an admin sends about an order, parsed once at the edge into types that
//! cannot hold a wrong value: the Idempotency-Key, the shipping address, the request a key
//! stands for, a return's reason, a shipment. Each owns its limits and its error; the HTTP
//! layer only builds them from the wire.

use std::fmt;
use std::str::FromStr;

use const_format::concatcp;
use serde::{Deserialize, Serialize};

use crate::catalog::CatalogError;
use crate::error::EngineError;
use crate::ids::ProductId;

use super::{LineRequest, ORDER_LINES_MAX, OrderError};

/// Longest Idempotency-Key accepted, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;
/// Longest recipient, in characters.
pub const RECIPIENT_CHARS_MAX: usize = 100;
/// Longest phone number, in characters.
pub const PHONE_CHARS_MAX: usize = 32;
/// Longest address line, in characters.
pub const ADDRESS_LINE_CHARS_MAX: usize = 200;
/// Longest city, in characters.
pub const CITY_CHARS_MAX: usize = 100;
/// Longest postal code, in characters.
pub const POSTAL_CODE_CHARS_MAX: usize = 20;
/// Longest reason of a return, in characters.
pub const RETURN_REASON_CHARS_MAX: usize = 500;
/// Longest carrier name or tracking number, in characters.
pub const SHIPMENT_FIELD_CHARS_MAX: usize = 100;

// ----- the Idempotency-Key -----------------------------------------------------------------

/// The key a customer sends with a placement (surrounding whitespace dropped): the same key
/// with the same request answers the same order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a text is not an Idempotency-Key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIdempotencyKey {
    /// The key is empty or only whitespace (as when no header was sent).
    #[error("send an Idempotency-Key header (unique per intended order) to place an order")]
    Missing,
    /// The key, trimmed, is over `IDEMPOTENCY_KEY_BYTES_MAX` (128) bytes.
    #[error("an Idempotency-Key is at most {IDEMPOTENCY_KEY_BYTES_MAX} bytes")]
    TooLong,
}

impl FromStr for IdempotencyKey {
    type Err = InvalidIdempotencyKey;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let key = text.trim();
        if key.is_empty() {
            Err(InvalidIdempotencyKey::Missing)
        } else if key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
            Err(InvalidIdempotencyKey::TooLong)
        } else {
            Ok(Self(key.to_string()))
        }
    }
}

impl IdempotencyKey {
    /// The key as sent, without its surrounding whitespace.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ----- the shipping address ----------------------------------------------------------------

/// A shipping address as it arrives; the engine checks it into a `ShippingAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddressForm {
    /// Who receives the parcel: 1 to 100 characters, not only spaces.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 100, pattern = "\\S")
    )]
    pub recipient: String,
    /// The recipient's phone number: 1 to 32 characters, not only spaces.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 32, pattern = "\\S")
    )]
    pub phone: String,
    /// The first address line: 1 to 200 characters, not only spaces.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = "\\S")
    )]
    pub line1: String,
    /// An optional second address line, up to 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 200))]
    pub line2: Option<String>,
    /// The city: 1 to 100 characters, not only spaces.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 100, pattern = "\\S")
    )]
    pub city: String,
    /// The postal code: 1 to 20 characters, not only spaces.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 20, pattern = "\\S")
    )]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `KR`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Z]{2}$", example = "KR"))]
    pub country: String,
}

/// A checked shipping address: every required field has text (not only spaces) within its
/// limit, and the country is two capital letters. Personal data: the engine seals it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShippingAddress(AddressForm);

/// The address broke one of its rules; the message names them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "recipient, phone, line1, city and postal_code are required (at most {RECIPIENT_CHARS_MAX}, \
     {PHONE_CHARS_MAX}, {ADDRESS_LINE_CHARS_MAX}, {CITY_CHARS_MAX} and {POSTAL_CODE_CHARS_MAX} \
     characters), line2 is at most {ADDRESS_LINE_CHARS_MAX}, and country is an ISO 3166-1 \
     alpha-2 code such as KR"
)]
pub struct InvalidAddress;

fn required(text: &str, chars_max: usize) -> bool {
    !text.trim().is_empty() && text.chars().count() <= chars_max
}

impl TryFrom<AddressForm> for ShippingAddress {
    type Error = InvalidAddress;

    fn try_from(form: AddressForm) -> Result<Self, Self::Error> {
        let valid = required(&form.recipient, RECIPIENT_CHARS_MAX)
            && required(&form.phone, PHONE_CHARS_MAX)
            && required(&form.line1, ADDRESS_LINE_CHARS_MAX)
            && form
                .line2
                .as_deref()
                .is_none_or(|line| line.chars().count() <= ADDRESS_LINE_CHARS_MAX)
            && required(&form.city, CITY_CHARS_MAX)
            && required(&form.postal_code, POSTAL_CODE_CHARS_MAX)
            && form.country.len() == 2
            && form.country.bytes().all(|b| b.is_ascii_uppercase());
        if valid {
            Ok(Self(form))
        } else {
            Err(InvalidAddress)
        }
    }
}

impl ShippingAddress {
    /// The address's fields, as they were checked.
    pub fn form(&self) -> &AddressForm {
        &self.0
    }

    /// The text the engine seals: the address as JSON, fields in their fixed order.
    pub fn to_text(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    /// An address read back from its sealed text; `None` for a text no address became
    /// (written by a tool, not by a customer).
    pub fn from_text(text: &str) -> Option<Self> {
        serde_json::from_str::<AddressForm>(text).ok().map(Self)
    }
}

// ----- a placement -------------------------------------------------------------------------

/// One line as it arrives: the product's id as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LineForm {
    /// `prd_…`
    pub product_id: String,
    /// Units of the product; a placement accepts 1 to 1,000 per line.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4_294_967_295_i64, format = Int64))]
    #[serde(deserialize_with = "crate::wire::whole")]
    pub quantity: u32,
}

/// A placement as it arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderForm {
    /// The lines, 1 to 20.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 20))]
    pub items: Vec<LineForm>,
    /// Where the order goes.
    pub shipping_address: AddressForm,
}

/// A checked placement: the lines the customer asks for and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    lines: Vec<LineRequest>,
    shipping_address: ShippingAddress,
}

impl TryFrom<OrderForm> for OrderRequest {
    type Error = EngineError;

    /// Fails with `ProductUnknown` for an id that names no product (what was sent, in the
    /// error), `InvalidOrder` for a line count out of bounds, `InvalidAddress` for the address.
    fn try_from(form: OrderForm) -> Result<Self, Self::Error> {
        if form.items.is_empty() || form.items.len() > ORDER_LINES_MAX {
            return Err(OrderError::InvalidOrder(concatcp!(
                "an order has 1 to ",
                ORDER_LINES_MAX,
                " lines"
            ))
            .into());
        }
        let lines = form
            .items
            .iter()
            .map(|item| {
                let product = item.product_id.parse::<ProductId>().map_err(|_| {
                    EngineError::Catalog(CatalogError::ProductUnknown(item.product_id.clone()))
                })?;
                Ok(LineRequest {
                    product,
                    quantity: item.quantity,
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let shipping_address = ShippingAddress::try_from(form.shipping_address)?;
        Ok(Self {
            lines,
            shipping_address,
        })
    }
}

impl OrderRequest {
    /// A request from lines and an address checked already; the lines are checked when the
    /// order is placed.
    pub fn new(lines: Vec<LineRequest>, shipping_address: ShippingAddress) -> Self {
        Self {
            lines,
            shipping_address,
        }
    }

    /// The lines the customer asks for, in the order sent.
    pub fn lines(&self) -> &[LineRequest] {
        &self.lines
    }

    /// Where the order goes.
    pub fn shipping_address(&self) -> &ShippingAddress {
        &self.shipping_address
    }

    /// The request in one canonical form, which an Idempotency-Key is bound to: the same
    /// request in another spelling (spaces, field order) is the same. It is the JSON of the
    /// wire shape, as it has been since the first store format, so keys taken before stay
    /// bound to their requests.
    pub fn fingerprint(&self) -> Vec<u8> {
        /// `OrderForm`'s shape, borrowing the address (serde writes `&T` as `T`).
        #[derive(Serialize)]
        struct Canonical<'a> {
            items: Vec<LineForm>,
            shipping_address: &'a AddressForm,
        }
        let canonical = Canonical {
            items: self
                .lines
                .iter()
                .map(|line| LineForm {
                    product_id: line.product.to_string(),
                    quantity: line.quantity,
                })
                .collect(),
            shipping_address: &self.shipping_address.0,
        };
        serde_json::to_vec(&canonical).unwrap_or_default()
    }
}

// ----- a return, a shipment ----------------------------------------------------------------

/// A return's reason or a shipment broke its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOrderInput {
    /// A return's reason is over `RETURN_REASON_CHARS_MAX` (500) characters.
    #[error("the reason is over {RETURN_REASON_CHARS_MAX} characters")]
    ReasonTooLong,
    /// A shipment's carrier or tracking number is empty, only spaces, or over
    /// `SHIPMENT_FIELD_CHARS_MAX` (100) characters.
    #[error("carrier and tracking_number are 1 to {SHIPMENT_FIELD_CHARS_MAX} characters")]
    Shipment,
}

/// Why a customer returns an order: at most [`RETURN_REASON_CHARS_MAX`] characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnReason(String);

impl TryFrom<String> for ReturnReason {
    type Error = InvalidOrderInput;

    fn try_from(reason: String) -> Result<Self, Self::Error> {
        if reason.chars().count() > RETURN_REASON_CHARS_MAX {
            return Err(InvalidOrderInput::ReasonTooLong);
        }
        Ok(Self(reason))
    }
}

impl ReturnReason {
    /// The reason's text.
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A shipment as it arrives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ShipmentForm {
    /// The carrier's name: 1 to 100 characters, not only spaces.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 100, pattern = "\\S")
    )]
    pub carrier: String,
    /// The carrier's tracking number: 1 to 100 characters, not only spaces.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 100, pattern = "\\S")
    )]
    pub tracking_number: String,
}

/// A checked shipment: a carrier and a tracking number, each 1 to
/// [`SHIPMENT_FIELD_CHARS_MAX`] characters with text in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    /// The carrier's name.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking_number: String,
}

impl TryFrom<ShipmentForm> for Shipment {
    type Error = InvalidOrderInput;

    fn try_from(form: ShipmentForm) -> Result<Self, Self::Error> {
        if !required(&form.carrier, SHIPMENT_FIELD_CHARS_MAX)
            || !required(&form.tracking_number, SHIPMENT_FIELD_CHARS_MAX)
        {
            return Err(InvalidOrderInput::Shipment);
        }
        Ok(Self {
            carrier: form.carrier,
            tracking_number: form.tracking_number,
        })
    }
}

// The schema attributes above repeat the limits as literals (attributes take no constants):
// these tie them together.
const _: () = assert!(RECIPIENT_CHARS_MAX == 100 && PHONE_CHARS_MAX == 32);
const _: () = assert!(ADDRESS_LINE_CHARS_MAX == 200 && CITY_CHARS_MAX == 100);
const _: () = assert!(POSTAL_CODE_CHARS_MAX == 20 && SHIPMENT_FIELD_CHARS_MAX == 100);
const _: () = assert!(ORDER_LINES_MAX == 20 && RETURN_REASON_CHARS_MAX == 500);

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> AddressForm {
        crate::testkit::address_form()
    }

    #[test]
    fn an_address_keeps_its_limits() {
        assert!(ShippingAddress::try_from(form()).is_ok());
        let cases: [fn(&mut AddressForm); 6] = [
            |f| f.recipient = " ".into(),
            |f| f.phone = "1".repeat(PHONE_CHARS_MAX + 1),
            |f| f.line2 = Some("x".repeat(ADDRESS_LINE_CHARS_MAX + 1)),
            |f| f.city = String::new(),
            |f| f.country = "kr".into(),
            |f| f.country = "KOR".into(),
        ];
        for (n, break_it) in cases.into_iter().enumerate() {
            let mut broken = form();
            break_it(&mut broken);
            assert_eq!(
                ShippingAddress::try_from(broken),
                Err(InvalidAddress),
                "case {n}"
            );
        }
        // Counted in characters, not bytes.
        let mut korean = form();
        korean.recipient = "김".repeat(RECIPIENT_CHARS_MAX);
        assert!(ShippingAddress::try_from(korean).is_ok());
    }

    #[test]
    fn an_address_reads_back_from_its_text() {
        let address = ShippingAddress::try_from(form()).unwrap();
        assert_eq!(
            ShippingAddress::from_text(&address.to_text()),
            Some(address)
        );
        assert_eq!(ShippingAddress::from_text("1 Long Road, Springfield"), None);
    }

    #[test]
    fn keys_are_trimmed_and_bounded() {
        assert_eq!("  k-1 ".parse::<IdempotencyKey>().unwrap().as_str(), "k-1");
        assert_eq!(
            "   ".parse::<IdempotencyKey>(),
            Err(InvalidIdempotencyKey::Missing)
        );
        let long = "k".repeat(IDEMPOTENCY_KEY_BYTES_MAX + 1);
        assert_eq!(
            long.parse::<IdempotencyKey>(),
            Err(InvalidIdempotencyKey::TooLong)
        );
        assert!(
            "k".repeat(IDEMPOTENCY_KEY_BYTES_MAX)
                .parse::<IdempotencyKey>()
                .is_ok()
        );
    }

    #[test]
    fn the_fingerprint_is_the_wire_shape_in_canonical_form() {
        let request = OrderRequest::try_from(OrderForm {
            items: vec![LineForm {
                product_id: "prd_3".into(),
                quantity: 2,
            }],
            shipping_address: form(),
        })
        .unwrap();
        assert_eq!(
            String::from_utf8(request.fingerprint()).unwrap(),
            r#"{"items":[{"product_id":"prd_3","quantity":2}],"shipping_address":{"recipient":"Kim Minji","phone":"010-1234-5678","line1":"1 Main St","city":"Seoul","postal_code":"04524","country":"KR"}}"#
        );
    }

    #[test]
    fn a_malformed_product_id_is_named_in_the_error() {
        let error = OrderRequest::try_from(OrderForm {
            items: vec![LineForm {
                product_id: "tote".into(),
                quantity: 1,
            }],
            shipping_address: form(),
        })
        .unwrap_err();
        assert!(error.to_string().contains("tote"), "{error}");
    }

    #[test]
    fn reasons_and_shipments_keep_their_limits() {
        assert!(ReturnReason::try_from("x".repeat(RETURN_REASON_CHARS_MAX)).is_ok());
        assert!(ReturnReason::try_from("x".repeat(RETURN_REASON_CHARS_MAX + 1)).is_err());
        let shipment = |carrier: &str| {
            Shipment::try_from(ShipmentForm {
                carrier: carrier.into(),
                tracking_number: "1Z999".into(),
            })
        };
        assert!(shipment("CJ").is_ok());
        assert!(shipment(" ").is_err());
        assert!(shipment(&"c".repeat(SHIPMENT_FIELD_CHARS_MAX + 1)).is_err());
    }
}
