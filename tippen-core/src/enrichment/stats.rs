//! Per-site enrichment accounting, in the JSON shape of the stats endpoint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SkipCause;
use super::provider::FailureKind;

/// One thing that happened while enriching one visitor of a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnrichmentEvent {
    /// No lookup, for this cause.
    Skipped(SkipCause),
    /// A fresh profile came from the cache: a credit saved.
    CacheHit,
    /// A fresh negative answer came from the cache: a credit saved.
    NegativeCacheHit,
    /// Nothing fresh in the cache: a lookup is needed (started, joined or queued).
    CacheMiss,
    /// A provider request was sent for this site's visitor: a credit used (retries count
    /// again).
    LookupStarted,
    /// The visitor joined a lookup already in flight for its address: a credit saved.
    JoinedInFlight,
    /// A provider request failed this way.
    LookupFailed(FailureKind),
    /// The lookup queue was full: no lookup, the visitor keeps its fallback.
    QueueFull,
}

/// Counters for one site. Serialized in camelCase for the stats endpoint; use
/// [`report`](Self::report) to add the hit ratio.
///
/// "Credits" count provider requests: an upper bound on what the provider charges (some
/// charge only for matches).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnrichmentStats {
    /// Provider requests sent.
    pub credits_used: u64,
    /// Requests avoided by the cache (positive and negative hits).
    pub credits_saved_by_cache: u64,
    /// Requests avoided by joining a lookup in flight (single flight).
    pub credits_saved_by_single_flight: u64,
    /// Fresh profiles served from the cache.
    pub cache_hits: u64,
    /// Fresh negative answers served from the cache.
    pub negative_cache_hits: u64,
    /// Lookups the cache could not answer.
    pub cache_misses: u64,
    /// Lookups refused because the queue was full (a flood of distinct addresses).
    pub queue_overflows: u64,
    /// Failed provider requests by kind (`invalidKey` shows a misconfigured key).
    pub failures: BTreeMap<FailureKind, u64>,
    /// Visitors given no lookup, by cause (`private`, `bot`, `globalPrivacyControl`, …).
    pub skips_by_reason: BTreeMap<SkipCause, u64>,
}

impl EnrichmentStats {
    /// Counts one event.
    pub fn record(&mut self, event: EnrichmentEvent) {
        match event {
            EnrichmentEvent::Skipped(cause) => *self.skips_by_reason.entry(cause).or_default() += 1,
            EnrichmentEvent::CacheHit => {
                self.cache_hits += 1;
                self.credits_saved_by_cache += 1;
            }
            EnrichmentEvent::NegativeCacheHit => {
                self.negative_cache_hits += 1;
                self.credits_saved_by_cache += 1;
            }
            EnrichmentEvent::CacheMiss => self.cache_misses += 1,
            EnrichmentEvent::LookupStarted => self.credits_used += 1,
            EnrichmentEvent::JoinedInFlight => self.credits_saved_by_single_flight += 1,
            EnrichmentEvent::LookupFailed(kind) => *self.failures.entry(kind).or_default() += 1,
            EnrichmentEvent::QueueFull => self.queue_overflows += 1,
        }
    }

    /// Adds another set of counters (another shard, another period).
    pub fn merge(&mut self, other: &EnrichmentStats) {
        self.credits_used += other.credits_used;
        self.credits_saved_by_cache += other.credits_saved_by_cache;
        self.credits_saved_by_single_flight += other.credits_saved_by_single_flight;
        self.cache_hits += other.cache_hits;
        self.negative_cache_hits += other.negative_cache_hits;
        self.cache_misses += other.cache_misses;
        self.queue_overflows += other.queue_overflows;
        for (kind, n) in &other.failures {
            *self.failures.entry(*kind).or_default() += n;
        }
        for (cause, n) in &other.skips_by_reason {
            *self.skips_by_reason.entry(*cause).or_default() += n;
        }
    }

    /// The non-zero counters as flat names: `field` for a plain counter, `field.key` for an
    /// entry of a per-kind map (the JSON shape's names, e.g. `creditsUsed`,
    /// `skipsByReason.private`). Stores that keep one atomic counter per name (DynamoDB
    /// `ADD`, Redis `HINCRBY`) add a batch's counters this way, and read them back with
    /// [`from_flat_counters`](Self::from_flat_counters).
    pub fn flat_counters(&self) -> Vec<(String, u64)> {
        let json = serde_json::to_value(self).unwrap_or_default();
        let mut out = Vec::new();
        for (field, value) in json.as_object().into_iter().flatten() {
            match value {
                serde_json::Value::Number(n) => out.push((field.clone(), n.as_u64().unwrap_or(0))),
                serde_json::Value::Object(map) => {
                    for (key, n) in map {
                        out.push((format!("{field}.{key}"), n.as_u64().unwrap_or(0)));
                    }
                }
                _ => {}
            }
        }
        out.retain(|(_, n)| *n > 0);
        out
    }

    /// Counters read back from [`flat_counters`](Self::flat_counters)' names; an error
    /// naming the problem for a name or kind it does not know.
    pub fn from_flat_counters(
        counters: impl IntoIterator<Item = (String, u64)>,
    ) -> Result<Self, String> {
        let mut json = serde_json::Map::new();
        for (name, count) in counters {
            match name.split_once('.') {
                None => {
                    json.insert(name, count.into());
                }
                Some((field, key)) => {
                    let map = json
                        .entry(field.to_owned())
                        .or_insert_with(|| serde_json::Value::Object(Default::default()));
                    if let Some(map) = map.as_object_mut() {
                        map.insert(key.to_owned(), count.into());
                    }
                }
            }
        }
        serde_json::from_value(serde_json::Value::Object(json)).map_err(|e| e.to_string())
    }

    /// Every credit saved: by the cache and by single flight.
    pub fn credits_saved(&self) -> u64 {
        self.credits_saved_by_cache + self.credits_saved_by_single_flight
    }

    /// Share of cache lookups answered by the cache (positive or negative hits), from 0 to 1;
    /// `None` before the first lookup.
    pub fn hit_ratio(&self) -> Option<f64> {
        let hits = self.cache_hits + self.negative_cache_hits;
        let total = hits + self.cache_misses;
        (total > 0).then(|| hits as f64 / total as f64)
    }

    /// The counters with the derived figures, as the stats endpoint serves them.
    pub fn report(&self) -> StatsReport {
        StatsReport {
            stats: self.clone(),
            credits_saved: self.credits_saved(),
            hit_ratio: self.hit_ratio(),
        }
    }
}

/// [`EnrichmentStats`] plus derived figures, for the stats endpoint:
///
/// ```
/// use tippen_core::enrichment::{EnrichmentEvent, EnrichmentStats, SkipReason};
///
/// let mut stats = EnrichmentStats::default();
/// stats.record(EnrichmentEvent::CacheMiss);
/// stats.record(EnrichmentEvent::LookupStarted);
/// stats.record(EnrichmentEvent::CacheHit);
/// stats.record(EnrichmentEvent::Skipped(SkipReason::Private.into()));
/// assert_eq!(
///     serde_json::to_string(&stats.report()).unwrap(),
///     r#"{"creditsUsed":1,"creditsSavedByCache":1,"creditsSavedBySingleFlight":0,"cacheHits":1,"negativeCacheHits":0,"cacheMisses":1,"queueOverflows":0,"failures":{},"skipsByReason":{"private":1},"creditsSaved":1,"hitRatio":0.5}"#
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsReport {
    /// The counters.
    #[serde(flatten)]
    pub stats: EnrichmentStats,
    /// [`EnrichmentStats::credits_saved`].
    pub credits_saved: u64,
    /// [`EnrichmentStats::hit_ratio`].
    pub hit_ratio: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrichment::SkipReason;

    #[test]
    fn flat_counters_round_trip() {
        let mut s = EnrichmentStats::default();
        s.record(EnrichmentEvent::CacheMiss);
        s.record(EnrichmentEvent::LookupStarted);
        s.record(EnrichmentEvent::Skipped(SkipReason::Private.into()));
        s.record(EnrichmentEvent::Skipped(SkipReason::Private.into()));
        let flat = s.flat_counters();
        assert!(flat.contains(&("skipsByReason.private".to_owned(), 2)));
        assert!(flat.contains(&("creditsUsed".to_owned(), 1)));
        assert!(
            flat.iter().all(|(_, n)| *n > 0),
            "zeros are left out: {flat:?}"
        );
        assert_eq!(EnrichmentStats::from_flat_counters(flat), Ok(s));
        assert!(
            EnrichmentStats::from_flat_counters([("skipsByReason.nope".to_owned(), 1)]).is_err()
        );
    }

    #[test]
    fn hit_ratio_counts_negative_hits() {
        let mut s = EnrichmentStats::default();
        assert_eq!(s.hit_ratio(), None);
        s.record(EnrichmentEvent::CacheMiss);
        s.record(EnrichmentEvent::NegativeCacheHit);
        s.record(EnrichmentEvent::CacheHit);
        s.record(EnrichmentEvent::CacheHit);
        assert_eq!(s.hit_ratio(), Some(0.75));
        assert_eq!(s.credits_saved_by_cache, 3);
    }

    #[test]
    fn counters_and_merge() {
        let mut a = EnrichmentStats::default();
        a.record(EnrichmentEvent::Skipped(SkipCause::Bot));
        a.record(EnrichmentEvent::Skipped(SkipReason::Loopback.into()));
        a.record(EnrichmentEvent::LookupFailed(FailureKind::InvalidKey));
        a.record(EnrichmentEvent::JoinedInFlight);
        let mut b = a.clone();
        b.record(EnrichmentEvent::Skipped(SkipCause::Bot));
        b.merge(&a);
        assert_eq!(b.skips_by_reason[&SkipCause::Bot], 3);
        assert_eq!(b.failures[&FailureKind::InvalidKey], 2);
        assert_eq!(b.credits_saved(), 2);
    }

    #[test]
    fn json_round_trips() {
        let mut s = EnrichmentStats::default();
        s.record(EnrichmentEvent::Skipped(SkipCause::GlobalPrivacyControl));
        s.record(EnrichmentEvent::Skipped(
            SkipReason::SharedAddressSpace.into(),
        ));
        s.record(EnrichmentEvent::LookupFailed(FailureKind::RateLimited));
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.contains(r#""skipsByReason":{"sharedAddressSpace":1,"globalPrivacyControl":1}"#),
            "{json}"
        );
        assert!(json.contains(r#""failures":{"rateLimited":1}"#), "{json}");
        assert_eq!(serde_json::from_str::<EnrichmentStats>(&json).unwrap(), s);
        let report = serde_json::to_string(&s.report()).unwrap();
        assert_eq!(
            serde_json::from_str::<StatsReport>(&report).unwrap(),
            s.report()
        );
        assert_eq!(
            serde_json::from_str::<EnrichmentStats>("{}").unwrap(),
            EnrichmentStats::default()
        );
    }
}
