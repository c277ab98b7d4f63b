//! Fixtures for tests of the engine and of what is built on it (feature `test-support`): one
//! address, one way to make a key, a request, a shipment, a reason. Defined here once, so no
//! test file spells them again.

use crate::ids::ProductId;
use crate::orders::{
    AddressForm, IdempotencyKey, LineRequest, OrderRequest, ReturnReason, Shipment, ShipmentForm,
    ShippingAddress,
};

/// The address every test order goes to, as a form (for wire tests).
pub fn address_form() -> AddressForm {
    AddressForm {
        recipient: "Kim Minji".into(),
        phone: "010-1234-5678".into(),
        line1: "1 Main St".into(),
        line2: None,
        city: "Seoul".into(),
        postal_code: "04524".into(),
        country: "KR".into(),
    }
}

/// The address every test order goes to.
pub fn address() -> ShippingAddress {
    address_to("Kim Minji")
}

/// The test address with another recipient: the same lines to another address are another
/// request.
pub fn address_to(recipient: &str) -> ShippingAddress {
    let form = AddressForm {
        recipient: recipient.into(),
        ..address_form()
    };
    ShippingAddress::try_from(form).expect("the test address is valid")
}

/// An Idempotency-Key from a test's text.
pub fn key_of(text: &str) -> IdempotencyKey {
    text.parse().expect("a test key is 1 to 128 bytes")
}

/// One line of `quantity` units of `product`.
pub fn line(product: ProductId, quantity: u32) -> LineRequest {
    LineRequest { product, quantity }
}

/// A request for `lines` to the test address.
pub fn request(lines: &[LineRequest]) -> OrderRequest {
    OrderRequest::new(lines.to_vec(), address())
}

/// A request for `lines` to the test address with another recipient.
pub fn request_to(lines: &[LineRequest], recipient: &str) -> OrderRequest {
    OrderRequest::new(lines.to_vec(), address_to(recipient))
}

/// A shipment with this carrier and tracking number.
pub fn shipment(carrier: &str, tracking_number: &str) -> Shipment {
    Shipment::try_from(ShipmentForm {
        carrier: carrier.into(),
        tracking_number: tracking_number.into(),
    })
    .expect("a test shipment is valid")
}

/// A return's reason.
pub fn reason(text: &str) -> ReturnReason {
    ReturnReason::try_from(text.to_string()).expect("a test reason is short")
}
