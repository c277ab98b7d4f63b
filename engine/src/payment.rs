//! The payment port: what the order saga asks of a payment provider, and the built-in simulator
//! that answers like one (API.md, "Payment simulator cards").
//!
//! The saga calls [`PaymentProvider::charge`] only once its `PaymentRequested` record is durable,
//! with the idempotency key `ord_<n>/<attempt>`. After a crash it does not have the card any more
//! (a card is never logged), so it asks [`PaymentProvider::status`] with the same key instead. A
//! provider therefore has to remember every key it answered, across its own restarts too, and
//! must never charge twice for one key.

mod card;
mod charge_log;
mod simulator;

pub use card::{CARD_NUMBER_DIGITS_MAX, CARD_NUMBER_DIGITS_MIN, Card, InvalidCard};
pub use simulator::PaymentSimulator;

/// Longest idempotency key, in bytes. `ord_<u64>/<u32>` needs at most 35; real providers cap
/// theirs at a few hundred. The bound keeps every record of the simulator's log short.
pub const CHARGE_KEY_BYTES_MAX: usize = 128;

/// Whether `key` can be an idempotency key: 1 to [`CHARGE_KEY_BYTES_MAX`] bytes of printable
/// ASCII without spaces, so it fits a log record as one field and shows as is in a log line.
pub fn charge_key_is_well_formed(key: &str) -> bool {
    (1..=CHARGE_KEY_BYTES_MAX).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `currency` looks like an ISO 4217 code: three ASCII capital letters.
fn currency_is_well_formed(currency: &str) -> bool {
    currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())
}

/// The provider's answer to a charge it processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The card was charged.
    Approved,
    /// The card was declined; nothing was charged.
    Declined,
    /// The charge is over the card's limit; nothing was charged.
    LimitExceeded,
}

/// The provider did not answer in time; whether it charged is unknown until asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the payment provider did not answer in time")]
pub struct ProviderTimeout;

/// What the provider's own record says about an idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeStatus {
    /// The key was charged and the charge stands.
    Charged,
    /// Nothing was charged under the key, or the provider does not know the key.
    NotCharged,
    /// The key was charged and the charge has been refunded.
    Refunded,
}

/// A payment provider as the order saga uses it: charge once per idempotency key, say what
/// happened to a key, refund. `PaymentSimulator` is the built-in one.
pub trait PaymentProvider: Send + Sync + 'static {
    /// Charges `amount` (minor units) once per `key`: a second call with the same key answers the
    /// first outcome and never charges again.
    ///
    /// `key` must be well formed (`charge_key_is_well_formed`), `currency` an ISO 4217 code and
    /// `amount` above zero; anything else is a bug of the caller (see the implementation for
    /// what it answers). The call may block on I/O or the network: call it from a blocking context.
    fn charge(
        &self,
        key: &str,
        amount: u64,
        currency: &str,
        card: &Card,
    ) -> Result<ChargeOutcome, ProviderTimeout>;

    /// What happened to `key` ("asking it again"); NotCharged for an unknown key.
    fn status(&self, key: &str) -> ChargeStatus;

    /// Refunds the charge of `key` once; refunding twice, or an uncharged key, is a no-op that
    /// answers the current status.
    fn refund(&self, key: &str) -> ChargeStatus;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_keys_are_bounded_printable_ascii() {
        assert!(charge_key_is_well_formed("ord_1/1"));
        assert!(charge_key_is_well_formed(&format!(
            "ord_{}/{}",
            u64::MAX,
            u32::MAX
        )));
        assert!(charge_key_is_well_formed(&"k".repeat(CHARGE_KEY_BYTES_MAX)));
        assert!(!charge_key_is_well_formed(""));
        assert!(!charge_key_is_well_formed(
            &"k".repeat(CHARGE_KEY_BYTES_MAX + 1)
        ));
        assert!(!charge_key_is_well_formed("ord_1 /1"));
        assert!(!charge_key_is_well_formed("ord_1/1\n"));
        assert!(!charge_key_is_well_formed("ord_é/1"));
    }

    #[test]
    fn currencies_are_three_capital_letters() {
        assert!(currency_is_well_formed("KRW"));
        assert!(!currency_is_well_formed("krw"));
        assert!(!currency_is_well_formed("KR"));
        assert!(!currency_is_well_formed("KRWX"));
        assert!(!currency_is_well_formed("K W"));
    }
}
