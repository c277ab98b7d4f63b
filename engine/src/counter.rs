//! The per-SKU counter: `available`, `reserved` and `sold` packed into ONE `AtomicU64`, 21 bits
//! each. Every move of units between the three is a single compare-and-swap, so
//!
//! - a take can never drive `available` below zero (the CAS fails instead), and
//! - any reader sees a triple that existed at one instant: `available + reserved + sold` is
//!   exactly the SKU's stock at every sample, never a torn mix of two moments.
//!
//! The price is a bound: a SKU holds at most [`SKU_UNITS_MAX`] units over its lifetime.

use std::sync::atomic::{AtomicU64, Ordering};

const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;

/// Most units one SKU can ever hold (available + reserved + sold): 2,097,151.
pub const SKU_UNITS_MAX: u32 = FIELD_MASK as u32;

/// One consistent reading of a SKU counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StockCounts {
    pub available: u32,
    pub reserved: u32,
    pub sold: u32,
}

impl StockCounts {
    pub fn total(self) -> u32 {
        self.available + self.reserved + self.sold
    }

    fn pack(self) -> u64 {
        debug_assert!(self.total() <= SKU_UNITS_MAX);
        u64::from(self.available)
            | (u64::from(self.reserved) << FIELD_BITS)
            | (u64::from(self.sold) << (2 * FIELD_BITS))
    }

    fn unpack(word: u64) -> Self {
        Self {
            available: (word & FIELD_MASK) as u32,
            reserved: ((word >> FIELD_BITS) & FIELD_MASK) as u32,
            sold: ((word >> (2 * FIELD_BITS)) & FIELD_MASK) as u32,
        }
    }
}

/// A move the counter refused; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterRefusal {
    /// Not enough units in the field the move takes from.
    Short(StockCounts),
    /// The move would push the SKU past [`SKU_UNITS_MAX`].
    Full(StockCounts),
}

#[derive(Debug, Default)]
pub struct SkuCounter {
    word: AtomicU64,
}

impl SkuCounter {
    pub fn new(counts: StockCounts) -> Self {
        assert!(
            counts.total() <= SKU_UNITS_MAX,
            "SKU counter over its bound"
        );
        Self {
            word: AtomicU64::new(counts.pack()),
        }
    }

    pub fn load(&self) -> StockCounts {
        StockCounts::unpack(self.word.load(Ordering::Acquire))
    }

    /// available → reserved. The hot path of a drop: one CAS loop, no lock.
    pub fn take(&self, quantity: u32) -> Result<StockCounts, CounterRefusal> {
        self.update(|c| {
            let available = c.available.checked_sub(quantity)?;
            Some(StockCounts {
                available,
                reserved: c.reserved + quantity,
                sold: c.sold,
            })
        })
    }

    /// reserved → available: a release, an expiry, or a failed attempt undoing its own take.
    pub fn give_back(&self, quantity: u32) -> Result<StockCounts, CounterRefusal> {
        self.update(|c| {
            Some(StockCounts {
                available: c.available + quantity,
                reserved: c.reserved.checked_sub(quantity)?,
                sold: c.sold,
            })
        })
    }

    /// reserved → sold.
    pub fn sell(&self, quantity: u32) -> Result<StockCounts, CounterRefusal> {
        self.update(|c| {
            Some(StockCounts {
                available: c.available,
                reserved: c.reserved.checked_sub(quantity)?,
                sold: c.sold + quantity,
            })
        })
    }

    /// sold → available: a paid order cancelled, or a returned one; the units go back on sale.
    pub fn unsell(&self, quantity: u32) -> Result<StockCounts, CounterRefusal> {
        self.update(|c| {
            Some(StockCounts {
                available: c.available + quantity,
                reserved: c.reserved,
                sold: c.sold.checked_sub(quantity)?,
            })
        })
    }

    /// New units straight into `available`.
    pub fn restock(&self, quantity: u32) -> Result<StockCounts, CounterRefusal> {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            let counts = StockCounts::unpack(current);
            if u64::from(counts.total()) + u64::from(quantity) > u64::from(SKU_UNITS_MAX) {
                return Err(CounterRefusal::Full(counts));
            }
            let next = StockCounts {
                available: counts.available + quantity,
                ..counts
            };
            match self.word.compare_exchange_weak(
                current,
                next.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(next),
                Err(actual) => current = actual,
            }
        }
    }

    /// Applies `step` with a CAS loop; `step` answers `None` when a field would go negative.
    /// Moves between fields keep the total, so they cannot exceed the bound.
    fn update(
        &self,
        step: impl Fn(StockCounts) -> Option<StockCounts>,
    ) -> Result<StockCounts, CounterRefusal> {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            let counts = StockCounts::unpack(current);
            let Some(next) = step(counts) else {
                return Err(CounterRefusal::Short(counts));
            };
            debug_assert_eq!(next.total(), counts.total());
            match self.word.compare_exchange_weak(
                current,
                next.pack(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(next),
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_take_never_goes_below_zero() {
        let counter = SkuCounter::new(StockCounts {
            available: 2,
            ..Default::default()
        });
        assert!(counter.take(2).is_ok());
        assert!(matches!(counter.take(1), Err(CounterRefusal::Short(_))));
        assert_eq!(
            counter.load(),
            StockCounts {
                available: 0,
                reserved: 2,
                sold: 0
            }
        );
    }

    #[test]
    fn fields_do_not_bleed_into_each_other_at_the_bound() {
        let counter = SkuCounter::new(StockCounts {
            available: SKU_UNITS_MAX,
            ..Default::default()
        });
        counter.take(SKU_UNITS_MAX).unwrap();
        counter.sell(SKU_UNITS_MAX).unwrap();
        assert_eq!(
            counter.load(),
            StockCounts {
                available: 0,
                reserved: 0,
                sold: SKU_UNITS_MAX
            }
        );
        assert!(matches!(counter.restock(1), Err(CounterRefusal::Full(_))));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Take(u32),
        GiveBack(u32),
        Sell(u32),
        Restock(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..6).prop_map(Op::Take),
            (0u32..6).prop_map(Op::GiveBack),
            (0u32..6).prop_map(Op::Sell),
            (0u32..6).prop_map(Op::Restock),
        ]
    }

    proptest! {
        /// The counter behaves exactly like three plain integers that may not go negative,
        /// and a refused move changes nothing.
        #[test]
        fn counter_matches_a_plain_model(start in 0u32..20, ops in proptest::collection::vec(op(), 0..200)) {
            let counter = SkuCounter::new(StockCounts { available: start, ..Default::default() });
            let mut model = StockCounts { available: start, ..Default::default() };
            let mut total = start;
            for op in ops {
                let (result, expected) = match op {
                    Op::Take(q) => (counter.take(q), model.available.checked_sub(q).map(|a| StockCounts { available: a, reserved: model.reserved + q, ..model })),
                    Op::GiveBack(q) => (counter.give_back(q), model.reserved.checked_sub(q).map(|r| StockCounts { available: model.available + q, reserved: r, ..model })),
                    Op::Sell(q) => (counter.sell(q), model.reserved.checked_sub(q).map(|r| StockCounts { reserved: r, sold: model.sold + q, ..model })),
                    Op::Restock(q) => { total += q; (counter.restock(q), Some(StockCounts { available: model.available + q, ..model })) }
                };
                match expected {
                    Some(next) => { prop_assert_eq!(result, Ok(next)); model = next; }
                    None => prop_assert!(result.is_err()),
                }
                prop_assert_eq!(counter.load(), model);
                prop_assert_eq!(model.total(), total);
            }
        }
    }
}
