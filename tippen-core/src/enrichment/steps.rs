//! The steps of an enrichment drive loop, written once for every host.
//!
//! A host owns its [`LookupDriver`] (behind whatever its runtime needs: `&mut`, a `RefCell`,
//! a lock) and its wake-ups; it calls the driver's synchronous methods itself and these steps
//! for everything else, so no step ever holds the driver across an `.await` (tasks of a
//! single-threaded runtime interleave there). One lookup, step by step:
//!
//! 1. [`from_cache`] — when nobody is looking the address up
//!    ([`LookupDriver::is_pending`]), the shared cache may have the answer since the visitor's
//!    own check: then [`Answer::give`] it to the visitor, and that is all.
//! 2. [`request`] (the driver call), then [`admitted`] — records what it counted and says
//!    whether to start the provider request now.
//! 3. [`record`] the [`LookupDriver::started`] event, then [`lookup`]: the provider request.
//! 4. [`FailureLog::log`] the result, then [`settle`] what [`LookupDriver::complete`] said:
//!    retried later, or stored in the cache and handed back with its waiters, to whom the host
//!    gives [`Answer::Lookup`] (under its own locks, if it has any).
//!
//! The long-running hosts call these from their event loops; [`run_lookups`](super::run_lookups)
//! is the same steps as one bounded call.

use std::net::IpAddr;

use super::{
    CachedLookup, CompanyProfile, Completion, EnrichmentEvent, LookupDriver, LookupFailure,
    Provider, ProviderKind, Requested, SiteEvent,
};
use crate::effects::Effects;
use crate::service::LookupRequest;
use crate::transport::Transport;
use crate::{SiteId, Timestamp, Tippen};

/// What a visitor is given: a cached entry, or the result of a provider request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A fresh entry of the shared cache ([`Tippen::apply_cached_lookup`]).
    Cached(CachedLookup),
    /// The provider's answer, settled ([`Tippen::complete_lookup`]).
    Lookup(Result<CompanyProfile, LookupFailure>),
}

impl Answer {
    /// Gives the answer to `visitor` of `site`; returns the effects to apply (the visitor's
    /// `VISITOR_UPDATE` broadcast), none when the update failed (logged: the visitor keeps
    /// its fallback company).
    pub async fn give(&self, tippen: &Tippen, site: &SiteId, visitor: &str) -> Effects {
        let outcome = match self {
            Answer::Cached(entry) => tippen.apply_cached_lookup(site, visitor, entry).await,
            Answer::Lookup(result) => tippen.complete_lookup(site, visitor, result).await,
        };
        match outcome {
            Ok(outcome) => tippen.effects_with_alerts(site, None, outcome, false).await,
            Err(e) => {
                tracing::warn!(site = %site, error = %e, "could not update an enriched visitor");
                Effects::default()
            }
        }
    }
}

/// Adds `events` to their sites' stats; a store failure is logged and skipped.
pub async fn record(tippen: &Tippen, events: Vec<SiteEvent>) {
    for (site, event) in events {
        if let Err(e) = tippen.record_enrichment(&site, &[event]).await {
            tracing::warn!(site = %site, error = %e, "could not record enrichment stats");
        }
    }
}

/// Step 1, for a lookup of an address nobody is looking up: the shared cache's fresh entry,
/// if another lookup settled since the visitor's own check (counted as
/// [`EnrichmentEvent::JoinedInFlight`] for the visitor's site: a credit saved). A cache read
/// failure is logged and answers nothing.
pub async fn from_cache(tippen: &Tippen, request: &LookupRequest) -> Option<Answer> {
    match tippen.fresh_cached_lookup(request.ip).await {
        Ok(Some(entry)) => {
            record(
                tippen,
                vec![(request.site.clone(), EnrichmentEvent::JoinedInFlight)],
            )
            .await;
            Some(Answer::Cached(entry))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "enrichment cache read failed");
            None
        }
    }
}

/// Step 2's driver call: [`LookupDriver::request`] for `lookup` (its visitor is the waiter).
pub fn request(
    driver: &mut LookupDriver<String>,
    lookup: LookupRequest,
    now: Timestamp,
) -> Requested {
    let LookupRequest {
        site,
        visitor_id,
        ip,
    } = lookup;
    driver.request(site, visitor_id, ip, now)
}

/// Step 2: records what [`LookupDriver::request`] counted (warning when the queue was full:
/// that visitor keeps its fallback company); whether to start the provider request now.
pub async fn admitted(tippen: &Tippen, requested: Requested) -> bool {
    if requested
        .events
        .iter()
        .any(|(_, e)| *e == EnrichmentEvent::QueueFull)
    {
        tracing::warn!("enrichment queue full: visitor keeps its fallback company");
    }
    record(tippen, requested.events).await;
    requested.start
}

/// Step 3, one provider request: the core builds it, `transport` sends it, the core parses the
/// answer. A transport error (timeout, connection) is [`LookupFailure::Transient`].
pub async fn lookup(
    provider: &dyn Provider,
    transport: &dyn Transport,
    ip: IpAddr,
    now: Timestamp,
) -> Result<CompanyProfile, LookupFailure> {
    match transport.send(provider.build_request(ip)).await {
        Err(e) => Err(LookupFailure::Transient(e.to_string())),
        Ok(response) => provider.parse_response(&response, now),
    }
}

/// Logs failed lookups: an invalid key (once, until a lookup succeeds again) and an exhausted
/// quota as errors, other failures but "not found" as warnings. The key is never logged.
#[derive(Clone, Debug, Default)]
pub struct FailureLog {
    /// The last answer said the key is invalid.
    key_rejected: bool,
}

impl FailureLog {
    /// Logs `result` of a lookup by `provider`, if it failed.
    pub fn log<T>(&mut self, provider: ProviderKind, result: &Result<T, LookupFailure>) {
        match result {
            Ok(_) => self.key_rejected = false,
            Err(LookupFailure::InvalidKey) => {
                if !std::mem::replace(&mut self.key_rejected, true) {
                    tracing::error!(
                        %provider,
                        "the enrichment provider rejected the API key; visitors get fallbacks until the key is fixed"
                    );
                }
            }
            Err(LookupFailure::QuotaExhausted) => {
                tracing::error!(%provider, "the enrichment provider's quota is exhausted");
            }
            Err(LookupFailure::NotFound) => {}
            Err(other) => tracing::warn!(%provider, error = %other, "enrichment lookup failed"),
        }
    }
}

/// Step 4: records the counters of [`LookupDriver::complete`] (`completed`, called at `now`
/// with `result` for `ip`); when the lookup is settled, stores `result` in the shared cache
/// first (a request arriving after this finds it there) and hands back the waiters, to give
/// [`Answer::Lookup`] to. `None`: retried at the driver's next deadline.
pub async fn settle<W>(
    tippen: &Tippen,
    provider: ProviderKind,
    ip: IpAddr,
    result: &Result<CompanyProfile, LookupFailure>,
    now: Timestamp,
    completed: (Vec<SiteEvent>, Completion<(SiteId, W)>),
) -> Option<Vec<(SiteId, W)>> {
    let (events, completion) = completed;
    record(tippen, events).await;
    match completion {
        Completion::Retrying { at } => {
            tracing::debug!(%provider, retry_in = ?at.since(now), "enrichment lookup will be retried");
            None
        }
        Completion::Settled(waiters) => {
            if let Err(e) = tippen.cache_lookup(ip, result).await {
                tracing::warn!(error = %e, "could not store the enrichment result");
            }
            // After the cache write: a process waiting on the claim finds the result.
            if let Err(e) = tippen.store().release_lookup(ip).await {
                tracing::warn!(error = %e, "could not release an enrichment lookup claim");
            }
            Some(waiters)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Log lines written by the subscriber under test.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `f` logs at debug and above.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_rejected_key_is_logged_once_until_a_lookup_succeeds() {
        let provider = ProviderKind::Ipinfo;
        let rejected: Result<(), _> = Err(LookupFailure::InvalidKey);
        let mut log = FailureLog::default();
        let lines = logged(|| {
            log.log(provider, &rejected);
            log.log(provider, &rejected);
            log.log(provider, &Ok(()));
            log.log(provider, &rejected);
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        for line in &lines {
            assert!(line.starts_with("ERROR"), "{line}");
            assert!(line.contains("rejected the API key"), "{line}");
            assert!(line.contains("provider=ipinfo"), "{line}");
        }
    }

    #[test]
    fn failures_are_logged_by_kind() {
        let provider = ProviderKind::Ipinfo;
        let mut log = FailureLog::default();
        let lines = logged(|| {
            log.log::<()>(provider, &Err(LookupFailure::QuotaExhausted));
            log.log::<()>(provider, &Err(LookupFailure::QuotaExhausted));
            log.log::<()>(provider, &Err(LookupFailure::NotFound));
            log.log::<()>(provider, &Err(LookupFailure::Transient("timed out".into())));
        });
        assert_eq!(lines.len(), 3, "not found is not logged: {lines:?}");
        for quota in &lines[..2] {
            assert!(quota.starts_with("ERROR"), "{quota}");
            assert!(quota.contains("quota is exhausted"), "{quota}");
        }
        assert!(lines[2].starts_with(" WARN"), "{}", lines[2]);
        assert!(
            lines[2].contains("enrichment lookup failed"),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains("timed out"), "{}", lines[2]);
    }
}
