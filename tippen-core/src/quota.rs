//! Socket quotas, sans-IO: how many sockets a site and a client address may hold open, and
//! how many snapshots (`GET_VISITORS`) one dashboard may ask for a minute.
//!
//! The decisions are made here once; the hosts only count and keep values:
//!
//! - **Sockets per site and per address.** Before upgrading, the host counts the sockets it
//!   holds open for the site and for the client's address and asks
//!   [`SocketQuotas::admit`]; over a quota the answer is the `429 {"error":…}` to send instead
//!   of upgrading (the socket is never opened). A socket stops counting when it closes. What a
//!   host counts as "one address": every site it serves on axum (one process); the site on
//!   the Worker (each site's Durable Object knows only its own sockets; the address is a tag,
//!   hashed with [`address_tag`]) and on Lambda (the site's connection items carry the hashed
//!   address). Raw addresses are never persisted.
//! - **Snapshots per dashboard.** Each dashboard socket carries a [`SnapshotBudget`], a small
//!   serializable token bucket the host keeps with the socket (axum: the session; the
//!   Worker: the WebSocket's attachment, which survives hibernation; Lambda: an attribute of
//!   the connection item) and passes to
//!   [`Tippen::socket_frame_within`](crate::Tippen::socket_frame_within). A `GET_VISITORS`
//!   over the budget is answered with an `ERROR` instead of a snapshot; nothing else
//!   changes, broadcasts keep coming, and the budget refills with time. The opening snapshot
//!   does not count: opening sockets is bounded by the socket quotas and the rate limits.
//!
//! ```
//! use tippen_core::quota::{SnapshotBudget, SocketQuotas};
//! use tippen_core::{Limits, Site, Timestamp};
//!
//! let quotas = SocketQuotas::of(&Limits::default(), &Site::new("a", "A", "pk", "sk_0123456789abcdefghijklm"));
//! assert!(quotas.admit(4_999, 49).is_ok());
//! assert_eq!(quotas.admit(5_000, 0).unwrap_err().status(), 429);
//!
//! let mut budget = quotas.snapshot_budget();
//! let now = Timestamp::from_millis(1_000_000);
//! for _ in 0..30 {
//!     assert!(budget.spend(now).is_ok());
//! }
//! assert!(budget.spend(now).is_err());
//! // Two seconds later (30 a minute), one more.
//! assert!(budget.spend(Timestamp::from_millis(1_002_000)).is_ok());
//! ```

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::{ApiError, SocketRole};
use crate::clock::Timestamp;
use crate::config::Limits;
use crate::effects::Effects;
use crate::protocol::{ClientMessage, ServerMessage};
use crate::service::{ServiceError, Tippen};
use crate::site::Site;

/// A site's own socket quotas, each replacing the host's ([`Limits`]) when set
/// (`maxSockets`, `maxSocketsPerAddress`, `snapshotsPerMinute` in the site's entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaOverrides {
    /// Most open sockets of the site ([`Limits::max_sockets_per_site`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sockets: Option<u32>,
    /// Most open sockets from one address ([`Limits::max_sockets_per_address`]), applied to
    /// upgrades to this site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sockets_per_address: Option<u32>,
    /// `GET_VISITORS` a minute per dashboard ([`Limits::snapshots_per_minute`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots_per_minute: Option<u32>,
}

impl QuotaOverrides {
    /// True when the site overrides nothing.
    pub fn is_empty(&self) -> bool {
        *self == QuotaOverrides::default()
    }
}

/// The socket quotas in force for one site: the host's [`Limits`] with the site's own
/// [`QuotaOverrides`] over them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketQuotas {
    /// Most open sockets of the site.
    pub per_site: usize,
    /// Most open sockets from one address.
    pub per_address: usize,
    /// `GET_VISITORS` a minute per dashboard socket.
    pub snapshots_per_minute: u32,
}

impl SocketQuotas {
    /// The host's quotas (`limits`), for a site that has none of its own.
    pub fn of_host(limits: &Limits) -> Self {
        Self::with(limits, &QuotaOverrides::default())
    }

    /// The quotas for `site`'s sockets under `limits`.
    pub fn of(limits: &Limits, site: &Site) -> Self {
        Self::with(limits, &site.socket_quotas)
    }

    fn with(limits: &Limits, o: &QuotaOverrides) -> Self {
        let size = |n: Option<u32>, default: usize| {
            n.and_then(|n| usize::try_from(n).ok()).unwrap_or(default)
        };
        SocketQuotas {
            per_site: size(o.max_sockets, limits.max_sockets_per_site).max(1),
            per_address: size(o.max_sockets_per_address, limits.max_sockets_per_address).max(1),
            snapshots_per_minute: o
                .snapshots_per_minute
                .unwrap_or(limits.snapshots_per_minute)
                .max(1),
        }
    }

    /// Whether one more socket may open when the site already has `open_on_site` open and the
    /// client's address `open_from_address` (on the host's scope; 0 when the host does not
    /// know the address): `Err` is the `429 {"error":…}` to answer instead of upgrading,
    /// naming the quota. `Retry-After` is not set: a socket frees its place when it closes,
    /// which no time predicts.
    #[allow(clippy::result_large_err)]
    pub fn admit(
        &self,
        open_on_site: usize,
        open_from_address: usize,
    ) -> Result<(), Response<Bytes>> {
        let refuse = |message: String| {
            Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).into_response())
        };
        if open_on_site >= self.per_site {
            return refuse(format!(
                "too many open sockets on this site: {open_on_site}, at most {} (maxSockets, TIPPEN_MAX_SOCKETS_PER_SITE); close one first",
                self.per_site
            ));
        }
        if open_from_address >= self.per_address {
            return refuse(format!(
                "too many open sockets from this address: {open_from_address}, at most {} (maxSocketsPerAddress, TIPPEN_MAX_SOCKETS_PER_ADDRESS); close one first",
                self.per_address
            ));
        }
        Ok(())
    }

    /// A fresh budget for a new dashboard socket: full.
    pub fn snapshot_budget(&self) -> SnapshotBudget {
        SnapshotBudget {
            per_minute: self.snapshots_per_minute,
            tat: 0,
        }
    }
}

/// One dashboard socket's snapshot budget: a token bucket of `per_minute` tokens refilled
/// evenly over a minute (GCRA: one number, the "theoretical arrival time"). Small and
/// serializable (`{"perMinute":30,"tat":…}`), for the host to keep with the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotBudget {
    /// Snapshots a minute (and at most this many at once).
    pub per_minute: u32,
    /// When the bucket is full again, in milliseconds since the epoch (0: full).
    pub tat: i64,
}

impl Default for SnapshotBudget {
    /// The default limit's budget, full.
    fn default() -> Self {
        SnapshotBudget {
            per_minute: Limits::default().snapshots_per_minute,
            tat: 0,
        }
    }
}

impl SnapshotBudget {
    const MINUTE_MS: i64 = 60_000;

    fn interval_ms(&self) -> i64 {
        (Self::MINUTE_MS / i64::from(self.per_minute.max(1))).max(1)
    }

    /// Spends one snapshot at `now`: `Ok` when the budget allows it, else `Err` with how long
    /// until it would (nothing is spent then).
    pub fn spend(&mut self, now: Timestamp) -> Result<(), Duration> {
        let now = now.as_millis();
        let interval = self.interval_ms();
        let capacity = interval * i64::from(self.per_minute.max(1));
        let next = self.tat.max(now) + interval;
        if next - now > capacity {
            let wait = u64::try_from(next - now - capacity).unwrap_or(0);
            return Err(Duration::from_millis(wait));
        }
        self.tat = next;
        Ok(())
    }
}

/// The tag of a client address for a host that keeps it with a socket (the Worker's socket
/// tag, the hashed address on Lambda's connection items): a hex SHA-256 of the address in a
/// domain of its own, cut to 32 hex digits, so the raw address is never persisted. (A hash of
/// an address space this small is a pseudonym, not a secret: it is kept only as long as the
/// socket.)
pub fn address_tag(ip: IpAddr) -> String {
    let digest = Sha256::digest(format!("tippen-socket-address:{}", ip.to_canonical()));
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl Tippen {
    /// The socket quotas for `site` (the host's limits, the site's own over them).
    pub fn socket_quotas(&self, site: &Site) -> SocketQuotas {
        SocketQuotas::of(&self.config().limits, site)
    }

    /// The socket quotas of the site a socket was authorized for
    /// ([`SocketRole::site`]: by its key or by a ticket), read from the store; the host's
    /// when the site cannot be read (logged).
    pub async fn socket_quotas_of(&self, site: &crate::SiteId) -> SocketQuotas {
        match self.store().site(site).await {
            Ok(Some(site)) => self.socket_quotas(&site),
            Ok(None) => SocketQuotas::of_host(&self.config().limits),
            Err(e) => {
                tracing::warn!(%site, error = %e, "site unreadable; the host's socket quotas apply");
                SocketQuotas::of_host(&self.config().limits)
            }
        }
    }

    /// [`socket_frame`](Self::socket_frame) within a dashboard's snapshot budget: a
    /// `GET_VISITORS` from a dashboard spends one snapshot of `budget` (which the host keeps
    /// with the socket and stores again when it changed); one over the budget is answered
    /// with an `ERROR` naming the quota and when to ask again, and nothing else is done.
    /// Every other frame, and every visitor-channel frame, is
    /// [`socket_frame`](Self::socket_frame)'s.
    pub async fn socket_frame_within(
        &self,
        role: &SocketRole,
        budget: &mut SnapshotBudget,
        text: &str,
    ) -> Result<Effects, ServiceError> {
        if let SocketRole::Dashboard { site } = role
            && text.len() <= self.config().limits.max_frame_bytes
            && matches!(
                serde_json::from_str::<ClientMessage>(text),
                Ok(ClientMessage::GetVisitors)
            )
            && let Err(wait) = budget.spend(self.now())
        {
            let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            let error = format!(
                "snapshot quota: at most {} GET_VISITORS a minute per dashboard (snapshotsPerMinute, TIPPEN_SNAPSHOTS_PER_MINUTE); retry in {secs} s",
                budget.per_minute
            );
            tracing::debug!(site = %site, "dashboard over its snapshot quota");
            let reply = self.reply(site, ServerMessage::Error { error }).await?;
            return Ok(Effects {
                site: Some(site.clone()),
                ..Effects::reply(reply.to_json())
            });
        }
        self.socket_frame(role, text).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site::new("a", "A", "pk_a", "sk_a")
    }

    #[test]
    fn a_site_overrides_the_host_limits() {
        let limits = Limits::default();
        let q = SocketQuotas::of(&limits, &site());
        assert_eq!(
            (q.per_site, q.per_address, q.snapshots_per_minute),
            (5_000, 50, 30)
        );
        let own = site().with_socket_quotas(QuotaOverrides {
            max_sockets: Some(3),
            max_sockets_per_address: None,
            snapshots_per_minute: Some(6),
        });
        let q = SocketQuotas::of(&limits, &own);
        assert_eq!(
            (q.per_site, q.per_address, q.snapshots_per_minute),
            (3, 50, 6)
        );
    }

    #[test]
    fn admit_names_the_quota() {
        let q = SocketQuotas {
            per_site: 3,
            per_address: 2,
            snapshots_per_minute: 1,
        };
        assert!(q.admit(2, 1).is_ok());
        let body = |r: Response<Bytes>| {
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
            let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
            v["error"].as_str().unwrap().to_owned()
        };
        assert!(body(q.admit(3, 0).unwrap_err()).contains("maxSockets,"));
        assert!(body(q.admit(0, 2).unwrap_err()).contains("maxSocketsPerAddress"));
    }

    #[test]
    fn the_budget_refills_evenly_and_refusals_cost_nothing() {
        let mut b = SocketQuotas {
            per_site: 1,
            per_address: 1,
            snapshots_per_minute: 6,
        }
        .snapshot_budget();
        let at = Timestamp::from_millis;
        for _ in 0..6 {
            assert!(b.spend(at(100_000)).is_ok());
        }
        assert_eq!(b.spend(at(100_000)), Err(Duration::from_secs(10)));
        for _ in 0..50 {
            assert!(b.spend(at(105_000)).is_err());
        }
        assert!(b.spend(at(110_000)).is_ok());
        assert!(b.spend(at(110_000)).is_err());
        // A quiet minute: full again, never more.
        for _ in 0..6 {
            assert!(b.spend(at(300_000)).is_ok());
        }
        assert!(b.spend(at(300_000)).is_err());
        // It survives serialization (the Worker's attachment, Lambda's item).
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<SnapshotBudget>(&json).unwrap(), b);
    }

    #[test]
    fn address_tags_are_stable_and_hide_the_address() {
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(address_tag(a), address_tag(mapped));
        assert_eq!(address_tag(a).len(), 32);
        assert!(!address_tag(a).contains("203"));
        assert_ne!(address_tag(a), address_tag("203.0.113.8".parse().unwrap()));
    }
}
