//! [`DynamoHistory`]: the core's [`HistoryStore`] (visit history) on DynamoDB.
//!
//! # Table design
//!
//! The history lives in the live store's table by default (`TIPPEN_HISTORY_TABLE` names it;
//! the template passes the same table), under its own key prefixes, with the same `pk`/`sk`
//! string keys, `doc` (the record as JSON), `v` (the version, rollups only) and `ttl`
//! attributes, and **no new index**: every query below is a `Query` on one partition or a
//! `GetItem`/`BatchGetItem`, strongly consistent. (A second table with the same key schema
//! works as well: [`DynamoHistory::create_table`].) Time in a sort key is `ts`: the epoch
//! milliseconds offset by 2^63 as 20 decimal digits, so string order is time order.
//!
//! | record | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | visit | `HV#<site>` | `<ts start>#<visit id>` | `doc`, `hvis` (visitor), `hco` (company part, identified visits), `ttl` |
//! | visit by id | `HI#<site>#<visit id>` | `I` | `hsk` (the visit's `sk`), `hvis`, `hco`, `ttl` |
//! | visit by visitor | `HU#<site>#<visitor id>` | `<ts start>#<visit id>` | `ttl` |
//! | visit by company | `HC#<site>#<company part>` | `<ts start>#<visit id>` | `ttl` |
//! | site rollup (hourly) | `HRS#<site>` | `<ts bucket>` | `doc`, `v`, `wt`, `ttl` |
//! | company rollup (daily) | `HRC#<site>` | `<ts bucket>#<company part>` | `doc`, `v`, `wt`, `ttl` |
//!
//! The company part is the company key ([`RollupScope::company`] for rollups, the
//! [`VisitFilter::company`](tippen_core::history::VisitFilter::company) key in ASCII lower case for the pointers, which the filter compares
//! case-insensitively), or `~` and its SHA-256 when longer than 400 bytes (a key must fit
//! DynamoDB's 1 KiB sort key). Site ids never contain `#` (they are checked at
//! configuration), so a partition key decodes unambiguously.
//!
//! # How each method reads and writes
//!
//! - [`put_visit`](HistoryStore::put_visit): one `BatchWriteItem` of the visit, its visitor
//!   pointer and (identified visits) its company pointer, then a `PutItem` of the id pointer
//!   with `ReturnValues: ALL_OLD`: an old id pointer means the visit was there
//!   ([`PutVisit::Replaced`]). Written last, so a crash before it makes the retried close an
//!   insert (folded once), never a replacement that was never folded. A replaced visit that
//!   moved (another start, visitor or company under the same id: the old pointer names where
//!   it was) has its old items deleted.
//! - [`visits`](HistoryStore::visits): a `Query` newest first (`ScanIndexForward: false`) of
//!   `sk BETWEEN <ts from> AND min(<ts to>, <cursor's sk>)` on the visit partition, or, with a
//!   visitor (else a company) filter, on that pointer partition followed by `BatchGetItem` of
//!   the visits; every visit is checked with [`VisitQuery::matches`] (the other filters: page,
//!   country), page after page until `limit`. The cursor is exactly the sort key, so paging
//!   costs no extra reads.
//! - [`visit`](HistoryStore::visit): `GetItem` of the id pointer, then of the visit.
//! - [`erase_visitor`](HistoryStore::erase_visitor): `Query` of the visitor pointers,
//!   `BatchGetItem` of the visits, `BatchWriteItem` deleting visits, id and company pointers,
//!   then the visitor pointers (last: a crash leaves them for the retry to find).
//! - [`rollup`](HistoryStore::rollup) / [`save_rollup`](HistoryStore::save_rollup): `GetItem`
//!   and a `PutItem` conditional on `v` ([`DynamoStore::put_versioned`], as the live records).
//! - [`rollups`](HistoryStore::rollups): a range `Query` of `HRS#` (site) or `HRC#` (every
//!   company: the bucket leads the sort key); one company's days are `BatchGetItem` of their
//!   keys (at most 400 buckets, else a range query).
//! - [`purge`](HistoryStore::purge): `Query` of the visits (keys and pointer attributes only)
//!   and rollups before the cutoff, `BatchWriteItem` deletes.
//!
//! # Retention and TTL
//!
//! With [`DynamoHistory::with_retention`] (the host gives each configured site's
//! [`Site::history_retention`](tippen_core::Site::history_retention)) every item of the site carries `ttl` = its
//! start (visits) or bucket (rollups) plus the retention: DynamoDB's TTL deletes it then, at
//! no write cost, exactly when [`purge`](HistoryStore::purge) would. TTL deletion can lag for days, so the
//! purge (the sweep function, hourly) still deletes what is past the cutoff and reads never
//! rely on TTL; a pointer left by a visit TTL already deleted is skipped. A retention raised
//! later applies to new items only.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest, ReturnValue, WriteRequest,
};
use sha2::{Digest, Sha256};
use tippen_core::history::{
    HistoryStore, PutVisit, Rollup, RollupKey, RollupQuery, RollupScope, RollupSelect, Visit,
    VisitCompany, VisitQuery,
};
use tippen_core::{SiteId, StoreError, Timestamp, Version, Versioned};

use crate::store::{DynamoStore, Item, attr, backend, decode, encode, get_n, get_s, n, s};

/// Attributes of history items (besides `pk`, `sk`, `doc`, `v`, `ttl`).
mod hattr {
    /// The visitor of a visit item.
    pub const VISITOR: &str = "hvis";
    /// The company part of a visit item (identified visits).
    pub const COMPANY: &str = "hco";
    /// The visit's sort key, on its id pointer.
    pub const VISIT_SK: &str = "hsk";
}

/// Longest company key kept as it is in a key; longer ones are hashed.
const MAX_KEY_PART: usize = 400;

/// One company's rollups are read by key up to this many buckets (else by range).
const MAX_ENUMERATED_BUCKETS: i128 = 400;

/// `BatchGetItem` takes at most this many keys.
const BATCH_GET: usize = 100;

/// `BatchWriteItem` takes at most this many requests.
const BATCH_WRITE: usize = 25;

/// Rounds of a batch call for its unprocessed keys (throttling) before giving up.
const BATCH_ROUNDS: u32 = 8;

/// Time as a sort key part: epoch milliseconds offset by 2^63, 20 digits (string order is
/// time order over every `i64`).
fn ts(t: Timestamp) -> String {
    format!(
        "{:020}",
        (i128::from(t.as_millis()) - i128::from(i64::MIN)) as u64
    )
}

fn visit_sk(started_at: Timestamp, visit_id: &str) -> String {
    format!("{}#{visit_id}", ts(started_at))
}

/// The visit id in a visit sort key.
fn id_of_sk(sk: &str) -> Option<&str> {
    sk.split_once('#').map(|(_, id)| id)
}

/// A company key as a key part (hashed when too long for a key).
fn key_part(key: &str) -> String {
    if key.len() <= MAX_KEY_PART {
        key.to_owned()
    } else {
        format!("~{}", hex::encode(Sha256::digest(key.as_bytes())))
    }
}

/// The pointer key of a visit's company ([`VisitFilter::company`](tippen_core::history::VisitFilter::company) is case-insensitive).
fn company_part(company: &VisitCompany) -> String {
    key_part(&company.key().to_ascii_lowercase())
}

fn visits_pk(site: &SiteId) -> String {
    format!("HV#{site}")
}

fn id_pk(site: &SiteId, visit_id: &str) -> String {
    format!("HI#{site}#{visit_id}")
}

fn visitor_pk(site: &SiteId, visitor_id: &str) -> String {
    format!("HU#{site}#{visitor_id}")
}

fn company_pk(site: &SiteId, part: &str) -> String {
    format!("HC#{site}#{part}")
}

fn site_rollups_pk(site: &SiteId) -> String {
    format!("HRS#{site}")
}

fn company_rollups_pk(site: &SiteId) -> String {
    format!("HRC#{site}")
}

/// The `(pk, sk)` of a rollup.
fn rollup_key(site: &SiteId, key: &RollupKey) -> (String, String) {
    match &key.scope {
        RollupScope::Site => (site_rollups_pk(site), ts(key.bucket)),
        RollupScope::Company(c) => (
            company_rollups_pk(site),
            format!("{}#{}", ts(key.bucket), key_part(c)),
        ),
    }
}

fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([(attr::PK.to_owned(), s(pk)), (attr::SK.to_owned(), s(sk))])
}

/// A sort key condition of a query.
enum Range<'a> {
    /// `lo <= sk <= hi`.
    Between(&'a str, &'a str),
    /// `sk < x`.
    Below(&'a str),
    /// The whole partition.
    All,
}

/// The core's [`HistoryStore`] on a DynamoDB table (see the [module docs](self) for the
/// design and the cost of each call).
#[derive(Clone, Debug)]
pub struct DynamoHistory {
    table: DynamoStore,
    /// Per site, the age at which its items expire by TTL.
    retention: HashMap<SiteId, Duration>,
}

impl DynamoHistory {
    /// A history store on `table` through `client` (items never expire by TTL; see
    /// [`with_retention`](Self::with_retention)).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoHistory {
            table: DynamoStore::new(client, table),
            retention: HashMap::new(),
        }
    }

    /// The same store writing a `ttl` of start (bucket) + `retention` on every item of `site`,
    /// so DynamoDB's TTL deletes what the retention purge would, without write cost. Use the
    /// retention the host purges the site with
    /// ([`Site::history_retention`](tippen_core::Site::history_retention)); a site without one gets no TTL.
    pub fn with_retention(mut self, site: &SiteId, retention: Duration) -> Self {
        self.retention.insert(site.clone(), retention);
        self
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        self.table.table()
    }

    /// Creates the table when it does not exist (a separate history table, for tests and local
    /// runs): the live store's key schema and TTL attribute
    /// ([`DynamoStore::create_table`]).
    pub async fn create_table(&self) -> Result<(), StoreError> {
        self.table.create_table().await
    }

    fn client(&self) -> &Client {
        self.table.client()
    }

    /// The `ttl` attribute of an item of `site` whose retention runs from `at`.
    fn ttl(&self, site: &SiteId, at: Timestamp) -> Option<AttributeValue> {
        self.retention.get(site).map(|r| {
            let until = i128::from(at.as_millis()) + r.as_millis() as i128;
            n((until.div_euclid(1000) + 1).clamp(0, i128::from(i64::MAX)))
        })
    }

    /// A key item of `site` with its `ttl` from `at`.
    fn item(&self, site: &SiteId, pk: &str, sk: &str, at: Timestamp) -> Item {
        let mut item = key(pk, sk);
        if let Some(ttl) = self.ttl(site, at) {
            item.insert(attr::TTL.to_owned(), ttl);
        }
        item
    }

    async fn put(&self, item: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(out.attributes.filter(|a| !a.is_empty()))
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        self.table.get_versioned(pk, sk).await
    }

    /// One page of partition `pk` in `range` (newest first unless `forward`).
    async fn query_page(
        &self,
        pk: &str,
        range: &Range<'_>,
        forward: bool,
        limit: Option<usize>,
        projection: Option<&str>,
        start: Option<Item>,
    ) -> Result<(Vec<Item>, Option<Item>), StoreError> {
        let req = self
            .client()
            .query()
            .table_name(self.table())
            .consistent_read(true)
            .scan_index_forward(forward)
            .expression_attribute_values(":pk", s(pk))
            .set_limit(limit.map(|l| i32::try_from(l).unwrap_or(i32::MAX)))
            .set_projection_expression(projection.map(str::to_owned))
            .set_exclusive_start_key(start);
        let req = match range {
            Range::Between(lo, hi) => req
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .expression_attribute_values(":lo", s(*lo))
                .expression_attribute_values(":hi", s(*hi)),
            Range::Below(x) => req
                .key_condition_expression("pk = :pk AND sk < :x")
                .expression_attribute_values(":x", s(*x)),
            Range::All => req.key_condition_expression("pk = :pk"),
        };
        let out = req.send().await.map_err(|e| backend("Query", e))?;
        let next = out.last_evaluated_key.filter(|k| !k.is_empty());
        Ok((out.items.unwrap_or_default(), next))
    }

    /// Every item of partition `pk` in `range`, oldest first.
    async fn query_all(
        &self,
        pk: &str,
        range: &Range<'_>,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let (page, next) = self
                .query_page(pk, range, true, None, projection, start)
                .await?;
            items.extend(page);
            match next {
                Some(k) => start = Some(k),
                None => return Ok(items),
            }
        }
    }

    /// The items at `keys` that exist (strongly consistent; any order).
    async fn batch_get(&self, mut keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        keys.sort_by_key(describe);
        keys.dedup_by_key(|k| describe(k));
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET) {
            let mut pending = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .consistent_read(true)
                .build()
                .map_err(|e| backend("BatchGetItem", e))?;
            for round in 0.. {
                let out = self
                    .client()
                    .batch_get_item()
                    .request_items(self.table(), pending)
                    .send()
                    .await
                    .map_err(|e| backend("BatchGetItem", e))?;
                found.extend(
                    out.responses
                        .and_then(|mut r| r.remove(self.table()))
                        .unwrap_or_default(),
                );
                match out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(self.table()))
                    .filter(|k| !k.keys.is_empty())
                {
                    None => break,
                    Some(_) if round + 1 >= BATCH_ROUNDS => {
                        return Err(StoreError::Backend(
                            "DynamoDB BatchGetItem: keys still unprocessed (throttled)".into(),
                        ));
                    }
                    Some(rest) => {
                        pending = rest;
                        backoff(round).await;
                    }
                }
            }
        }
        Ok(found)
    }

    /// Deletes the items at `keys` (missing ones are no error).
    async fn batch_delete(&self, mut keys: Vec<Item>) -> Result<(), StoreError> {
        keys.sort_by_key(describe);
        keys.dedup_by_key(|k| describe(k));
        let requests = keys
            .into_iter()
            .map(|k| {
                DeleteRequest::builder()
                    .set_key(Some(k))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
                    .map_err(|e| backend("BatchWriteItem", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(requests).await
    }

    /// Writes `items` (distinct keys), unconditionally.
    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let requests = items
            .into_iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|p| WriteRequest::builder().put_request(p).build())
                    .map_err(|e| backend("BatchWriteItem", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write(requests).await
    }

    /// `BatchWriteItem` of `requests` (distinct keys), chunked, retrying what DynamoDB left
    /// unprocessed.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        for chunk in requests.chunks(BATCH_WRITE) {
            let mut pending = chunk.to_vec();
            for round in 0.. {
                let out = self
                    .client()
                    .batch_write_item()
                    .request_items(self.table(), pending)
                    .send()
                    .await
                    .map_err(|e| backend("BatchWriteItem", e))?;
                match out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(self.table()))
                    .filter(|r| !r.is_empty())
                {
                    None => break,
                    Some(_) if round + 1 >= BATCH_ROUNDS => {
                        return Err(StoreError::Backend(
                            "DynamoDB BatchWriteItem: requests still unprocessed (throttled)"
                                .into(),
                        ));
                    }
                    Some(rest) => {
                        pending = rest;
                        backoff(round).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// The keys of a stored visit item and of its pointers (its id pointer included).
    /// `item` is a visit item, or an id pointer (the visit's sort key in `hsk`).
    fn visit_item_keys(site: &SiteId, item: &Item) -> Result<Vec<Item>, StoreError> {
        let sk = get_s(item, hattr::VISIT_SK).or_else(|_| get_s(item, attr::SK))?;
        let id = id_of_sk(sk)
            .ok_or_else(|| StoreError::Corrupt(format!("visit sort key {sk} has no id")))?;
        let mut keys = vec![key(&visits_pk(site), sk), key(&id_pk(site, id), "I")];
        if let Ok(visitor) = get_s(item, hattr::VISITOR) {
            keys.push(key(&visitor_pk(site, visitor), sk));
        }
        if let Ok(company) = get_s(item, hattr::COMPANY) {
            keys.push(key(&company_pk(site, company), sk));
        }
        Ok(keys)
    }

    /// The visits at these visit sort keys, in the same order (missing ones skipped).
    async fn visits_at(&self, site: &SiteId, sks: &[String]) -> Result<Vec<Item>, StoreError> {
        let pk = visits_pk(site);
        let found = self
            .batch_get(sks.iter().map(|sk| key(&pk, sk)).collect())
            .await?;
        let mut by_sk: HashMap<String, Item> = found
            .into_iter()
            .filter_map(|item| Some((get_s(&item, attr::SK).ok()?.to_owned(), item)))
            .collect();
        Ok(sks.iter().filter_map(|sk| by_sk.remove(sk)).collect())
    }

    /// One company's rollups of `[from, to)` by key, when there are few enough buckets.
    fn company_buckets(company: &str, from: Timestamp, to: Timestamp) -> Option<Vec<RollupKey>> {
        let scope = RollupScope::Company(company.to_owned());
        let span = i128::from(scope.span_ms());
        let mut first = i128::from(scope.bucket_of(from).as_millis());
        if first < i128::from(from.as_millis()) {
            first += span;
        }
        let to = i128::from(to.as_millis());
        let count = if to > first {
            (to - first + span - 1) / span
        } else {
            0
        };
        (count <= MAX_ENUMERATED_BUCKETS).then(|| {
            (0..count)
                .map(|i| RollupKey {
                    scope: scope.clone(),
                    bucket: Timestamp::from_millis((first + i * span) as i64),
                })
                .collect()
        })
    }
}

/// The key (`pk`, `sk`) of an item.
fn key_of(item: &Item) -> Item {
    item.iter()
        .filter(|(name, _)| *name == attr::PK || *name == attr::SK)
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// The key of an item, for sorting and deduplicating a batch.
fn describe(item: &Item) -> (String, String) {
    let part = |k| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    (part(attr::PK), part(attr::SK))
}

/// Waits before retrying a batch's unprocessed part (DynamoDB's advice: exponential backoff).
async fn backoff(round: u32) {
    tokio::time::sleep(Duration::from_millis(25u64 << round.min(6))).await;
}

#[async_trait]
impl HistoryStore for DynamoHistory {
    async fn put_visit(&self, site: &SiteId, visit: &Visit) -> Result<PutVisit, StoreError> {
        let sk = visit_sk(visit.started_at, &visit.visit_id);
        let start = visit.started_at;
        let company = visit.company.as_ref().map(company_part);
        // Where this visit lives: its item and pointers, the id pointer naming them.
        let mut item = self.item(site, &visits_pk(site), &sk, start);
        item.insert(attr::DOC.to_owned(), s(encode(visit)?));
        let mut pointer = self.item(site, &id_pk(site, &visit.visit_id), "I", start);
        pointer.insert(hattr::VISIT_SK.to_owned(), s(&sk));
        for it in [&mut item, &mut pointer] {
            it.insert(hattr::VISITOR.to_owned(), s(&visit.visitor_id));
            if let Some(part) = &company {
                it.insert(hattr::COMPANY.to_owned(), s(part));
            }
        }
        let mut items = vec![
            item,
            self.item(site, &visitor_pk(site, &visit.visitor_id), &sk, start),
        ];
        items.extend(
            company
                .as_ref()
                .map(|part| self.item(site, &company_pk(site, part), &sk, start)),
        );
        let current: Vec<Item> = items.iter().map(key_of).collect();
        // The visit and its visitor and company pointers in one batch, then the id pointer
        // (see the module docs).
        self.batch_put(items).await?;
        let old = self.put(pointer).await?;
        if let Some(old) = &old {
            // What a replaced visit left that this one does not use (it moved to another
            // start, visitor or company under the same id).
            let mut stale = Self::visit_item_keys(site, old)?;
            stale.retain(|k| !current.contains(k) && get_s(k, attr::SK).is_ok_and(|sk| sk != "I"));
            if !stale.is_empty() {
                self.batch_delete(stale).await?;
            }
        }
        Ok(if old.is_some() {
            PutVisit::Replaced
        } else {
            PutVisit::Inserted
        })
    }

    async fn visit(&self, site: &SiteId, visit_id: &str) -> Result<Option<Visit>, StoreError> {
        let Some(pointer) = self.get(&id_pk(site, visit_id), "I").await? else {
            return Ok(None);
        };
        let sk = get_s(&pointer, hattr::VISIT_SK)?;
        self.get(&visits_pk(site), sk)
            .await?
            .map(|item| decode(&item))
            .transpose()
    }

    async fn visits(&self, site: &SiteId, query: &VisitQuery) -> Result<Vec<Visit>, StoreError> {
        let mut out = Vec::new();
        if query.limit == 0 {
            return Ok(out);
        }
        // The narrowest partition that holds every match.
        let (pk, pointers) = match (&query.filter.visitor, &query.filter.company) {
            (Some(visitor), _) => (visitor_pk(site, visitor), true),
            (None, Some(company)) => (
                company_pk(site, &key_part(&company.to_ascii_lowercase())),
                true,
            ),
            (None, None) => (visits_pk(site), false),
        };
        let lo = ts(query.from);
        let mut hi = ts(query.to);
        if let Some(after) = &query.after {
            hi = hi.min(visit_sk(after.started_at, &after.visit_id));
        }
        if lo > hi {
            return Ok(out);
        }
        let range = Range::Between(&lo, &hi);
        let mut start = None;
        loop {
            // The partition serves the visitor or company filter; with others, most items of
            // a page may not match: read more per page.
            let f = &query.filter;
            let served = f.page.is_none()
                && f.country.is_none()
                && !(f.visitor.is_some() && f.company.is_some());
            let remaining = query.limit - out.len() + 1;
            let limit = if served {
                remaining
            } else {
                remaining.max(100)
            };
            let (page, next) = self
                .query_page(&pk, &range, false, Some(limit.min(1000)), None, start)
                .await?;
            // `hi` is exclusive: only the cursor's own key can equal it.
            let page: Vec<Item> = page
                .into_iter()
                .filter(|item| get_s(item, attr::SK).is_ok_and(|sk| sk != hi))
                .collect();
            let items = if pointers {
                let sks = page
                    .iter()
                    .map(|item| get_s(item, attr::SK).map(str::to_owned))
                    .collect::<Result<Vec<_>, _>>()?;
                self.visits_at(site, &sks).await?
            } else {
                page
            };
            for item in &items {
                let visit: Visit = decode(item)?;
                if query.matches(&visit) {
                    out.push(visit);
                    if out.len() == query.limit {
                        return Ok(out);
                    }
                }
            }
            match next {
                Some(k) => start = Some(k),
                None => return Ok(out),
            }
        }
    }

    /// One Query of the visitor's pointer items (their keys only), no visit read.
    async fn count_visits(
        &self,
        site: &SiteId,
        visitor_id: &str,
        before: Timestamp,
        max: usize,
    ) -> Result<usize, StoreError> {
        let pk = visitor_pk(site, visitor_id);
        let below = ts(before);
        let mut counted = 0;
        let mut start = None;
        while counted < max {
            let (page, next) = self
                .query_page(
                    &pk,
                    &Range::Below(&below),
                    true,
                    Some((max - counted).min(1000)),
                    Some("pk, sk"),
                    start,
                )
                .await?;
            counted += page.len();
            match next {
                Some(k) => start = Some(k),
                None => break,
            }
        }
        Ok(counted.min(max))
    }

    async fn erase_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Vec<Visit>, StoreError> {
        let pk = visitor_pk(site, visitor_id);
        let pointers = self.query_all(&pk, &Range::All, Some("pk, sk")).await?;
        if pointers.is_empty() {
            return Ok(Vec::new());
        }
        let sks = pointers
            .iter()
            .map(|p| get_s(p, attr::SK).map(str::to_owned))
            .collect::<Result<Vec<_>, _>>()?;
        let items = self.visits_at(site, &sks).await?;
        let mut erased = Vec::with_capacity(items.len());
        let mut keys = Vec::new();
        for item in &items {
            erased.push(decode::<Visit>(item)?);
            keys.extend(
                Self::visit_item_keys(site, item)?
                    .into_iter()
                    .filter(|k| get_s(k, attr::PK).is_ok_and(|p| p != pk)),
            );
        }
        self.batch_delete(keys).await?;
        // The visitor's pointers last: a crash before leaves them for a retry to find.
        self.batch_delete(sks.iter().map(|sk| key(&pk, sk)).collect())
            .await?;
        Ok(erased)
    }

    async fn rollup(
        &self,
        site: &SiteId,
        key: &RollupKey,
    ) -> Result<Option<Versioned<Rollup>>, StoreError> {
        let (pk, sk) = rollup_key(site, key);
        let Some(item) = self.get(&pk, &sk).await? else {
            return Ok(None);
        };
        Ok(Some(Versioned {
            version: Version(get_n(&item, attr::VERSION)? as u64),
            value: decode(&item)?,
        }))
    }

    async fn save_rollup(
        &self,
        site: &SiteId,
        rollup: &Rollup,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let (pk, sk) = rollup_key(site, &rollup.key);
        let mut item = self.item(site, &pk, &sk, rollup.key.bucket);
        item.insert(attr::DOC.to_owned(), s(encode(rollup)?));
        self.table.put_versioned(item, expected).await
    }

    async fn rollups(&self, site: &SiteId, query: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        let items = match &query.select {
            RollupSelect::Company(company) => {
                match Self::company_buckets(company, query.from, query.to) {
                    Some(keys) => {
                        let keys = keys
                            .iter()
                            .map(|k| {
                                let (pk, sk) = rollup_key(site, k);
                                key(&pk, &sk)
                            })
                            .collect();
                        self.batch_get(keys).await?
                    }
                    None => {
                        let (lo, hi) = (ts(query.from), ts(query.to));
                        if lo > hi {
                            return Ok(Vec::new());
                        }
                        self.query_all(&company_rollups_pk(site), &Range::Between(&lo, &hi), None)
                            .await?
                    }
                }
            }
            select => {
                let pk = match select {
                    RollupSelect::Site => site_rollups_pk(site),
                    _ => company_rollups_pk(site),
                };
                let (lo, hi) = (ts(query.from), ts(query.to));
                if lo > hi {
                    return Ok(Vec::new());
                }
                self.query_all(&pk, &Range::Between(&lo, &hi), None).await?
            }
        };
        let mut rollups = Vec::with_capacity(items.len());
        for item in &items {
            let rollup: Rollup = decode(item)?;
            if query.contains(&rollup.key) {
                rollups.push(rollup);
            }
        }
        Ok(rollups)
    }

    async fn purge(&self, site: &SiteId, before: Timestamp) -> Result<u64, StoreError> {
        let cutoff = ts(before);
        let projection = format!("pk, sk, {}, {}", hattr::VISITOR, hattr::COMPANY);
        let visits = self
            .query_all(&visits_pk(site), &Range::Below(&cutoff), Some(&projection))
            .await?;
        let mut keys = Vec::new();
        for item in &visits {
            keys.extend(Self::visit_item_keys(site, item)?);
        }
        for pk in [site_rollups_pk(site), company_rollups_pk(site)] {
            for item in self
                .query_all(&pk, &Range::Below(&cutoff), Some("pk, sk"))
                .await?
            {
                keys.push(key(&pk, get_s(&item, attr::SK)?));
            }
        }
        self.batch_delete(keys).await?;
        Ok(visits.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_as_times() {
        let times = [i64::MIN, -1, 0, 1, 999, 1_729_080_000_000, i64::MAX];
        let keys: Vec<String> = times
            .iter()
            .map(|t| ts(Timestamp::from_millis(*t)))
            .collect();
        assert!(keys.iter().all(|k| k.len() == 20), "{keys:?}");
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        // A visit's key sorts by (start, id), and `ts(to)` bounds the starts before `to`.
        let t = Timestamp::from_millis(5);
        assert!(visit_sk(t, "a") < visit_sk(t, "b"));
        assert!(ts(t) < visit_sk(t, "a"));
        assert!(visit_sk(Timestamp::from_millis(4), "z") < ts(t));
        assert_eq!(id_of_sk(&visit_sk(t, "vis_1#x")), Some("vis_1#x"));
    }

    #[test]
    fn long_company_keys_are_hashed_and_case_folded_for_pointers() {
        assert_eq!(key_part("acme.example"), "acme.example");
        let long = "x".repeat(MAX_KEY_PART + 1);
        let part = key_part(&long);
        assert_eq!(part.len(), 65);
        assert!(part.starts_with('~'));
        assert_eq!(part, key_part(&long), "stable");
    }

    #[test]
    fn one_companys_buckets_are_the_days_in_range() {
        let day = tippen_core::history::DAY_MS;
        let at = Timestamp::from_millis;
        let days = |from, to| {
            DynamoHistory::company_buckets("c", at(from), at(to)).map(|keys| {
                keys.iter()
                    .map(|k| k.bucket.as_millis())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(days(0, 2 * day), Some(vec![0, day]));
        assert_eq!(days(1, 2 * day + 1), Some(vec![day, 2 * day]));
        assert_eq!(days(day, day), Some(vec![]));
        assert_eq!(days(0, i64::MAX), None, "too many: read by range");
    }
}
