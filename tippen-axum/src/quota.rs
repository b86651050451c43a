//! The socket counts behind the core's socket quotas ([`tippen_core::quota`]): open sockets
//! per site and per client address in this process, each held by a [`SocketSlot`] that frees
//! its place when the socket ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tippen_core::SiteId;
use tippen_core::quota::SocketQuotas;

/// Open sockets per site and per client address (across sites) in this process.
#[derive(Debug, Default)]
pub(crate) struct SocketCounts {
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    per_site: HashMap<SiteId, usize>,
    per_address: HashMap<IpAddr, usize>,
}

impl SocketCounts {
    /// Takes a place for a socket of `site` from `address` when the core's `quotas` allow it
    /// (checked and counted at once, so concurrent upgrades cannot overshoot); else the 429
    /// to answer instead of upgrading.
    #[allow(clippy::result_large_err)]
    pub(crate) fn open(
        self: &Arc<Self>,
        quotas: &SocketQuotas,
        site: &SiteId,
        address: Option<IpAddr>,
    ) -> Result<SocketSlot, http::Response<Bytes>> {
        let address = address.map(|a| a.to_canonical());
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let on_site = open.per_site.get(site).copied().unwrap_or(0);
        let from_address = address
            .and_then(|a| open.per_address.get(&a).copied())
            .unwrap_or(0);
        quotas.admit(on_site, from_address)?;
        *open.per_site.entry(site.clone()).or_default() += 1;
        if let Some(a) = address {
            *open.per_address.entry(a).or_default() += 1;
        }
        Ok(SocketSlot {
            counts: self.clone(),
            site: site.clone(),
            address,
        })
    }

    /// Open sockets of `site` and from `address` (for tests).
    #[cfg(test)]
    fn held(&self, site: &SiteId, address: IpAddr) -> (usize, usize) {
        let open = self.open.lock().unwrap();
        (
            open.per_site.get(site).copied().unwrap_or(0),
            open.per_address.get(&address).copied().unwrap_or(0),
        )
    }
}

/// One open socket's place in the counts; dropping it frees the place (an entry that falls
/// to zero is removed, so nothing grows with addresses or sites gone).
#[derive(Debug)]
pub(crate) struct SocketSlot {
    counts: Arc<SocketCounts>,
    site: SiteId,
    address: Option<IpAddr>,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|e| e.into_inner());
        fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
            if let Some(n) = map.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
        let site = self.site.clone();
        release(&mut open.per_site, &site);
        if let Some(a) = self.address {
            release(&mut open.per_address, &a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_taken_up_to_the_quotas_and_freed_on_drop() {
        let counts = Arc::new(SocketCounts::default());
        let q = SocketQuotas {
            per_site: 3,
            per_address: 2,
            snapshots_per_minute: 1,
        };
        let (a, b) = (SiteId::from("a"), SiteId::from("b"));
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        let other: IpAddr = "203.0.113.2".parse().unwrap();
        let s1 = counts.open(&q, &a, Some(ip)).unwrap();
        let _s2 = counts.open(&q, &b, Some(ip)).unwrap();
        // The address counts across sites.
        assert_eq!(counts.open(&q, &a, Some(ip)).unwrap_err().status(), 429);
        let _s3 = counts.open(&q, &a, Some(other)).unwrap();
        let _s4 = counts.open(&q, &a, None).unwrap();
        assert_eq!(counts.open(&q, &a, None).unwrap_err().status(), 429);
        drop(s1);
        assert_eq!(counts.held(&a, ip), (2, 1));
        let _s5 = counts.open(&q, &a, Some(ip)).unwrap();
        drop((_s2, _s3, _s4, _s5));
        let open = counts.open.lock().unwrap();
        assert!(open.per_site.is_empty() && open.per_address.is_empty());
    }
}
