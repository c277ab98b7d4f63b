//! The per-SKU counter: `available`, `reserved` and `sold` packed into ONE 128-bit atomic word,
//! 42 bits each. Every move of units between the three is a single compare-and-swap
//! (`cmpxchg16b` on x86-64, through `portable-atomic`), so
//!
//! - a take can never drive `available` below zero (the CAS fails instead), and
//! - any reader sees a triple that existed at one instant: `available + reserved + sold` is
//!   exactly the SKU's stock at every sample, never a torn mix of two moments.
//!
//! The bound that remains is no business limit: a SKU holds at most [`SKU_UNITS_MAX`] units
//! (over 4 × 10^12) over its lifetime, restocks included.

use portable_atomic::{AtomicU128, Ordering};

const FIELD_BITS: u32 = 42;
const FIELD_MASK: u128 = (1 << FIELD_BITS) - 1;
// Three fields share one 128-bit word, and the floor of 2^40 units holds.
const _: () = assert!(3 * FIELD_BITS <= u128::BITS && FIELD_BITS >= 40);

/// Most units one SKU can ever hold (available + reserved + sold): 2^42 − 1, 4,398,046,511,103.
pub const SKU_UNITS_MAX: u64 = FIELD_MASK as u64;

/// One consistent reading of a SKU counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StockCounts {
    /// Units on sale now.
    pub available: u64,
    /// Units held by reservations, neither on sale nor sold yet.
    pub reserved: u64,
    /// Units sold for good.
    pub sold: u64,
}

impl StockCounts {
    /// All units of the SKU: `available + reserved + sold`.
    pub fn total(self) -> u64 {
        self.available + self.reserved + self.sold
    }

    fn pack(self) -> u128 {
        // A field past its bits would spill into the next one: counts that lie.
        assert!(
            self.total() <= SKU_UNITS_MAX,
            "{self:?} is past the bound of a SKU"
        );
        u128::from(self.available)
            | (u128::from(self.reserved) << FIELD_BITS)
            | (u128::from(self.sold) << (2 * FIELD_BITS))
    }

    fn unpack(word: u128) -> Self {
        Self {
            available: (word & FIELD_MASK) as u64,
            reserved: ((word >> FIELD_BITS) & FIELD_MASK) as u64,
            sold: ((word >> (2 * FIELD_BITS)) & FIELD_MASK) as u64,
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

/// The stock of one SKU as one atomic word (see the module docs): every move of units is a
/// single compare-and-swap, with no lock.
#[derive(Debug, Default)]
pub struct SkuCounter {
    word: AtomicU128,
}

impl SkuCounter {
    /// A counter starting at `counts`. Panics if their total is over [`SKU_UNITS_MAX`].
    pub fn new(counts: StockCounts) -> Self {
        assert!(
            counts.total() <= SKU_UNITS_MAX,
            "SKU counter over its bound"
        );
        Self {
            word: AtomicU128::new(counts.pack()),
        }
    }

    /// The counts at this instant, all three from one moment.
    pub fn load(&self) -> StockCounts {
        StockCounts::unpack(self.word.load(Ordering::Acquire))
    }

    /// available → reserved. The hot path of a drop: one CAS loop, no lock.
    pub fn take(&self, quantity: u32) -> Result<StockCounts, CounterRefusal> {
        let quantity = u64::from(quantity);
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
        let quantity = u64::from(quantity);
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
        let quantity = u64::from(quantity);
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
        let quantity = u64::from(quantity);
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
        self.swap_in(|counts| {
            if counts.total() + u64::from(quantity) > SKU_UNITS_MAX {
                return Err(CounterRefusal::Full(counts));
            }
            Ok(StockCounts {
                available: counts.available + u64::from(quantity),
                ..counts
            })
        })
    }

    /// Applies `step` with a CAS loop; `step` answers `None` when a field would go negative.
    /// Moves between fields keep the total, so they cannot exceed the bound.
    fn update(
        &self,
        step: impl Fn(StockCounts) -> Option<StockCounts>,
    ) -> Result<StockCounts, CounterRefusal> {
        self.swap_in(|counts| {
            let next = step(counts).ok_or(CounterRefusal::Short(counts))?;
            // Conservation: a move between fields never makes or loses a unit.
            assert_eq!(
                next.total(),
                counts.total(),
                "a counter move changed the total"
            );
            Ok(next)
        })
    }

    /// The compare-and-swap loop: `next` answers the counts to store in place of the ones read,
    /// or a refusal; on a lost race it runs again on the newer counts.
    #[inline]
    fn swap_in(
        &self,
        next: impl Fn(StockCounts) -> Result<StockCounts, CounterRefusal>,
    ) -> Result<StockCounts, CounterRefusal> {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            let next = next(StockCounts::unpack(current))?;
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
        // Past 2^40 units sold, and every field at its edge.
        let counter = SkuCounter::new(StockCounts {
            available: 3,
            reserved: 2,
            sold: SKU_UNITS_MAX - 5,
        });
        const { assert!(SKU_UNITS_MAX - 5 > 1 << 40) };
        counter.take(3).unwrap();
        counter.sell(5).unwrap();
        assert_eq!(
            counter.load(),
            StockCounts {
                available: 0,
                reserved: 0,
                sold: SKU_UNITS_MAX
            }
        );
        assert!(matches!(counter.restock(1), Err(CounterRefusal::Full(_))));
        counter.unsell(u32::MAX).unwrap();
        assert_eq!(counter.load().available, u64::from(u32::MAX));
        assert_eq!(counter.load().total(), SKU_UNITS_MAX);
        let full = SkuCounter::new(StockCounts {
            available: SKU_UNITS_MAX,
            ..Default::default()
        });
        full.take(u32::MAX).unwrap();
        assert_eq!(
            full.load(),
            StockCounts {
                available: SKU_UNITS_MAX - u64::from(u32::MAX),
                reserved: u64::from(u32::MAX),
                sold: 0
            }
        );
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
        fn counter_matches_a_plain_model(start in 0u64..20, ops in proptest::collection::vec(op(), 0..200)) {
            let counter = SkuCounter::new(StockCounts { available: start, ..Default::default() });
            let mut model = StockCounts { available: start, ..Default::default() };
            let mut total = start;
            for op in ops {
                let (result, expected) = match op {
                    Op::Take(q) => (counter.take(q), model.available.checked_sub(q.into()).map(|a| StockCounts { available: a, reserved: model.reserved + u64::from(q), ..model })),
                    Op::GiveBack(q) => (counter.give_back(q), model.reserved.checked_sub(q.into()).map(|r| StockCounts { available: model.available + u64::from(q), reserved: r, ..model })),
                    Op::Sell(q) => (counter.sell(q), model.reserved.checked_sub(q.into()).map(|r| StockCounts { reserved: r, sold: model.sold + u64::from(q), ..model })),
                    Op::Restock(q) => { total += u64::from(q); (counter.restock(q), Some(StockCounts { available: model.available + u64::from(q), ..model })) }
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
