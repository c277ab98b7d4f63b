//! Request limits: a per-IP token bucket (the server applies it to its auth endpoints) and a
//! per-account count of failed logins (the engine applies it in every login, see
//! `Engine::begin_login`). Both live in memory with a bounded number of entries: they protect
//! the shop, so they must not become the way to exhaust it.
//!
//! When a table is full of live entries, a new key passes untracked (and a warning is logged)
//! rather than being refused: refusing would let whoever fills the table lock everyone else
//! out. Filling it is expensive anyway: every tracked login failure costs the caller one
//! password hash, which the server runs on a bounded pool.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Most IP addresses (IPv6: /64 networks) tracked by an [`IpBudget`] at once.
pub const IP_BUDGET_ADDRESSES_MAX: usize = 100_000;
/// Failed logins of one account within [`LOGIN_FAILURE_WINDOW_MS`] before it is refused.
pub const LOGIN_FAILURES_MAX: usize = 10;
/// The window in which failed logins count, in ms: 15 minutes.
pub const LOGIN_FAILURE_WINDOW_MS: u64 = 15 * 60 * 1000;
/// Most accounts with recent failures tracked by a `LoginThrottle` at once.
pub const LOGIN_THROTTLE_ACCOUNTS_MAX: usize = 100_000;
/// The IP budget is a number of requests per this period.
const IP_BUDGET_PERIOD_MS: u64 = 60 * 1000;
/// How often the tables drop entries that no longer limit anyone.
const IDLE_SWEEP_INTERVAL_MS: u64 = 60 * 1000;
/// An IPv6 host usually owns a whole /64: counting its addresses one by one would give it 2^64
/// budgets.
const IPV6_NETWORK_PREFIX_BITS: u32 = 64;
const MS_PER_S: u64 = 1000;

/// How long to wait before asking again, for the `Retry-After` header. At least 1 second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    /// Whole seconds, rounded up.
    pub seconds: u64,
}

impl RetryAfter {
    fn after_ms(wait_ms: u64) -> Self {
        Self {
            seconds: wait_ms.div_ceil(MS_PER_S).max(1),
        }
    }
}

/// Per-IP request budget for the auth endpoints: a token bucket holding `per_minute` requests
/// that refills continuously at `per_minute` per minute. `per_minute == 0` turns it off.
pub struct IpBudget {
    per_minute: u32,
    table: Mutex<Table<IpAddr, Bucket>>,
}

/// Credit is counted in units of 1/`IP_BUDGET_PERIOD_MS` request, so refilling at `per_minute`
/// requests per period adds exactly `per_minute` units per millisecond: integer arithmetic,
/// no rounding drift.
#[derive(Debug)]
struct Bucket {
    credit: u64,
    updated_ms: u64,
}

const REQUEST_COST: u64 = IP_BUDGET_PERIOD_MS;

impl IpBudget {
    /// A budget of `per_minute` requests per address (0: no limit).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            table: Mutex::new(Table::new("ip_budget", IP_BUDGET_ADDRESSES_MAX)),
        }
    }

    /// Spends one request of `ip`'s budget, or answers how long until one is there again.
    pub fn check(&self, ip: IpAddr, now_ms: u64) -> Result<(), RetryAfter> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let rate = u64::from(self.per_minute);
        let capacity = rate * REQUEST_COST;
        let refill = |bucket: &mut Bucket| {
            // Capped at one period first: a full period refills any bucket, and the product
            // cannot overflow.
            let elapsed_ms = now_ms
                .saturating_sub(bucket.updated_ms)
                .min(IP_BUDGET_PERIOD_MS);
            bucket.credit = (bucket.credit + elapsed_ms * rate).min(capacity);
            bucket.updated_ms = bucket.updated_ms.max(now_ms);
        };

        let mut table = lock(&self.table);
        // A full bucket is the same as no bucket: dropping it forgets nothing.
        table.sweep_if_due(now_ms, |bucket| {
            refill(bucket);
            bucket.credit < capacity
        });
        let Some(bucket) = table.entry(ip_key(ip), || Bucket {
            credit: capacity,
            updated_ms: now_ms,
        }) else {
            return Ok(());
        };
        refill(bucket);
        if bucket.credit >= REQUEST_COST {
            bucket.credit -= REQUEST_COST;
            Ok(())
        } else {
            let missing = REQUEST_COST - bucket.credit;
            Err(RetryAfter::after_ms(missing.div_ceil(rate)))
        }
    }
}

/// The key an address is counted under: IPv4 (also IPv4-mapped IPv6) as is, IPv6 by network.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let network_mask = u128::MAX << (128 - IPV6_NETWORK_PREFIX_BITS);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & network_mask))
        }
    }
}

/// Failed logins per account key (the email's blind index, computed for unknown emails too, so
/// a refusal says nothing about whether the account exists). After [`LOGIN_FAILURES_MAX`]
/// failures within [`LOGIN_FAILURE_WINDOW_MS`] the account is refused until the oldest of them
/// leaves the window.
pub struct LoginThrottle {
    table: Mutex<Table<[u8; 32], Failures>>,
}

/// Times of the most recent failures, oldest first, at most [`LOGIN_FAILURES_MAX`].
#[derive(Debug)]
struct Failures {
    at_ms: VecDeque<u64>,
}

impl Failures {
    fn forget_expired(&mut self, now_ms: u64) {
        while self
            .at_ms
            .front()
            .is_some_and(|&at| at.saturating_add(LOGIN_FAILURE_WINDOW_MS) <= now_ms)
        {
            self.at_ms.pop_front();
        }
    }
}

impl LoginThrottle {
    /// An empty throttle: no account has failed yet.
    pub fn new() -> Self {
        Self {
            table: Mutex::new(Table::new("login_throttle", LOGIN_THROTTLE_ACCOUNTS_MAX)),
        }
    }

    /// Whether the account may try now, without counting a try (the tests' view of the
    /// table; a login uses `begin_attempt`).
    #[cfg(test)]
    pub fn check(&self, key: &[u8; 32], now_ms: u64) -> Result<(), RetryAfter> {
        let mut table = lock(&self.table);
        let Some(failures) = table.map.get_mut(key) else {
            return Ok(());
        };
        failures.forget_expired(now_ms);
        match failures.at_ms.front() {
            Some(&oldest) if failures.at_ms.len() >= LOGIN_FAILURES_MAX => Err(
                RetryAfter::after_ms(oldest + LOGIN_FAILURE_WINDOW_MS - now_ms),
            ),
            Some(_) => Ok(()),
            None => {
                table.map.remove(key);
                Ok(())
            }
        }
    }

    /// Counts one failed login of the account.
    #[cfg(test)]
    pub fn record_failure(&self, key: &[u8; 32], now_ms: u64) {
        Self::record_in(&mut lock(&self.table), key, now_ms);
    }

    /// Checks the account and counts this attempt as a failure in ONE step, so parallel guesses
    /// cannot all pass the check before any of them is counted. A success then `clear`s the
    /// account; an attempt that never ran (the password pool was busy) is `forget_attempt`ed.
    pub fn begin_attempt(&self, key: &[u8; 32], now_ms: u64) -> Result<(), RetryAfter> {
        let mut table = lock(&self.table);
        if let Some(failures) = table.map.get_mut(key) {
            failures.forget_expired(now_ms);
            if failures.at_ms.len() >= LOGIN_FAILURES_MAX {
                let oldest = failures.at_ms.front().copied().unwrap_or(now_ms);
                return Err(RetryAfter::after_ms(
                    (oldest + LOGIN_FAILURE_WINDOW_MS).saturating_sub(now_ms),
                ));
            }
        }
        Self::record_in(&mut table, key, now_ms);
        Ok(())
    }

    /// Takes back an attempt `begin_attempt` counted at `at_ms` that never ran.
    pub fn forget_attempt(&self, key: &[u8; 32], at_ms: u64) {
        let mut table = lock(&self.table);
        if let Some(failures) = table.map.get_mut(key)
            && let Some(at) = failures.at_ms.iter().rposition(|&t| t == at_ms)
        {
            failures.at_ms.remove(at);
        }
    }

    fn record_in(table: &mut Table<[u8; 32], Failures>, key: &[u8; 32], now_ms: u64) {
        table.sweep_if_due(now_ms, |failures| {
            failures.forget_expired(now_ms);
            !failures.at_ms.is_empty()
        });
        let Some(failures) = table.entry(*key, || Failures {
            at_ms: VecDeque::with_capacity(LOGIN_FAILURES_MAX),
        }) else {
            return;
        };
        failures.forget_expired(now_ms);
        // Only the newest failures matter: the refusal lasts until the oldest counted one expires.
        if failures.at_ms.len() == LOGIN_FAILURES_MAX {
            failures.at_ms.pop_front();
        }
        failures.at_ms.push_back(now_ms);
        assert!(failures.at_ms.len() <= LOGIN_FAILURES_MAX);
    }

    /// Forgets the failures of an account (after a successful login).
    pub fn clear(&self, key: &[u8; 32]) {
        lock(&self.table).map.remove(key);
    }
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new()
    }
}

/// A map with a bound on its entries and a periodic sweep of those that no longer matter.
struct Table<K, V> {
    /// Names the table in log lines.
    name: &'static str,
    map: HashMap<K, V>,
    entries_max: usize,
    last_sweep_ms: u64,
    /// Whether a new key was let through untracked since the last sweep: warn once per sweep.
    warned_full: bool,
}

impl<K: std::hash::Hash + Eq, V> Table<K, V> {
    fn new(name: &'static str, entries_max: usize) -> Self {
        Self {
            name,
            map: HashMap::new(),
            entries_max,
            last_sweep_ms: 0,
            warned_full: false,
        }
    }

    /// Keeps only the entries for which `keep` says true, at most once per sweep interval: a
    /// sweep walks the whole table, so it must not run on every request.
    fn sweep_if_due(&mut self, now_ms: u64, mut keep: impl FnMut(&mut V) -> bool) {
        if now_ms.saturating_sub(self.last_sweep_ms) < IDLE_SWEEP_INTERVAL_MS {
            return;
        }
        self.last_sweep_ms = now_ms;
        self.warned_full = false;
        let before = self.map.len();
        self.map.retain(|_, value| keep(value));
        tracing::trace!(
            table = self.name,
            before,
            after = self.map.len(),
            "swept idle limit entries"
        );
    }

    /// The entry of `key`, created with `new` if absent, or `None` if it is absent and the table
    /// is full.
    fn entry(&mut self, key: K, new: impl FnOnce() -> V) -> Option<&mut V> {
        if self.map.len() >= self.entries_max && !self.map.contains_key(&key) {
            if !self.warned_full {
                self.warned_full = true;
                tracing::warn!(
                    table = self.name,
                    entries_max = self.entries_max,
                    "a limit table is full of live entries; new keys pass untracked"
                );
            }
            return None;
        }
        let entry = self.map.entry(key).or_insert_with(new);
        Some(entry)
    }
}

/// The tables stay consistent even if a holder panicked: every update is a few plain
/// assignments that cannot panic halfway through.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const T0_MS: u64 = 1_750_000_000_000;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn ip_budget_allows_per_minute_then_refuses_then_refills() {
        let budget = IpBudget::new(3);
        for _ in 0..3 {
            assert_eq!(budget.check(ip(1), T0_MS), Ok(()));
        }
        // One request comes back every 60 s / 3 = 20 s.
        assert_eq!(budget.check(ip(1), T0_MS), Err(RetryAfter { seconds: 20 }));
        assert_eq!(
            budget.check(ip(1), T0_MS + 19_500),
            Err(RetryAfter { seconds: 1 })
        );
        // Another address has its own budget.
        assert_eq!(budget.check(ip(2), T0_MS), Ok(()));

        assert_eq!(budget.check(ip(1), T0_MS + 20_000), Ok(()));
        assert!(budget.check(ip(1), T0_MS + 20_000).is_err());

        // A full minute idle refills the bucket, but never beyond per_minute.
        let later = T0_MS + 10 * 60_000;
        for _ in 0..3 {
            assert_eq!(budget.check(ip(1), later), Ok(()));
        }
        assert!(budget.check(ip(1), later).is_err());
    }

    #[test]
    fn ip_budget_retry_after_is_at_least_one_second() {
        // 60 000 a minute: one request back every millisecond.
        let budget = IpBudget::new(60_000);
        for _ in 0..60_000 {
            assert!(budget.check(ip(1), T0_MS).is_ok());
        }
        assert_eq!(budget.check(ip(1), T0_MS), Err(RetryAfter { seconds: 1 }));
    }

    #[test]
    fn ip_budget_zero_is_off() {
        let budget = IpBudget::new(0);
        for _ in 0..10_000 {
            assert_eq!(budget.check(ip(1), T0_MS), Ok(()));
        }
    }

    #[test]
    fn ip_budget_survives_a_clock_going_backwards() {
        let budget = IpBudget::new(1);
        assert!(budget.check(ip(1), T0_MS).is_ok());
        assert!(budget.check(ip(1), T0_MS - 30_000).is_err());
        assert!(budget.check(ip(1), T0_MS + 60_000).is_ok());
    }

    #[test]
    fn ipv6_addresses_count_per_64_network() {
        let budget = IpBudget::new(1);
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ipv6");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ipv6");
        let other_network: IpAddr = "2001:db8:1:3::1".parse().expect("ipv6");
        assert!(budget.check(a, T0_MS).is_ok());
        assert!(budget.check(b, T0_MS).is_err());
        assert!(budget.check(other_network, T0_MS).is_ok());

        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("mapped");
        assert!(budget.check(ip(7), T0_MS).is_ok());
        assert!(budget.check(mapped, T0_MS).is_err());
    }

    #[test]
    fn idle_buckets_are_swept_and_a_full_table_fails_open() {
        let budget = IpBudget::new(1);
        {
            let mut table = lock(&budget.table);
            table.entries_max = 2;
            table.last_sweep_ms = T0_MS;
        }
        assert!(budget.check(ip(1), T0_MS).is_ok());
        assert!(budget.check(ip(2), T0_MS).is_ok());
        // Full of live entries: a third address passes untracked, every time.
        assert!(budget.check(ip(3), T0_MS).is_ok());
        assert!(budget.check(ip(3), T0_MS).is_ok());
        // The tracked ones stay limited.
        assert!(budget.check(ip(1), T0_MS).is_err());

        // After a minute the buckets are full again, the sweep drops them, and the table has room.
        let later = T0_MS + IDLE_SWEEP_INTERVAL_MS;
        assert!(budget.check(ip(3), later).is_ok());
        assert_eq!(lock(&budget.table).map.len(), 1);
        assert!(budget.check(ip(3), later).is_err());
    }

    #[test]
    fn login_throttle_refuses_after_ten_failures_in_the_window() {
        let throttle = LoginThrottle::new();
        let key = [1; 32];
        for i in 0..LOGIN_FAILURES_MAX as u64 {
            assert_eq!(throttle.check(&key, T0_MS + i * 1000), Ok(()));
            throttle.record_failure(&key, T0_MS + i * 1000);
        }
        let now = T0_MS + 10_000;
        assert_eq!(
            throttle.check(&key, now),
            Err(RetryAfter {
                seconds: (LOGIN_FAILURE_WINDOW_MS - 10_000) / 1000
            })
        );
        // Other accounts are unaffected.
        assert_eq!(throttle.check(&[2; 32], now), Ok(()));

        // The oldest failure (at T0) leaves the window: one more try.
        let window_end = T0_MS + LOGIN_FAILURE_WINDOW_MS;
        assert!(throttle.check(&key, window_end - 1).is_err());
        assert_eq!(throttle.check(&key, window_end), Ok(()));
        throttle.record_failure(&key, window_end);
        assert_eq!(
            throttle.check(&key, window_end),
            Err(RetryAfter { seconds: 1 })
        );
    }

    #[test]
    fn login_throttle_forgets_failures_outside_the_window() {
        let throttle = LoginThrottle::new();
        let key = [3; 32];
        for _ in 0..LOGIN_FAILURES_MAX - 1 {
            throttle.record_failure(&key, T0_MS);
        }
        // Nine old failures and one new one are not ten within a window.
        let later = T0_MS + LOGIN_FAILURE_WINDOW_MS;
        throttle.record_failure(&key, later);
        assert_eq!(throttle.check(&key, later), Ok(()));
    }

    #[test]
    fn login_throttle_clear_resets() {
        let throttle = LoginThrottle::new();
        let key = [4; 32];
        for _ in 0..LOGIN_FAILURES_MAX {
            throttle.record_failure(&key, T0_MS);
        }
        assert!(throttle.check(&key, T0_MS).is_err());
        throttle.clear(&key);
        assert_eq!(throttle.check(&key, T0_MS), Ok(()));
        for _ in 0..LOGIN_FAILURES_MAX - 1 {
            throttle.record_failure(&key, T0_MS);
        }
        assert_eq!(throttle.check(&key, T0_MS), Ok(()));
    }

    #[test]
    fn login_throttle_table_is_bounded() {
        let throttle = LoginThrottle::new();
        {
            let mut table = lock(&throttle.table);
            table.entries_max = 2;
            table.last_sweep_ms = T0_MS;
        }
        for key in [[1; 32], [2; 32], [3; 32]] {
            throttle.record_failure(&key, T0_MS);
        }
        assert_eq!(lock(&throttle.table).map.len(), 2);
        // Once their failures expire the sweep makes room again.
        let later = T0_MS + LOGIN_FAILURE_WINDOW_MS;
        throttle.record_failure(&[3; 32], later);
        let table = lock(&throttle.table);
        assert_eq!(table.map.len(), 1);
        assert!(table.map.contains_key(&[3; 32]));
    }
}

#[cfg(test)]
mod begin_attempt_tests {
    use super::*;

    #[test]
    fn attempts_count_before_they_finish() {
        let throttle = LoginThrottle::new();
        let key = [3u8; 32];
        // Eleven guesses in flight at once: the check and the count are one step.
        let passed = (0..11)
            .filter(|_| throttle.begin_attempt(&key, 1_000).is_ok())
            .count();
        assert_eq!(passed, LOGIN_FAILURES_MAX);
        throttle.forget_attempt(&key, 1_000);
        assert!(
            throttle.begin_attempt(&key, 1_000).is_ok(),
            "a forgotten attempt frees a place"
        );
        throttle.clear(&key);
        assert!(throttle.begin_attempt(&key, 1_001).is_ok());
    }
}
