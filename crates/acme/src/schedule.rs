//! When to renew and when to retry: pure functions, so the rules are tested without a clock.

use std::time::{Duration, SystemTime};

/// Exponential backoff after failed issuances, capped.
///
/// The defaults follow cert-manager's spirit at a shorter scale: a first retry after a minute
/// (a typo fixed in DNS or a port opened should not wait an hour), doubling up to a day, which
/// stays far below Let's Encrypt's limit of 5 failed validations per name per hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

// === impl Backoff ===

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(60),
            cap: Duration::from_secs(24 * 3600),
        }
    }
}

impl Backoff {
    /// Delay before the next attempt after `failures` consecutive failures: zero for none,
    /// then `base`, `2·base`, `4·base`, … never above `cap`.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).map_or(self.cap, |d| d.min(self.cap))
    }

    /// The earliest next attempt: the backoff from `now`, or the CA's `retry_after` when later
    /// (a CA that says `rateLimited` is never asked again before its time).
    pub fn next_attempt(&self, now: SystemTime, failures: u32, retry_after: Option<SystemTime>) -> SystemTime {
        let backoff = now + self.delay(failures);
        match retry_after {
            Some(t) if t > backoff => t,
            _ => backoff,
        }
    }
}

/// When to renew a certificate valid from `not_before` to `not_after`: `renew_before` ahead of
/// expiry when set and shorter than the lifetime, otherwise at 2/3 of the lifetime
/// (cert-manager's rule; it also falls back to 2/3 when renewBefore ≥ the lifetime).
pub fn renewal_time(not_before: SystemTime, not_after: SystemTime, renew_before: Option<Duration>) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or(Duration::ZERO);
    match renew_before {
        Some(rb) if rb < lifetime && !rb.is_zero() => not_after - rb,
        _ => not_before + lifetime * 2 / 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    #[test]
    fn renewal_follows_cert_manager() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let d = |s: u64| Duration::from_secs(s);
        // (lifetime, renewBefore, renew at offset from notBefore)
        let cases = [
            (90 * 24 * H, None, 60 * 24 * H),              // Let's Encrypt: day 60 of 90
            (90 * 24 * H, Some(30 * 24 * H), 60 * 24 * H), // explicit 30 days
            (90 * 24 * H, Some(10 * 24 * H), 80 * 24 * H),
            (90 * 24 * H, Some(90 * 24 * H), 60 * 24 * H), // renewBefore ≥ lifetime: 2/3
            (90 * 24 * H, Some(400 * 24 * H), 60 * 24 * H),
            (60, None, 40), // pebble short validity
            (0, None, 0),
        ];
        for (lifetime, rb, want) in cases {
            let got = renewal_time(t0, t0 + d(lifetime), rb.map(d));
            assert_eq!(got, t0 + d(want), "lifetime {lifetime}s renewBefore {rb:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_secs(60),
            cap: Duration::from_secs(3600),
        };
        let cases = [
            (0, 0),
            (1, 60),
            (2, 120),
            (3, 240),
            (6, 1920),
            (7, 3600),
            (40, 3600),
            (u32::MAX, 3600),
        ];
        for (failures, want) in cases {
            assert_eq!(b.delay(failures), Duration::from_secs(want), "failures {failures}");
        }
    }

    #[test]
    fn retry_after_wins_when_later() {
        let b = Backoff::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let later = now + Duration::from_secs(7200);
        assert_eq!(b.next_attempt(now, 1, Some(later)), later);
        assert_eq!(b.next_attempt(now, 1, Some(now)), now + Duration::from_secs(60));
        assert_eq!(b.next_attempt(now, 0, None), now);
    }
}
