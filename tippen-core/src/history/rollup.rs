//! Rollups: per-site hourly and per-company daily counters that the core folds each closed
//! visit into ([`Rollup::fold`]), so the companies and analytics answers over a window read a
//! few hundred small records instead of every visit. The store keeps them with a conditional
//! write ([`HistoryStore::save_rollup`](super::HistoryStore::save_rollup)); the logic is all
//! here, so every store gets the same rollups.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::visit::{Visit, VisitCompany};
use crate::clock::Timestamp;
use crate::protocol::InviteState;

/// One hour, in milliseconds: the span of a site rollup.
pub const HOUR_MS: i64 = 3_600_000;
/// One day, in milliseconds: the span of a company rollup.
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// How many entries each top list of a rollup keeps.
pub const TOP_ENTRIES: usize = 20;
/// Upper bounds (seconds, exclusive) of the visit duration histogram's buckets; the last
/// bucket holds everything longer.
pub const DURATION_BOUNDS_S: [u64; 14] = [
    1, 5, 10, 20, 30, 60, 120, 180, 300, 600, 900, 1800, 3600, 7200,
];

/// What a rollup counts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "company")]
pub enum RollupScope {
    /// Every visit of the site, per hour.
    Site,
    /// The visits of one company (by [`VisitCompany::key`]), per day.
    Company(String),
}

impl RollupScope {
    /// `"site"` or `"company"`: the kind, for stores that key by it.
    pub fn kind(&self) -> &'static str {
        match self {
            RollupScope::Site => "site",
            RollupScope::Company(_) => "company",
        }
    }

    /// The company key (`""` for the site scope).
    pub fn company(&self) -> &str {
        match self {
            RollupScope::Site => "",
            RollupScope::Company(c) => c,
        }
    }

    /// The scope of `kind` and `company` as [`kind`](Self::kind) and
    /// [`company`](Self::company) return them (for stores reading their columns back).
    pub fn from_parts(kind: &str, company: &str) -> Option<RollupScope> {
        match kind {
            "site" => Some(RollupScope::Site),
            "company" => Some(RollupScope::Company(company.to_owned())),
            _ => None,
        }
    }

    /// The span of one bucket, in milliseconds.
    pub fn span_ms(&self) -> i64 {
        match self {
            RollupScope::Site => HOUR_MS,
            RollupScope::Company(_) => DAY_MS,
        }
    }

    /// The start of the bucket holding `at`.
    pub fn bucket_of(&self, at: Timestamp) -> Timestamp {
        let span = self.span_ms();
        Timestamp::from_millis(at.as_millis().div_euclid(span) * span)
    }
}

/// The key of one rollup record: its scope and the start of its bucket.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollupKey {
    /// What it counts.
    pub scope: RollupScope,
    /// The start of its bucket (a multiple of the scope's span).
    pub bucket: Timestamp,
}

impl RollupKey {
    /// The keys a visit is folded into: the site's hour of its start, and its company's day
    /// (identified visits only). Bots are folded into nothing but the site's bot count.
    pub fn of_visit(visit: &Visit) -> Vec<RollupKey> {
        let mut keys = vec![RollupKey {
            scope: RollupScope::Site,
            bucket: RollupScope::Site.bucket_of(visit.started_at),
        }];
        if let Some(company) = visit.company.as_ref().filter(|_| !visit.is_bot) {
            let scope = RollupScope::Company(company.key());
            keys.push(RollupKey {
                bucket: scope.bucket_of(visit.started_at),
                scope,
            });
        }
        keys
    }
}

/// Which rollups a query wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollupSelect {
    /// The site's hourly rollups.
    Site,
    /// Every company's daily rollups.
    Companies,
    /// One company's daily rollups (by [`VisitCompany::key`]).
    Company(String),
}

/// A range of rollups: `from <= bucket < to` of the selected scope(s).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupQuery {
    /// Which scope(s).
    pub select: RollupSelect,
    /// First bucket start included.
    pub from: Timestamp,
    /// Bucket starts before this.
    pub to: Timestamp,
}

impl RollupQuery {
    /// Whether `key` is in the range.
    pub fn contains(&self, key: &RollupKey) -> bool {
        let scope_ok = match (&self.select, &key.scope) {
            (RollupSelect::Site, RollupScope::Site) => true,
            (RollupSelect::Companies, RollupScope::Company(_)) => true,
            (RollupSelect::Company(want), RollupScope::Company(c)) => want == c,
            _ => false,
        };
        scope_ok && self.from <= key.bucket && key.bucket < self.to
    }
}

/// Adding a visit to a rollup, or taking an erased one out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// A newly closed visit.
    Add,
    /// An erased visit: its counts come out (the visitor sketch cannot forget, and first and
    /// last seen stay).
    Remove,
}

/// The counters of one scope over one bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollup {
    /// Scope and bucket.
    pub key: RollupKey,
    /// Visits (bots excluded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub visits: u64,
    /// Bot visits.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bot_visits: u64,
    /// Page views.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub page_views: u64,
    /// Visits with at most one page.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bounces: u64,
    /// Visits of an identified company.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub identified: u64,
    /// Visits of returning visitors.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub returning: u64,
    /// Sum of visit durations.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total_ms: u64,
    /// Visit duration histogram over [`DURATION_BOUNDS_S`] (one more bucket than bounds; site
    /// scope only, empty for a company).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub durations: Vec<u64>,
    /// Earliest visit start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_at: Option<Timestamp>,
    /// Latest visit end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<Timestamp>,
    /// Distinct visitors (a HyperLogLog sketch).
    pub visitors: Sketch,
    /// Top pages (every page of a visit, once per visit).
    #[serde(default, skip_serializing_if = "TopCounts::is_empty")]
    pub pages: TopCounts,
    /// Top referrer hosts (site scope).
    #[serde(default, skip_serializing_if = "TopCounts::is_empty")]
    pub referrers: TopCounts,
    /// Top UTM sources (site scope).
    #[serde(default, skip_serializing_if = "TopCounts::is_empty")]
    pub utm_sources: TopCounts,
    /// Top countries (site scope).
    #[serde(default, skip_serializing_if = "TopCounts::is_empty")]
    pub countries: TopCounts,
    /// Top companies by visits (site scope).
    #[serde(default, skip_serializing_if = "TopCounts::is_empty")]
    pub companies: TopCounts,
    /// Invites sent during the visits.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub invites_sent: u64,
    /// Of those, accepted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub invites_accepted: u64,
    /// The company (company scope: its latest data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<VisitCompany>,
}

impl Rollup {
    /// An empty rollup for `key`.
    pub fn new(key: RollupKey) -> Rollup {
        let (precision, histogram) = match key.scope {
            RollupScope::Site => (10, DURATION_BOUNDS_S.len() + 1),
            RollupScope::Company(_) => (6, 0),
        };
        Rollup {
            key,
            visits: 0,
            bot_visits: 0,
            page_views: 0,
            bounces: 0,
            identified: 0,
            returning: 0,
            total_ms: 0,
            durations: vec![0; histogram],
            first_at: None,
            last_at: None,
            visitors: Sketch::new(precision),
            pages: TopCounts::default(),
            referrers: TopCounts::default(),
            utm_sources: TopCounts::default(),
            countries: TopCounts::default(),
            companies: TopCounts::default(),
            invites_sent: 0,
            invites_accepted: 0,
            company: None,
        }
    }

    /// Adds `visit` to (or takes it out of) the counters.
    pub fn fold(&mut self, visit: &Visit, how: Fold) {
        let add = how == Fold::Add;
        let step = |n: &mut u64, by: u64| {
            *n = if add {
                n.saturating_add(by)
            } else {
                n.saturating_sub(by)
            }
        };
        if visit.is_bot {
            step(&mut self.bot_visits, 1);
            return;
        }
        step(&mut self.visits, 1);
        step(
            &mut self.page_views,
            visit.pages.len() as u64 + u64::from(visit.more_pages),
        );
        step(&mut self.bounces, u64::from(visit.is_bounce()));
        step(&mut self.identified, u64::from(visit.company.is_some()));
        step(&mut self.returning, u64::from(visit.is_returning()));
        step(&mut self.total_ms, visit.duration_ms);
        if self.key.scope == RollupScope::Site {
            if self.durations.len() != DURATION_BOUNDS_S.len() + 1 {
                self.durations = vec![0; DURATION_BOUNDS_S.len() + 1];
            }
            step(&mut self.durations[duration_bucket(visit.duration_ms)], 1);
        }
        let n: i64 = if add { 1 } else { -1 };
        let mut seen_pages: Vec<&str> = Vec::with_capacity(visit.pages.len());
        for page in &visit.pages {
            if !seen_pages.contains(&&*page.path) {
                seen_pages.push(&page.path);
                self.pages.add(&page.path, n);
            }
        }
        let invites = visit.invites.len() as u64;
        let accepted = visit
            .invites
            .iter()
            .filter(|i| i.state == InviteState::Accepted)
            .count() as u64;
        step(&mut self.invites_sent, invites);
        step(&mut self.invites_accepted, accepted);
        match &self.key.scope {
            RollupScope::Site => {
                if let Some(host) = visit.referrer_host() {
                    self.referrers.add(&host, n);
                }
                if let Some(source) = &visit.utm.source {
                    self.utm_sources.add(source, n);
                }
                if let Some(country) = &visit.place.country {
                    self.countries.add(country, n);
                }
                if let Some(company) = &visit.company {
                    self.companies.add(&company.key(), n);
                }
            }
            RollupScope::Company(_) => {
                if add && visit.company.is_some() {
                    self.company.clone_from(&visit.company);
                }
            }
        }
        if add {
            self.visitors.insert(&visit.visitor_id);
            self.first_at = Some(
                self.first_at
                    .map_or(visit.started_at, |f| f.min(visit.started_at)),
            );
            self.last_at = Some(
                self.last_at
                    .map_or(visit.ended_at, |l| l.max(visit.ended_at)),
            );
        }
    }

    /// Adds another rollup's counters to these (for folding hours into days, or the buckets
    /// of a window into one total). The key stays.
    pub fn merge(&mut self, other: &Rollup) {
        self.visits += other.visits;
        self.bot_visits += other.bot_visits;
        self.page_views += other.page_views;
        self.bounces += other.bounces;
        self.identified += other.identified;
        self.returning += other.returning;
        self.total_ms += other.total_ms;
        if self.durations.len() < other.durations.len() {
            self.durations.resize(other.durations.len(), 0);
        }
        for (i, n) in other.durations.iter().enumerate() {
            self.durations[i] += n;
        }
        self.first_at = match (self.first_at, other.first_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_at = match (self.last_at, other.last_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.visitors.merge(&other.visitors);
        self.pages.merge(&other.pages);
        self.referrers.merge(&other.referrers);
        self.utm_sources.merge(&other.utm_sources);
        self.countries.merge(&other.countries);
        self.companies.merge(&other.companies);
        self.invites_sent += other.invites_sent;
        self.invites_accepted += other.invites_accepted;
        if other.company.is_some()
            && (self.company.is_none() || other.key.bucket >= self.key.bucket)
        {
            self.company.clone_from(&other.company);
        }
    }

    /// The median visit duration, in milliseconds, estimated from the histogram (linear
    /// within the bucket holding the median); `None` without visits.
    pub fn median_duration_ms(&self) -> Option<u64> {
        let total: u64 = self.durations.iter().sum();
        if total == 0 {
            return None;
        }
        let half = total.div_ceil(2);
        let mut seen = 0;
        for (i, n) in self.durations.iter().enumerate() {
            if seen + n >= half {
                let lo = if i == 0 {
                    0
                } else {
                    DURATION_BOUNDS_S[i - 1] * 1000
                };
                let hi = DURATION_BOUNDS_S
                    .get(i)
                    .map_or(lo.saturating_mul(2), |b| b * 1000);
                let into = (half - seen) as f64 / (*n).max(1) as f64;
                return Some(lo + ((hi - lo) as f64 * into) as u64);
            }
            seen += n;
        }
        None
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn duration_bucket(ms: u64) -> usize {
    DURATION_BOUNDS_S
        .iter()
        .position(|b| ms < b * 1000)
        .unwrap_or(DURATION_BOUNDS_S.len())
}

/// A bounded list of the most frequent keys with their counts (the space-saving algorithm:
/// a new key past the bound replaces the least counted one and inherits its count, so heavy
/// keys are never lost; counts of the tail are approximate).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TopCounts(pub Vec<(String, u64)>);

impl TopCounts {
    /// Counts `key` `n` more times (negative: fewer; an entry reaching zero goes).
    pub fn add(&mut self, key: &str, n: i64) {
        if let Some(i) = self.0.iter().position(|(k, _)| k == key) {
            let count = &mut self.0[i].1;
            *count = count.saturating_add_signed(n);
            if *count == 0 {
                self.0.remove(i);
            }
        } else if n > 0 {
            if self.0.len() < TOP_ENTRIES {
                self.0.push((key.to_owned(), n as u64));
            } else if let Some(min) = self.0.iter_mut().min_by_key(|(_, c)| *c) {
                *min = (key.to_owned(), min.1 + n as u64);
            }
        }
        self.0
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    }

    /// Adds every count of `other` (the result keeps at most [`TOP_ENTRIES`] entries).
    pub fn merge(&mut self, other: &TopCounts) {
        for (k, n) in &other.0 {
            match self.0.iter_mut().find(|(key, _)| key == k) {
                Some(e) => e.1 += n,
                None => self.0.push((k.clone(), *n)),
            }
        }
        self.0
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.0.truncate(TOP_ENTRIES);
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `n` most counted keys, most first.
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        self.0.iter().take(n).cloned().collect()
    }
}

/// A HyperLogLog sketch of distinct ids (precision `p`: 2^p one-byte registers; the standard
/// error is about 1.04 / sqrt(2^p), and small counts are exact in practice through linear
/// counting). Mergeable, so hourly sketches add up to a window's distinct visitors.
/// Serialized as a short string: sparse (`s<p>:` and 4 hex digits per set register) while
/// that is shorter than dense (`d<p>:` and 2 hex digits per register).
#[derive(Clone, PartialEq, Eq)]
pub struct Sketch {
    p: u8,
    registers: Vec<u8>,
}

impl fmt::Debug for Sketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sketch(p={}, ~{})", self.p, self.estimate())
    }
}

impl Sketch {
    /// An empty sketch of precision `p` (clamped to 4..=14).
    pub fn new(p: u8) -> Sketch {
        let p = p.clamp(4, 14);
        Sketch {
            p,
            registers: vec![0; 1 << p],
        }
    }

    /// Counts `id`.
    pub fn insert(&mut self, id: &str) {
        let digest = Sha256::digest(id.as_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&digest[..8]);
        let h = u64::from_be_bytes(b);
        let index = (h >> (64 - self.p)) as usize;
        let rest = h << self.p;
        let rank = (rest.leading_zeros() as u8).min(64 - self.p) + 1;
        if let Some(r) = self.registers.get_mut(index) {
            *r = (*r).max(rank);
        }
    }

    /// Adds `other`'s ids (of any precision: the finer is folded to the coarser).
    pub fn merge(&mut self, other: &Sketch) {
        if other.p < self.p {
            *self = self.fold_to(other.p);
        }
        let other = if other.p > self.p {
            other.fold_to(self.p)
        } else {
            other.clone()
        };
        for (a, b) in self.registers.iter_mut().zip(&other.registers) {
            *a = (*a).max(*b);
        }
    }

    fn fold_to(&self, p: u8) -> Sketch {
        let mut out = Sketch::new(p);
        let shift = self.p - p;
        for (i, &r) in self.registers.iter().enumerate() {
            if r == 0 {
                continue;
            }
            let j = i >> shift;
            // The dropped index bits become leading bits of the rest.
            let low = i & ((1 << shift) - 1);
            let rank = if low == 0 {
                r + shift
            } else {
                (shift - (usize::BITS - low.leading_zeros()) as u8) + 1
            };
            out.registers[j] = out.registers[j].max(rank);
        }
        out
    }

    /// The estimated number of distinct ids.
    pub fn estimate(&self) -> u64 {
        let m = self.registers.len() as f64;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        let sum: f64 = self
            .registers
            .iter()
            .map(|&r| 2f64.powi(-i32::from(r)))
            .sum();
        let alpha = match self.registers.len() {
            16 => 0.673,
            32 => 0.697,
            64 => 0.709,
            _ => 0.7213 / (1.0 + 1.079 / m),
        };
        let raw = alpha * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }
}

impl Serialize for Sketch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let set: Vec<(usize, u8)> = self
            .registers
            .iter()
            .enumerate()
            .filter(|(_, r)| **r != 0)
            .map(|(i, r)| (i, *r))
            .collect();
        let out = if set.len() * 4 < self.registers.len() * 2 {
            use std::fmt::Write as _;
            let mut out = String::with_capacity(4 + set.len() * 6);
            let _ = write!(out, "s{}:", self.p);
            for (i, r) in set {
                // 14-bit index, 6-bit rank would not fit 16 bits for p > 10: use 4 hex digits
                // of index and 2 of rank when p > 10. (Written in place: no string per
                // register, as this runs on every rollup save.)
                let _ = if self.p > 10 {
                    write!(out, "{i:04x}{r:02x}")
                } else {
                    write!(out, "{:04x}", (i << 6) | usize::from(r))
                };
            }
            out
        } else {
            format!("d{}:{}", self.p, hex::encode(&self.registers))
        };
        s.serialize_str(&out)
    }
}

impl<'de> Deserialize<'de> for Sketch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sketch, D::Error> {
        use serde::de::Error;
        let s = String::deserialize(d)?;
        let bad = || D::Error::custom(format!("bad sketch {s:?}"));
        let (head, body) = s.split_once(':').ok_or_else(bad)?;
        let p: u8 = head.get(1..).and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        if !(4..=14).contains(&p) {
            return Err(bad());
        }
        let mut sketch = Sketch::new(p);
        match head.as_bytes().first() {
            Some(b'd') => {
                let regs = hex::decode(body).map_err(|_| bad())?;
                if regs.len() != sketch.registers.len() {
                    return Err(bad());
                }
                sketch.registers = regs;
            }
            Some(b's') => {
                let width = if p > 10 { 6 } else { 4 };
                if body.len() % width != 0 || !body.is_ascii() {
                    return Err(bad());
                }
                for chunk in body.as_bytes().chunks(width) {
                    let chunk = std::str::from_utf8(chunk).map_err(|_| bad())?;
                    let (i, r) = if p > 10 {
                        let i = usize::from_str_radix(&chunk[..4], 16).map_err(|_| bad())?;
                        let r = u8::from_str_radix(&chunk[4..], 16).map_err(|_| bad())?;
                        (i, r)
                    } else {
                        let v = usize::from_str_radix(chunk, 16).map_err(|_| bad())?;
                        (v >> 6, (v & 63) as u8)
                    };
                    *sketch.registers.get_mut(i).ok_or_else(bad)? = r;
                }
            }
            _ => return Err(bad()),
        }
        Ok(sketch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sketches_count_merge_and_round_trip() {
        let mut a = Sketch::new(10);
        let mut b = Sketch::new(6);
        for i in 0..3 {
            a.insert(&format!("v{i}"));
        }
        assert_eq!(a.estimate(), 3);
        for i in 0..5000 {
            b.insert(&format!("w{i}"));
        }
        let est = b.estimate() as f64;
        assert!((est - 5000.0).abs() / 5000.0 < 0.4, "estimate {est}");
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.starts_with("\"s10:"), "{json}");
        assert_eq!(serde_json::from_str::<Sketch>(&json).unwrap(), a);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<Sketch>(&json).unwrap(), b);
        let mut big = Sketch::new(10);
        for i in 0..20_000 {
            big.insert(&format!("x{i}"));
        }
        let json = serde_json::to_string(&big).unwrap();
        assert!(json.starts_with("\"d10:"));
        assert_eq!(serde_json::from_str::<Sketch>(&json).unwrap(), big);
        let est = big.estimate() as f64;
        assert!((est - 20_000.0).abs() / 20_000.0 < 0.1, "estimate {est}");
        // Merging a finer sketch into a coarser one keeps (about) the union.
        let mut union = b.clone();
        union.merge(&a);
        let est = union.estimate() as f64;
        assert!((est - 5003.0).abs() / 5003.0 < 0.4, "estimate {est}");
        let mut same = a.clone();
        same.merge(&a);
        assert_eq!(same.estimate(), 3);
    }

    #[test]
    fn top_counts_keep_the_heavy_keys() {
        let mut t = TopCounts::default();
        for i in 0..100 {
            t.add(&format!("k{i}"), 1);
            t.add("heavy", 1);
        }
        assert_eq!(t.0.len(), TOP_ENTRIES);
        assert_eq!(t.top(1), [("heavy".to_owned(), 100)]);
        t.add("heavy", -100);
        assert!(t.0.iter().all(|(k, _)| k != "heavy"));
    }

    #[test]
    fn the_median_comes_from_the_histogram() {
        let mut r = Rollup::new(RollupKey {
            scope: RollupScope::Site,
            bucket: Timestamp::EPOCH,
        });
        assert_eq!(r.median_duration_ms(), None);
        r.durations[duration_bucket(45_000)] += 3;
        let m = r.median_duration_ms().unwrap();
        assert!((30_000..60_000).contains(&m), "{m}");
    }
}
