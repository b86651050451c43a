//! Enrichment: turning a visitor's IP address into company data while spending as few
//! provider credits as possible.
//!
//! Everything here is pure: no clock (time is passed in as [`Timestamp`](crate::Timestamp)),
//! no IO (providers build an [`http::Request`] and parse an [`http::Response`]; the host
//! sends it), no timers (the [`LookupPlanner`] reports a deadline; the host wakes up then).
//!
//! ## The pipeline a host runs for one visitor
//!
//! 1. **Skip or look up** — [`lookup_target`]: a bot, a visitor sending Global Privacy Control
//!    to a site that honours it, or an address that is not globally reachable ([`classify`])
//!    costs nothing and gets a fallback company ([`SkipCause::fallback_company`]).
//! 2. **Cache** — the shared per-IP cache holds [`CachedLookup`]s; a fresh one
//!    ([`CachedLookup::is_fresh`]) answers at once (source [`EnrichmentSource::Cache`]).
//! 3. **Single flight and rate limit** — [`LookupPlanner::request`] says whether to start the
//!    provider request now, join the one in flight for the same IP, or wait in the queue;
//!    [`LookupPlanner::next_deadline`] / [`LookupPlanner::handle_timeout`] release queued
//!    lookups as the rate limit allows.
//! 4. **Provider** — [`Provider::build_request`], the host's transport, then
//!    [`Provider::parse_response`] gives a [`CompanyProfile`] or a typed [`LookupFailure`].
//! 5. **Settle** — [`LookupPlanner::complete`] either re-queues (the provider said "later") or
//!    hands back every waiter to notify; [`CachePolicy::entry_for`] says what to store.
//! 6. **Account** — each step is an [`EnrichmentEvent`] recorded in the site's
//!    [`EnrichmentStats`].
//!
//! Steps 2–6 for the lookups a request asked for ([`LookupRequest`](crate::LookupRequest)) are
//! [`run_lookups`], as one bounded call, for hosts whose work must end with an invocation
//! (AWS Lambda); long-running hosts run the same [`steps`] from their own event loops.

pub mod cache;
pub mod driver;
pub mod engine;
pub mod enrich_so;
pub mod flight;
pub mod ip;
pub mod ipinfo;
pub mod people_data_labs;
pub mod provider;
pub mod run;
pub mod stats;
pub mod steps;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::protocol::EnrichmentSource;
pub use cache::{CachePolicy, CachedLookup, CachedOutcome};
pub use driver::{LookupDriver, Requested, SiteEvent};
pub use engine::{Enricher, LookupIo};
pub use enrich_so::EnrichSo;
pub use flight::{Admission, Completion, LookupPlanner, PlannerConfig, RateLimit};
pub use ip::{
    Classification, Embedding, IPV4_RANGES, IPV6_RANGES, Ipv4Range, Ipv6Range, Ipv6RangeKind,
    RangeKind, SkipReason, SpecialRange, UnknownSkipReason, classify, ipv4_range, ipv6_range,
};
pub use ipinfo::Ipinfo;
pub use people_data_labs::PeopleDataLabs;
pub use provider::{
    ApiKey, CompanyProfile, FailureKind, LookupFailure, Provider, ProviderConfig,
    ProviderConfigError, ProviderKind, ProviderSettingsError, parse_retry_after,
};
pub use run::{LookupRun, run_lookups};
pub use stats::{EnrichmentEvent, EnrichmentStats, StatsReport};
pub use steps::{Answer, FailureLog, lookup};

/// The company shown for a visitor on a private or local address.
pub const DIRECT_VISITOR: &str = "Direct Visitor";

/// The company shown when nothing is known: a skipped public address, a bot, a failed lookup.
pub const UNKNOWN_COMPANY: &str = "Unknown Company";

/// Why a visitor gets no lookup.
///
/// Serialized as one flat camelCase name (`"private"`, `"bot"`, `"globalPrivacyControl"`), so
/// it can key a JSON map of counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipCause {
    /// The address is not globally reachable.
    Address(SkipReason),
    /// The visitor is a bot (by user agent).
    Bot,
    /// The browser sent `Sec-GPC: 1` and the site honours Global Privacy Control.
    GlobalPrivacyControl,
    /// The browser sent `DNT: 1` and the site honours Do Not Track.
    DoNotTrack,
}

impl SkipCause {
    /// The stable camelCase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            SkipCause::Address(reason) => reason.as_str(),
            SkipCause::Bot => "bot",
            SkipCause::GlobalPrivacyControl => "globalPrivacyControl",
            SkipCause::DoNotTrack => "doNotTrack",
        }
    }

    /// The company shown instead: [`DIRECT_VISITOR`] for local addresses,
    /// [`UNKNOWN_COMPANY`] otherwise.
    pub const fn fallback_company(self) -> &'static str {
        match self {
            SkipCause::Address(reason) => reason.fallback_company(),
            SkipCause::Bot | SkipCause::GlobalPrivacyControl | SkipCause::DoNotTrack => {
                UNKNOWN_COMPANY
            }
        }
    }
}

impl fmt::Display for SkipCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<SkipReason> for SkipCause {
    fn from(reason: SkipReason) -> Self {
        SkipCause::Address(reason)
    }
}

impl FromStr for SkipCause {
    type Err = UnknownSkipReason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bot" => Ok(SkipCause::Bot),
            "globalPrivacyControl" => Ok(SkipCause::GlobalPrivacyControl),
            "doNotTrack" => Ok(SkipCause::DoNotTrack),
            other => other.parse().map(SkipCause::Address),
        }
    }
}

impl Serialize for SkipCause {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SkipCause {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// What is known about a visitor that decides whether its address may be looked up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VisitorSignals {
    /// The user agent is a bot's.
    pub is_bot: bool,
    /// The browser sent `Sec-GPC: 1`.
    pub sends_gpc: bool,
    /// The site's policy honours Global Privacy Control.
    pub site_honours_gpc: bool,
    /// The browser sent `DNT: 1`.
    pub sends_dnt: bool,
    /// The site's policy honours Do Not Track.
    pub site_honours_dnt: bool,
}

/// The address to look up for a visitor, or why there is no lookup.
///
/// Checked in order: Global Privacy Control and Do Not Track (each when the site honours it),
/// bot, then the address
/// ([`classify`]). The returned address is the one to cache and look up by (an IPv4-mapped
/// address comes back as plain IPv4).
///
/// ```
/// use tippen_core::enrichment::{lookup_target, SkipCause, SkipReason, VisitorSignals};
///
/// let human = VisitorSignals::default();
/// assert_eq!(lookup_target("::ffff:8.8.4.4".parse().unwrap(), human), Ok("8.8.4.4".parse().unwrap()));
/// assert_eq!(
///     lookup_target("10.0.0.7".parse().unwrap(), human),
///     Err(SkipCause::Address(SkipReason::Private))
/// );
/// let bot = VisitorSignals { is_bot: true, ..human };
/// assert_eq!(lookup_target("8.8.8.8".parse().unwrap(), bot), Err(SkipCause::Bot));
/// ```
pub fn lookup_target(ip: IpAddr, visitor: VisitorSignals) -> Result<IpAddr, SkipCause> {
    if visitor.sends_gpc && visitor.site_honours_gpc {
        return Err(SkipCause::GlobalPrivacyControl);
    }
    if visitor.sends_dnt && visitor.site_honours_dnt {
        return Err(SkipCause::DoNotTrack);
    }
    if visitor.is_bot {
        return Err(SkipCause::Bot);
    }
    match classify(ip) {
        Classification::Public(target) => Ok(target),
        Classification::Skip(reason) => Err(SkipCause::Address(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_cause_names_round_trip() {
        let mut all: Vec<SkipCause> = SkipReason::ALL.into_iter().map(SkipCause::from).collect();
        all.push(SkipCause::Bot);
        all.push(SkipCause::GlobalPrivacyControl);
        all.push(SkipCause::DoNotTrack);
        for cause in all {
            let json = serde_json::to_string(&cause).unwrap();
            assert_eq!(json, format!("\"{}\"", cause.as_str()));
            assert_eq!(serde_json::from_str::<SkipCause>(&json).unwrap(), cause);
        }
        assert!(serde_json::from_str::<SkipCause>("\"martian\"").is_err());
    }

    #[test]
    fn dnt_only_counts_when_the_site_honours_it() {
        let ip: IpAddr = "8.8.8.8".parse().unwrap();
        let dnt = VisitorSignals {
            sends_dnt: true,
            site_honours_gpc: true,
            ..VisitorSignals::default()
        };
        assert_eq!(lookup_target(ip, dnt), Ok(ip));
        let honoured = VisitorSignals {
            site_honours_dnt: true,
            ..dnt
        };
        assert_eq!(lookup_target(ip, honoured), Err(SkipCause::DoNotTrack));
        assert_eq!(SkipCause::DoNotTrack.fallback_company(), UNKNOWN_COMPANY);
    }

    #[test]
    fn gpc_only_counts_when_the_site_honours_it() {
        let ip: IpAddr = "8.8.8.8".parse().unwrap();
        let gpc = VisitorSignals {
            sends_gpc: true,
            ..VisitorSignals::default()
        };
        assert_eq!(lookup_target(ip, gpc), Ok(ip));
        let honoured = VisitorSignals {
            site_honours_gpc: true,
            ..gpc
        };
        assert_eq!(
            lookup_target(ip, honoured),
            Err(SkipCause::GlobalPrivacyControl)
        );
        assert_eq!(
            SkipCause::GlobalPrivacyControl.fallback_company(),
            UNKNOWN_COMPANY
        );
        assert_eq!(
            SkipCause::Address(SkipReason::Loopback).fallback_company(),
            DIRECT_VISITOR
        );
    }

    #[test]
    fn source_names() {
        assert_eq!(
            serde_json::to_string(&EnrichmentSource::Provider).unwrap(),
            "\"provider\""
        );
        assert_eq!(
            serde_json::to_string(&EnrichmentSource::Fallback).unwrap(),
            "\"fallback\""
        );
    }
}
