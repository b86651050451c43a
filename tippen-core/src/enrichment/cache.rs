//! What the per-IP cache keeps, and for how long.
//!
//! One cache serves every site (one site's lookup saves another's credit); accounting stays
//! per site ([`EnrichmentStats`](super::EnrichmentStats)). Entries are keyed by the address
//! [`classify`](super::classify) returns, so `::ffff:8.8.8.8` and `8.8.8.8` share one.
//!
//! ## What is cached
//!
//! - a **profile**, for [`CachePolicy::hit_ttl`] (30 days by default): companies rarely
//!   change address blocks, and every repeat visit within the month is a credit saved;
//! - **[`LookupFailure::NotFound`]**, for [`CachePolicy::failure_ttl`] (1 day): it is the
//!   provider's answer about *this address* (a residential line, an unknown block), so asking
//!   again tomorrow is enough, and asking at every page view would pay for nothing.
//!
//! No other failure is cached, because none of them says anything about the address:
//!
//! - [`InvalidKey`](LookupFailure::InvalidKey) and
//!   [`QuotaExhausted`](LookupFailure::QuotaExhausted) are the *account's* state; caching them
//!   would keep every address that arrived while the key was wrong or the credits ran out
//!   unenriched for a day after the operator fixes it;
//! - [`RateLimited`](LookupFailure::RateLimited) and [`Queued`](LookupFailure::Queued) are
//!   "ask again shortly" — the [`LookupPlanner`](super::LookupPlanner) does exactly that;
//! - [`Transient`](LookupFailure::Transient) (5xx, timeouts) is the provider's or the
//!   network's hiccup;
//! - [`Malformed`](LookupFailure::Malformed) means the parser and the provider disagree — a
//!   bug or an API change to fix, after which the answer should be fetched again.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::provider::{CompanyProfile, FailureKind, LookupFailure};
use crate::Timestamp;

/// How long cache entries live. Defaults: hits 30 days, failures 1 day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long a found profile is served from the cache.
    pub hit_ttl: Duration,
    /// How long a cacheable failure ([`LookupFailure::NotFound`]) is served from the cache.
    pub failure_ttl: Duration,
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            hit_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            failure_ttl: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl CachePolicy {
    /// Whether this failure is stored in the cache: only [`LookupFailure::NotFound`] (see the
    /// [module docs](self) for why).
    pub const fn caches(failure: &LookupFailure) -> bool {
        matches!(failure, LookupFailure::NotFound)
    }

    /// The entry to store for a lookup finished at `now`, or `None` when the result must not
    /// be cached.
    pub fn entry_for(
        &self,
        result: &Result<CompanyProfile, LookupFailure>,
        now: Timestamp,
    ) -> Option<CachedLookup> {
        let (outcome, ttl) = match result {
            Ok(profile) => (
                CachedOutcome::Found {
                    profile: profile.clone(),
                },
                self.hit_ttl,
            ),
            Err(failure) if Self::caches(failure) => (
                CachedOutcome::Failed {
                    kind: failure.kind(),
                },
                self.failure_ttl,
            ),
            Err(_) => return None,
        };
        Some(CachedLookup {
            outcome,
            looked_up_at: now,
            expires_at: now.plus(ttl),
        })
    }
}

/// One cached answer for one address, as stored (serde, camelCase).
///
/// ```
/// use tippen_core::{enrichment::{CachePolicy, CompanyProfile}, Timestamp};
///
/// let t0 = Timestamp::from_millis(1_729_080_000_000);
/// let profile = CompanyProfile { name: "Acme".into(), ..Default::default() };
/// let entry = CachePolicy::default().entry_for(&Ok(profile), t0).unwrap();
/// assert!(entry.is_fresh(t0.plus(std::time::Duration::from_secs(29 * 86_400))));
/// assert!(!entry.is_fresh(t0.plus(std::time::Duration::from_secs(30 * 86_400))));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedLookup {
    /// What the provider answered.
    pub outcome: CachedOutcome,
    /// When the lookup finished.
    pub looked_up_at: Timestamp,
    /// When the entry stops being served (fixed when stored, so stores can index and purge
    /// by it).
    pub expires_at: Timestamp,
}

impl CachedLookup {
    /// Whether the entry may still be served at `now` (strictly before
    /// [`expires_at`](Self::expires_at)).
    pub fn is_fresh(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }

    /// The profile, for a positive entry.
    pub fn profile(&self) -> Option<&CompanyProfile> {
        match &self.outcome {
            CachedOutcome::Found { profile } => Some(profile),
            CachedOutcome::Failed { .. } => None,
        }
    }

    /// Whether this is a negative entry (a cached failure).
    pub fn is_negative(&self) -> bool {
        matches!(self.outcome, CachedOutcome::Failed { .. })
    }
}

/// A cached answer: a profile, or the kind of a cacheable failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum CachedOutcome {
    /// The provider found a company.
    Found {
        /// The company.
        profile: CompanyProfile,
    },
    /// The provider answered with a cacheable failure.
    Failed {
        /// Which failure.
        kind: FailureKind,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clock, ManualClock};

    const DAY: Duration = Duration::from_secs(86_400);
    const T0: Timestamp = Timestamp::from_millis(1_729_080_000_000);

    fn acme() -> CompanyProfile {
        CompanyProfile {
            name: "Acme".into(),
            domain: Some("acme.com".into()),
            ..CompanyProfile::default()
        }
    }

    #[test]
    fn hits_live_thirty_days_with_a_manual_clock() {
        let clock = ManualClock::new(T0);
        let entry = CachePolicy::default()
            .entry_for(&Ok(acme()), clock.now())
            .unwrap();
        assert_eq!(entry.looked_up_at, T0);
        assert_eq!(entry.expires_at, T0.plus(30 * DAY));
        assert_eq!(entry.profile(), Some(&acme()));
        clock.advance(30 * DAY - Duration::from_millis(1));
        assert!(entry.is_fresh(clock.now()));
        clock.advance(Duration::from_millis(1));
        assert!(!entry.is_fresh(clock.now()));
    }

    #[test]
    fn not_found_lives_one_day() {
        let entry = CachePolicy::default()
            .entry_for(&Err(LookupFailure::NotFound), T0)
            .unwrap();
        assert!(entry.is_negative());
        assert!(entry.is_fresh(T0.plus(DAY - Duration::from_millis(1))));
        assert!(!entry.is_fresh(T0.plus(DAY)));
    }

    #[test]
    fn only_not_found_is_cached() {
        let policy = CachePolicy::default();
        for failure in [
            LookupFailure::InvalidKey,
            LookupFailure::QuotaExhausted,
            LookupFailure::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
            },
            LookupFailure::Queued { retry_after: None },
            LookupFailure::Transient("HTTP 503".into()),
            LookupFailure::Malformed("bad".into()),
        ] {
            assert_eq!(
                policy.entry_for(&Err(failure.clone()), T0),
                None,
                "{failure}"
            );
        }
    }

    #[test]
    fn ttls_are_configurable() {
        let policy = CachePolicy {
            hit_ttl: Duration::from_secs(60),
            failure_ttl: Duration::from_secs(10),
        };
        let hit = policy.entry_for(&Ok(acme()), T0).unwrap();
        assert_eq!(hit.expires_at, T0.plus(Duration::from_secs(60)));
        let miss = policy.entry_for(&Err(LookupFailure::NotFound), T0).unwrap();
        assert_eq!(miss.expires_at, T0.plus(Duration::from_secs(10)));
    }

    #[test]
    fn storage_shape() {
        let hit = CachePolicy::default().entry_for(&Ok(acme()), T0).unwrap();
        let json = serde_json::to_string(&hit).unwrap();
        assert_eq!(
            json,
            r#"{"outcome":{"status":"found","profile":{"name":"Acme","domain":"acme.com"}},"lookedUpAt":1729080000000,"expiresAt":1731672000000}"#
        );
        assert_eq!(serde_json::from_str::<CachedLookup>(&json).unwrap(), hit);
        let miss = CachePolicy::default()
            .entry_for(&Err(LookupFailure::NotFound), T0)
            .unwrap();
        let json = serde_json::to_string(&miss).unwrap();
        assert_eq!(
            json,
            r#"{"outcome":{"status":"failed","kind":"notFound"},"lookedUpAt":1729080000000,"expiresAt":1729166400000}"#
        );
        assert_eq!(serde_json::from_str::<CachedLookup>(&json).unwrap(), miss);
    }
}
