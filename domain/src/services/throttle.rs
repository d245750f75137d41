//! Login throttling: per account (email) and per client address, a few free
//! failures, then lock-outs that double with every further failure, up to a
//! cap. Attempts during a lock-out are refused before any password is
//! hashed, so a storm of guesses costs a map lookup each, not an argon2 run.
//!
//! The state is bounded: at most [`LoginLimits::max_tracked`] keys, failures
//! forgotten [`LoginLimits::forget_after`] after the last one, and when the
//! map is full the least valuable entries go first (forgotten, then unlocked,
//! then the locks that end soonest), so flooding it with fresh keys cannot
//! lift the lock on an account under attack before it would end anyway.

use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Thresholds of login throttling and password hashing. The defaults suit a
/// single server; configuration will set them later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures per account before the first lock-out.
    pub account_free_failures: u32,
    /// Failures per client address before the first lock-out; more generous,
    /// as offices and carrier NATs share one address.
    pub address_free_failures: u32,
    /// The first lock-out; each further failure doubles it.
    pub first_lockout: Duration,
    /// No lock-out is longer than this.
    pub max_lockout: Duration,
    /// Failures are forgotten this long after the last one.
    pub forget_after: Duration,
    /// Most accounts and addresses tracked at once.
    pub max_tracked: usize,
    /// Password hashes computed at once, on the blocking pool (never on the
    /// async workers, which serve requests and poll devices).
    pub hashing_permits: usize,
    /// Logins that may wait for a hashing permit; beyond that a login is
    /// refused as rate limited rather than queued without bound. The queue
    /// is the login latency under a storm: at some 20 to 100 ms of argon2
    /// per check (OWASP cost; more on a busy machine), 16 waiting per permit
    /// is a second or two.
    pub max_waiting_logins: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        // One hash per core: argon2 is CPU-bound, more would only queue in the OS.
        let permits = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            account_free_failures: 5,
            address_free_failures: 20,
            first_lockout: Duration::from_secs(1),
            max_lockout: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(60 * 60),
            max_tracked: 50_000,
            hashing_permits: permits,
            max_waiting_logins: 16 * permits,
        }
    }
}

/// Whose failures count together. Emails are kept as keyed hashes (SipHash
/// with a per-process random key): small, and no list of tried addresses in
/// memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Account(u64),
    Address(IpAddr),
}

impl Key {
    /// An IPv6 client controls at least a /64, so that is one address here.
    fn address(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Key::Address(ip),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Key::Address(IpAddr::V6(bits.into()))
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    /// Admitted attempts not yet settled; they count against the allowance so
    /// that concurrent guesses cannot all slip through before one fails.
    in_flight: u32,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            in_flight: 0,
            locked_until: None,
            last_failure: now,
        }
    }

    fn locked_at(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    fn forgotten_at(&self, now: Instant, forget_after: Duration) -> bool {
        self.in_flight == 0
            && self.locked_at(now).is_none()
            && now.saturating_duration_since(self.last_failure) >= forget_after
    }
}

/// How an admitted attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed,
    /// Not the caller's fault (a store failed, the server is busy): no count.
    Abandoned,
}

/// Per-account and per-address failure counts and lock-outs.
pub(crate) struct LoginThrottle {
    limits: LoginLimits,
    keys: std::hash::RandomState,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// While another attempt on the same key is being checked after the free
/// failures are used up, this is the advice to the client.
const BUSY_RETRY: Duration = Duration::from_secs(1);

impl LoginThrottle {
    pub(crate) fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            keys: std::hash::RandomState::new(),
            entries: Mutex::default(),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock()
    }

    fn keys(&self, email: &str, client: Option<IpAddr>) -> Vec<(Key, u32)> {
        let account = Key::Account(self.keys.hash_one(email.trim().to_lowercase()));
        let mut keys = vec![(account, self.limits.account_free_failures)];
        if let Some(ip) = client {
            keys.push((Key::address(ip), self.limits.address_free_failures));
        }
        keys
    }

    /// Admits an attempt or says how long to wait. The returned guard MUST be
    /// settled; dropped unsettled (the request was cancelled mid-check) it
    /// counts as a failure, so cancelling cannot launder guesses.
    pub(crate) fn admit(
        &self,
        email: &str,
        client: Option<IpAddr>,
    ) -> Result<Attempt<'_>, Duration> {
        self.admit_at(email, client, Instant::now())
    }

    fn admit_at(
        &self,
        email: &str,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<Attempt<'_>, Duration> {
        let keys = self.keys(email, client);
        let mut entries = self.entries();
        let mut wait = Duration::ZERO;
        for (key, free) in &keys {
            let Some(entry) = entries.get_mut(key) else {
                continue;
            };
            if entry.forgotten_at(now, self.limits.forget_after) {
                *entry = Entry::new(now);
            }
            if let Some(left) = entry.locked_at(now) {
                wait = wait.max(left);
                continue;
            }
            let allowance = free.saturating_sub(entry.failures).max(1);
            if entry.in_flight >= allowance {
                wait = wait.max(BUSY_RETRY);
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for (key, _) in &keys {
            if !entries.contains_key(key) && entries.len() >= self.limits.max_tracked {
                self.make_room(&mut entries, now);
            }
            entries
                .entry(*key)
                .or_insert_with(|| Entry::new(now))
                .in_flight += 1;
        }
        Ok(Attempt {
            throttle: self,
            keys,
            settled: false,
        })
    }

    /// Frees about a quarter of the map at once, so a flood of new keys
    /// costs one sweep per many insertions. Entries being checked are kept.
    fn make_room(&self, entries: &mut HashMap<Key, Entry>, now: Instant) {
        let target = self.limits.max_tracked - self.limits.max_tracked / 4;
        entries.retain(|_, e| !e.forgotten_at(now, self.limits.forget_after));
        if entries.len() > target {
            // Unlocked entries hold at most a few free failures each.
            entries.retain(|_, e| e.in_flight > 0 || e.locked_at(now).is_some());
        }
        if entries.len() > target {
            let mut ends: Vec<Instant> = entries
                .values()
                .filter(|e| e.in_flight == 0)
                .filter_map(|e| e.locked_until)
                .collect();
            let excess = entries.len() - target;
            if excess > 0 && excess <= ends.len() {
                let (_, cut, _) = ends.select_nth_unstable(excess - 1);
                let cut = *cut;
                entries.retain(|_, e| e.in_flight > 0 || e.locked_until.is_none_or(|u| u > cut));
            }
        }
        tracing::warn!(
            tracked = entries.len(),
            "Login throttle was full; dropped the least useful entries."
        );
    }

    fn settle(&self, keys: &[(Key, u32)], outcome: Outcome, now: Instant) {
        let mut entries = self.entries();
        for (index, (key, free)) in keys.iter().enumerate() {
            let is_account = index == 0;
            let Some(entry) = entries.get_mut(key) else {
                // Dropped to make room while in flight: nothing to record.
                continue;
            };
            entry.in_flight = entry.in_flight.saturating_sub(1);
            match outcome {
                Outcome::Abandoned => {}
                // Only the account is forgiven: a known account must not
                // reset its address's count and so launder guesses at others.
                Outcome::Succeeded if is_account => {
                    entry.failures = 0;
                    entry.locked_until = None;
                    if entry.in_flight == 0 {
                        entries.remove(key);
                    }
                }
                Outcome::Succeeded => {}
                Outcome::Failed => {
                    entry.failures = entry.failures.saturating_add(1);
                    entry.last_failure = now;
                    if let Some(lockout) = self.lockout_after(entry.failures, *free) {
                        let until = now + lockout;
                        entry.locked_until =
                            Some(entry.locked_until.map_or(until, |u| u.max(until)));
                        tracing::info!(
                            per = if is_account { "account" } else { "address" },
                            failures = entry.failures,
                            lockout_s = lockout.as_secs_f64(),
                            "Login locked out after repeated failures."
                        );
                    }
                }
            }
        }
    }

    /// `None` while the failure was free; then first, 2 x first, 4 x first...
    fn lockout_after(&self, failures: u32, free: u32) -> Option<Duration> {
        let beyond = failures.checked_sub(free)?.checked_sub(1)?;
        let factor = 1u32.checked_shl(beyond.min(31)).unwrap_or(u32::MAX);
        Some(
            self.limits
                .first_lockout
                .checked_mul(factor)
                .unwrap_or(self.limits.max_lockout)
                .min(self.limits.max_lockout),
        )
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.entries().len()
    }
}

/// One admitted login attempt; settle it with its outcome.
pub(crate) struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    keys: Vec<(Key, u32)>,
    settled: bool,
}

impl Attempt<'_> {
    pub(crate) fn succeeded(self) {
        self.finish(Outcome::Succeeded, Instant::now());
    }

    pub(crate) fn failed(self) {
        self.finish(Outcome::Failed, Instant::now());
    }

    pub(crate) fn abandoned(self) {
        self.finish(Outcome::Abandoned, Instant::now());
    }

    fn finish(mut self, outcome: Outcome, now: Instant) {
        self.settled = true;
        self.throttle.settle(&self.keys, outcome, now);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle
                .settle(&self.keys, Outcome::Failed, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    fn limits() -> LoginLimits {
        LoginLimits {
            account_free_failures: 3,
            address_free_failures: 5,
            first_lockout: Duration::from_secs(1),
            max_lockout: Duration::from_secs(8),
            forget_after: Duration::from_secs(3600),
            max_tracked: 1000,
            ..LoginLimits::default()
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// One attempt at `now` that fails; the admission error if refused.
    fn fail(
        t: &LoginThrottle,
        email: &str,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Duration> {
        let attempt = t.admit_at(email, ip, now)?;
        attempt.finish(Outcome::Failed, now);
        Ok(())
    }

    #[test]
    fn free_failures_then_doubling_lockouts_up_to_the_cap() {
        // Given an account with three free failures
        let t = LoginThrottle::new(limits());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(fail(&t, "a@x.test", None, t0), Ok(()));
        }
        // When the fourth fails, Then it is locked for 1 s, and only then
        assert_eq!(fail(&t, "a@x.test", None, t0), Ok(()));
        assert_eq!(fail(&t, "a@x.test", None, t0).err(), Some(secs(1)));
        assert_eq!(
            fail(&t, "a@x.test", None, t0 + Duration::from_millis(400)).err(),
            Some(Duration::from_millis(600))
        );
        // And each failure after a lock-out doubles the next: 2, 4, 8, 8 (cap)
        let mut now = t0 + secs(1);
        for expected in [2, 4, 8, 8] {
            assert_eq!(fail(&t, "a@x.test", None, now), Ok(()));
            assert_eq!(fail(&t, "a@x.test", None, now).err(), Some(secs(expected)));
            now += secs(expected);
        }
    }

    #[test]
    fn success_resets_the_account_but_not_the_address() {
        let t = LoginThrottle::new(limits());
        let t0 = Instant::now();
        // Given three failures on the account (all free) and from an address
        for _ in 0..3 {
            fail(&t, "a@x.test", Some(HOME), t0).expect("free");
        }
        // When the right password follows
        t.admit_at("a@x.test", Some(HOME), t0)
            .expect("still free")
            .finish(Outcome::Succeeded, t0);
        // Then the account starts over (three free failures again, no lock)
        for _ in 0..3 {
            assert_eq!(fail(&t, "A@x.test ", None, t0), Ok(()), "normalised email");
        }
        // But the address still counts its earlier failures: 3 + 2 = 5 free, the 6th locks it
        fail(&t, "b@x.test", Some(HOME), t0).expect("address failure 4");
        fail(&t, "c@x.test", Some(HOME), t0).expect("address failure 5");
        fail(&t, "d@x.test", Some(HOME), t0).expect("address failure 6");
        assert_eq!(fail(&t, "e@x.test", Some(HOME), t0).err(), Some(secs(1)));
        // And another address is not affected
        let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8));
        assert_eq!(fail(&t, "e@x.test", Some(other), t0), Ok(()));
    }

    #[test]
    fn concurrent_attempts_cannot_exceed_the_free_allowance() {
        // Given an account with two of three free failures used
        let t = LoginThrottle::new(limits());
        let t0 = Instant::now();
        fail(&t, "a@x.test", None, t0).expect("free");
        fail(&t, "a@x.test", None, t0).expect("free");
        // When two attempts arrive together, Then only one is admitted
        let first = t.admit_at("a@x.test", None, t0).expect("the last free one");
        assert_eq!(t.admit_at("a@x.test", None, t0).err(), Some(BUSY_RETRY));
        first.finish(Outcome::Failed, t0);
        // And after the free ones, one attempt at a time between lock-outs
        let later = t0 + secs(60);
        let probe = t.admit_at("a@x.test", None, later).expect("lock-out over");
        assert_eq!(t.admit_at("a@x.test", None, later).err(), Some(BUSY_RETRY));
        probe.finish(Outcome::Abandoned, later);
        assert!(t.admit_at("a@x.test", None, later).is_ok());
    }

    #[test]
    fn a_cancelled_attempt_counts_as_a_failure() {
        // A long lock-out: this test reads the real clock.
        let t = LoginThrottle::new(LoginLimits {
            first_lockout: secs(3600),
            max_lockout: secs(3600),
            ..limits()
        });
        for _ in 0..4 {
            drop(t.admit("a@x.test", None).expect("admitted"));
        }
        let refused = t.admit("a@x.test", None).err();
        assert!(
            refused.is_some_and(|d| d > Duration::ZERO && d <= secs(3600)),
            "{refused:?}"
        );
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_period() {
        let t = LoginThrottle::new(limits());
        let t0 = Instant::now();
        for _ in 0..4 {
            fail(&t, "a@x.test", None, t0).expect("free, then the one that locks");
        }
        assert!(fail(&t, "a@x.test", None, t0).is_err());
        // An hour after the last failure the account has its free failures back
        let later = t0 + secs(3600);
        for _ in 0..4 {
            assert_eq!(fail(&t, "a@x.test", None, later), Ok(()));
        }
        assert_eq!(fail(&t, "a@x.test", None, later).err(), Some(secs(1)));
    }

    #[test]
    fn ipv6_clients_are_throttled_per_64_prefix() {
        let t = LoginThrottle::new(limits());
        let t0 = Instant::now();
        let host = |n: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, n));
        for n in 0..6 {
            fail(&t, &format!("u{n}@x.test"), Some(host(n)), t0)
                .expect("five free, the sixth locks");
        }
        assert!(fail(&t, "new@x.test", Some(host(99)), t0).is_err());
        let elsewhere = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert_eq!(fail(&t, "new@x.test", Some(elsewhere), t0), Ok(()));
    }

    #[test]
    fn memory_stays_bounded_and_locked_accounts_survive_a_flood() {
        // Given a locked-out victim account
        let t = LoginThrottle::new(LoginLimits {
            max_tracked: 100,
            ..limits()
        });
        let t0 = Instant::now();
        for _ in 0..4 {
            fail(&t, "victim@x.test", None, t0).expect("free, then the one that locks");
        }
        // When 10,000 other accounts fail once each
        for n in 0..10_000 {
            fail(&t, &format!("flood{n}@x.test"), None, t0).expect("fresh accounts are free");
            // Then the map never holds more than its cap
            assert!(t.tracked() <= 100, "{} keys after {n}", t.tracked());
        }
        // And the victim is still locked
        assert!(fail(&t, "victim@x.test", None, t0).is_err());
    }
}
