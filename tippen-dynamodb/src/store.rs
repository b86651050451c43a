//! [`DynamoStore`]: the core's [`Store`] on one DynamoDB table.
//!
//! # Table design
//!
//! One table, string partition key `pk` and string sort key `sk`; every record kind is a
//! versioned item written through the same helpers ([`DynamoStore::get_versioned`],
//! [`DynamoStore::put_versioned`], [`DynamoStore::delete_versioned`]): its value is a JSON
//! document in `doc`, its version a number in `v`, and every write is a conditional write on
//! `v` (or on the item's absence), so two Lambda invocations writing the same record at the
//! same moment never lose an update — one of them gets [`StoreError::Conflict`] and the core
//! re-reads and retries.
//!
//! | record | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | site | `SITES` | site id | `doc`, `v` |
//! | key index | `KEY#<sha-256 hex>` | `KEY` | `site` |
//! | visitor | `V#<site>` | visitor id | `doc`, `v`, `dsite` (= site) + `dl` (deadline index), `ttl` |
//! | support user | `U#<site>` | user id | `doc`, `v`, `dsite` (= `U#<site>`) + `dl`, `ttl` |
//! | message counter | `SEQ#<site>` | `SEQ` | `n` (atomic `ADD`, taken before the write it numbers: `Store::numbers_before_writes`) |
//! | enrichment cache | `IP#<address>` | `CACHE` | `doc`, `v`, `ttl` |
//! | enrichment counters | `STATS#<site>` | `STATS` | one number per counter (`st.creditsUsed`, `st.skipsByReason.bot`), atomic `ADD` |
//! | WebSocket connection | `CONN#<site>` | `D#<connectionId>` (dashboard), `W#<visitor>#<connectionId>` | `cid`, `at`, `addr` (the client's address, hashed), `greeted`, `outbox`, `ttl` |
//! | connection by id | `CID#<connectionId>` | `CONN` | `site`, `role`, `visitor`, `snap` (a dashboard's snapshot budget), `ttl` |
//! | wake | `WAKE` | `<deadline ms, 15 digits>#<site>` | `site`, `dl`, `ttl` |
//! | wake poller lease | `WAKE` | `~POLLER` | `until` |
//! | sweep lease | `SWEEP#<site>` | `LEASE` | `holder`, `until`, `again` |
//! | rate counter | `RATE#<key's sha-256 hex>` | `W#<window number>` | `n` (conditional `ADD`), `ttl` |
//! | rate counter of a client address | `RATE#IP#<HMAC-SHA256(secret, address) hex>` | `W#<window number>` | `n`, `ttl` |
//! | client address secret | `SECRET` | `ADDRESS` | `secret` (made once, conditional put) |
//! | spent dashboard ticket | `TICKET#<site>` | the ticket's nonce and tag | `ttl` (conditional put) |
//! | alert log entry | `ALERTLOG#<site>` | `<at ms, 15 digits>#<random id>` | `doc`, `ttl` (30 days on) |
//! | audit log entry | `AUDIT#<site>` | `<at ms, 15 digits>#<random id>` | `doc`, `ttl` (the entry's time plus the retention) |
//!
//! The global secondary index `due` (partition `dsite`, sort `dl` as a number) holds only
//! visitor items: [`Store::due_visitors`] and [`Store::next_deadline`] are Queries on it,
//! O(k + log n), never a Scan. Index reads are eventually consistent; a stale entry is
//! harmless because the core's sweep writes conditionally and re-reads on a conflict.
//!
//! Wakes are the deadlines the sweep function must meet on time whichever invocation writes
//! them (a closed tab's leave linger): one small partition that a running sweep invocation
//! reads every poll ([`DynamoStore::wakes`]), however many sites there are. The lease names
//! the invocation polling it and until when ([`DynamoStore::claim_poller`]).
//!
//! The sweep lease lets one invocation at a time sweep a site ([`DynamoStore::claim_sweep`]):
//! without it the scheduled run and the invocation polling the wakes closed the same due
//! visitors at the same moment, each close several conditional writes that the loser repeated
//! after its conflict. An invocation that finds the lease held sets `again` on it instead of
//! sweeping, and the holder sweeps once more before it gives the lease back
//! ([`DynamoStore::end_sweep`]), so a skipped deadline is never left behind. `until` (a few
//! seconds ahead, renewed while a long sweep goes on) bounds how long a holder that crashed
//! keeps the others out.
//!
//! The audit log ([`Store::log_audit`]) is one item per entry, sorted by time (the random
//! suffix keeps entries of one millisecond apart): [`Store::audit_log`] is one Query from the
//! `since` prefix on, newest first. Entries past the retention are dropped by the TTL, set at
//! write to the entry's time plus the retention the write names (`at - keep_after`), not by a
//! delete per write.
//!
//! Expiry is decided by the core comparing times, never by DynamoDB: TTL deletion (`ttl`,
//! seconds since the epoch) only cleans up items long after they stopped mattering (it can lag
//! for days). A new record kind (say, support-trigger state) is one more `pk` prefix and a
//! couple of lines over the versioned helpers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, Select, TimeToLiveSpecification,
    TransactWriteItem,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tippen_core::api::SocketRole;
use tippen_core::enrichment::{CachedLookup, EnrichmentEvent, EnrichmentStats};
use tippen_core::presence::VisitorRecord;
use tippen_core::quota::SnapshotBudget;
use tippen_core::rate::Window;
use tippen_core::support::UserRecord;
use tippen_core::{KeyHash, Site, SiteId, Store, StoreError, Timestamp, Version, Versioned};

/// Attribute names of the table.
pub(crate) mod attr {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const DOC: &str = "doc";
    pub const VERSION: &str = "v";
    pub const DUE_SITE: &str = "dsite";
    pub const DEADLINE: &str = "dl";
    pub const TTL: &str = "ttl";
    /// Until when a spent ticket or a claimed cooldown holds (epoch ms).
    pub const UNTIL: &str = "until";
    pub const SITE: &str = "site";
    pub const COUNTER: &str = "n";
    pub const WRITE_TOKEN: &str = "wt";
}

/// How long an alert log entry is kept (DynamoDB's TTL): 30 days.
const ALERT_LOG_TTL_SECS: i64 = 30 * 86_400;

/// Name of the deadline index.
pub const DUE_INDEX: &str = "due";

/// How long past its deadline a visitor item lives before DynamoDB's TTL may delete it. The
/// core has removed it long before; this only bounds what a lost sweep leaves behind.
const VISITOR_TTL_SLACK_SECS: i64 = 24 * 3600;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// The core's [`Store`] on a DynamoDB table (see the [module docs](self) for the design).
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    sites: Arc<SiteCache>,
    /// The secret keying client addresses' rate counters, once read from the table.
    address_secret: Arc<tokio::sync::OnceCell<tippen_core::IdentitySecret>>,
}

/// The item holding the secret that keys client addresses' rate counters (`pk`, `sk`): made
/// by the first invocation that needs it (a conditional put), read by every later one.
const ADDRESS_SECRET_KEY: (&str, &str) = ("SECRET", "ADDRESS");
/// The attribute of [`ADDRESS_SECRET_KEY`] holding the secret (64 hex digits).
const ADDRESS_SECRET_ATTR: &str = "secret";

/// Sites found by key, kept for a short time by one instance (every request authenticates;
/// sites change rarely). Unknown keys are never cached. A put of a site through this instance
/// empties it ([`clear`](Self::clear)), so a key the put dropped (a revoked member token, a
/// replaced primary key) is never answered from it; a read that began before the put does not
/// refill it with what it read ([`generation`](Self::generation)). An entry's age counts from
/// when its read began, so a change to a site is seen by every later request of the instance
/// at most `ttl` after it was written, however long the read took.
#[derive(Debug, Default)]
struct SiteCache {
    ttl: Duration,
    entries: Mutex<CachedSites>,
}

/// The cache's entries, with the number of times it was cleared.
#[derive(Debug, Default)]
struct CachedSites {
    cleared: u64,
    sites: HashMap<KeyHash, (Instant, Site)>,
}

/// When a read of a site began, and the cache's [`CachedSites::cleared`] count then.
#[derive(Clone, Copy, Debug)]
struct Generation {
    cleared: u64,
    began: Instant,
}

impl SiteCache {
    const MAX_ENTRIES: usize = 4096;

    fn lock(&self) -> std::sync::MutexGuard<'_, CachedSites> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The site kept for `key`, with how long ago its read began.
    fn get(&self, key: &KeyHash) -> Option<(Site, Duration)> {
        if self.ttl.is_zero() {
            return None;
        }
        self.lock()
            .sites
            .get(key)
            .map(|(at, site)| (site, at.elapsed()))
            .filter(|(_, age)| *age < self.ttl)
            .map(|(site, age)| (site.clone(), age))
    }

    /// Taken before reading a site from the table, handed back to [`put`](Self::put).
    fn generation(&self) -> Generation {
        Generation {
            cleared: self.lock().cleared,
            began: Instant::now(),
        }
    }

    /// Keeps `site` for `key`, aged from when its read began, unless the cache was cleared
    /// since `generation` (a put of a site happened meanwhile: what was read may be what it
    /// replaced).
    fn put(&self, key: KeyHash, site: &Site, generation: Generation) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.cleared != generation.cleared {
            return;
        }
        if entries.sites.len() >= Self::MAX_ENTRIES {
            entries.sites.clear();
        }
        entries.sites.insert(key, (generation.began, site.clone()));
    }

    fn clear(&self) {
        let mut entries = self.lock();
        entries.cleared += 1;
        entries.sites.clear();
    }
}

pub(crate) fn backend<E: std::fmt::Debug>(op: &str, e: E) -> StoreError {
    StoreError::Backend(format!("DynamoDB {op}: {e:?}"))
}

/// A token unique to one write (not to its retries): lets a retried conditional write that
/// fails against its own earlier attempt recognize it.
pub fn write_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = KEYS.get_or_init(Default::default).build_hasher();
    h.write_u64(n);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}{n:x}", h.finish())
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} missing or not a string")))
}

pub(crate) fn get_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} missing or not a number")))
}

pub(crate) fn decode<T: DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    serde_json::from_str(get_s(item, attr::DOC)?)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", describe_key(item))))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn describe_key(item: &Item) -> String {
    let part = |k| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    format!("{}/{}", part(attr::PK), part(attr::SK))
}

/// Whether an SDK error is a failed condition (a conditional write lost, or a transaction
/// cancelled because one of its conditions failed).
fn condition_failed<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|c| {
            c == "ConditionalCheckFailedException" || c == "TransactionCanceledException"
        })
}

/// `Ok(true)` when a conditional write went through, `Ok(false)` when its condition failed
/// (another invocation got there first, or the limit it guards is reached), else the backend
/// error of `op`.
fn conditional<T, E, R>(op: &str, out: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match out {
        Ok(_) => Ok(true),
        Err(e) if condition_failed(&e) => Ok(false),
        Err(e) => Err(backend(op, e)),
    }
}

fn visitor_pk(site: &SiteId) -> String {
    format!("V#{site}")
}

/// Support users share the `due` index with visitors under their own partition, `U#<site>`.
fn user_pk(site: &SiteId) -> String {
    format!("U#{site}")
}

fn key_pk(hash: &KeyHash) -> String {
    format!("KEY#{}", hash.to_hex())
}

const SITES_PK: &str = "SITES";

fn audit_pk(site: &SiteId) -> String {
    format!("AUDIT#{site}")
}

/// The start of an audit item's sort key: its time in ms, 15 digits (text order is time
/// order; times before the epoch count as the epoch).
fn audit_sk_prefix(at: Timestamp) -> String {
    format!("{:015}", at.as_millis().max(0))
}

/// Prefix of the enrichment counter attributes (`st.creditsUsed`, `st.skipsByReason.bot`).
const STATS_PREFIX: &str = "st.";

fn stats_pk(site: &SiteId) -> String {
    format!("STATS#{site}")
}

/// How long a stored connection lives before DynamoDB's TTL may delete it (and before it
/// stops counting for the socket quotas when its `$disconnect` was lost): past API Gateway's
/// 2-hour limit.
const CONNECTION_TTL_SECS: i64 = 3 * 3600;
/// The hashed client address on a connection's per-site entry.
const CONN_ADDRESS: &str = "addr";
/// A dashboard's snapshot budget on the connection's by-id entry.
const CONN_BUDGET: &str = "snap";

/// A stored WebSocket connection of API Gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// API Gateway's connection id.
    pub connection_id: String,
    /// Its site, and whether it is a dashboard or a visitor's channel.
    pub role: SocketRole,
}

/// A connection to fan a message out to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FanoutTarget {
    /// The connection.
    pub connection: Connection,
    /// Its first message was sent: post directly. Otherwise append to its outbox.
    pub greeted: bool,
    /// When `$connect` stored it.
    pub connected_at: Timestamp,
}

/// A deadline of one site that a sweep must meet on time ([`DynamoStore::put_wake`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wake {
    /// The site to sweep.
    pub site: SiteId,
    /// When.
    pub at: Timestamp,
    sort_key: String,
}

const WAKE_PK: &str = "WAKE";
/// The lease shares the wakes' partition (one Query reads both); `~` sorts after the wakes'
/// digits.
const POLLER_SK: &str = "~POLLER";
const POLLER_UNTIL: &str = "until";

/// How long a wake nobody took lives before DynamoDB's TTL may delete it.
const WAKE_TTL_SLACK_SECS: i64 = 24 * 3600;

/// The sweep lease's item: `SWEEP#<site>` / [`SWEEP_SK`].
fn sweep_pk(site: &SiteId) -> String {
    format!("SWEEP#{site}")
}
const SWEEP_SK: &str = "LEASE";
const SWEEP_HOLDER: &str = "holder";
const SWEEP_UNTIL: &str = "until";
/// Set by an invocation that found the site due while the lease was held.
const SWEEP_AGAIN: &str = "again";

/// What [`DynamoStore::claim_sweep`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepClaim {
    /// The lease is the caller's until the time it asked for: sweep, then
    /// [`end_sweep`](DynamoStore::end_sweep).
    Taken,
    /// Another invocation holds it; it was asked to sweep once more before giving it back
    /// (`again`). The caller does not sweep.
    Held,
}

/// What [`DynamoStore::end_sweep`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepEnd {
    /// Given back: nobody asked for another round while it was held.
    Released,
    /// Another invocation found the site due meanwhile: the lease is still the caller's
    /// (renewed, `again` cleared), and it must sweep once more and end again.
    Again,
    /// The lease ran out and another invocation took it: the site is theirs now.
    Lost,
}

impl Wake {
    /// The wake of `site` at `at`, keyed as [`DynamoStore::put_wake`] stores it.
    pub fn new(site: SiteId, at: Timestamp) -> Self {
        let sort_key = format!("{:015}#{site}", at.as_millis().max(0));
        Wake { site, at, sort_key }
    }
}

impl Connection {
    /// The sort key prefix of `role`'s connections under `CONN#<site>`.
    fn prefix(role: &SocketRole) -> String {
        match role {
            SocketRole::Dashboard { .. } => "D#".to_owned(),
            SocketRole::Visitor { visitor_id, .. } => format!("W#{visitor_id}#"),
        }
    }

    fn sort_key(&self) -> String {
        Self::prefix(&self.role) + &self.connection_id
    }
}

impl DynamoStore {
    /// A store on `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            sites: Arc::default(),
            address_secret: Arc::default(),
        }
    }

    /// The same store keeping sites found by key for `ttl` in this process (off by default).
    /// A key rotated in another process is honoured here within `ttl`; a rotation through
    /// this store at once.
    pub fn with_site_cache(mut self, ttl: Duration) -> Self {
        self.sites = Arc::new(SiteCache {
            ttl,
            entries: Mutex::default(),
        });
        self
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The DynamoDB client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the table with its deadline index and TTL attribute (tests and local runs;
    /// deployments declare the same in `template.yaml`). Idempotent: an existing table is
    /// left as it is.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .map_err(|e| backend("CreateTable", e))
        };
        let def = |name: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
                .map_err(|e| backend("CreateTable", e))
        };
        let due = GlobalSecondaryIndex::builder()
            .index_name(DUE_INDEX)
            .key_schema(key(attr::DUE_SITE, KeyType::Hash)?)
            .key_schema(key(attr::DEADLINE, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(|e| backend("CreateTable", e))?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(attr::PK, KeyType::Hash)?)
            .key_schema(key(attr::SK, KeyType::Range)?)
            .attribute_definitions(def(attr::PK, ScalarAttributeType::S)?)
            .attribute_definitions(def(attr::SK, ScalarAttributeType::S)?)
            .attribute_definitions(def(attr::DUE_SITE, ScalarAttributeType::S)?)
            .attribute_definitions(def(attr::DEADLINE, ScalarAttributeType::N)?)
            .global_secondary_indexes(due)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                return Ok(());
            }
            Err(e) => return Err(backend("CreateTable", e)),
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attr::TTL)
                    .enabled(true)
                    .build()
                    .map_err(|e| backend("UpdateTimeToLive", e))?,
            )
            .send()
            .await
            .map_err(|e| backend("UpdateTimeToLive", e))?;
        Ok(())
    }

    fn key(pk: &str, sk: &str) -> Item {
        HashMap::from([(attr::PK.to_owned(), s(pk)), (attr::SK.to_owned(), s(sk))])
    }

    /// Reads a versioned item (strongly consistent).
    pub async fn get_versioned(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", e))?;
        Ok(out.item)
    }

    /// Writes `item` (which must hold `pk` and `sk`) with version `expected + 1` if the stored
    /// version is `expected` (`None`: only if no item exists). Returns the new version, or
    /// [`StoreError::Conflict`] without writing.
    pub async fn put_versioned(
        &self,
        mut item: Item,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let next = Version(expected.map_or(1, |v| v.0 + 1));
        item.insert(attr::VERSION.to_owned(), n(next.0));
        let token = write_token();
        item.insert(attr::WRITE_TOKEN.to_owned(), s(&token));
        let req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let req = match expected {
            None => req.condition_expression("attribute_not_exists(pk)"),
            Some(v) => req
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", attr::VERSION)
                .expression_attribute_values(":v", n(v.0)),
        };
        match req.send().await {
            Ok(_) => Ok(next),
            Err(e) if condition_failed(&e) => {
                // The SDK retries a request whose answer was lost (a timeout, a 5xx); if the
                // first attempt had landed, the retry fails its condition against our own
                // write. That is success, not a conflict (else the core would apply the
                // change twice).
                let stored = e.as_service_error().and_then(|e| match e {
                    PutItemError::ConditionalCheckFailedException(c) => c.item(),
                    _ => None,
                });
                let ours = stored.is_some_and(|old| {
                    old.get(attr::WRITE_TOKEN).and_then(|v| v.as_s().ok()) == Some(&token)
                });
                if ours {
                    Ok(next)
                } else {
                    Err(StoreError::Conflict)
                }
            }
            Err(e) => Err(backend("PutItem", e)),
        }
    }

    /// Deletes an item if its stored version is `expected`; [`StoreError::Conflict`] when it
    /// is not (or when there is no item).
    pub async fn delete_versioned(
        &self,
        pk: &str,
        sk: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .condition_expression("#v = :v")
            .expression_attribute_names("#v", attr::VERSION)
            .expression_attribute_values(":v", n(expected.0))
            .send()
            .await;
        if conditional("DeleteItem", out)? {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    /// Reads, changes and conditionally writes one JSON document (`doc`, versioned) until no
    /// other writer intervened (a document that does not exist starts from `T::default()`);
    /// returns the value written. The building block for a new record kind.
    pub async fn update_doc<T, F>(&self, pk: &str, sk: &str, mut change: F) -> Result<T, StoreError>
    where
        T: Serialize + DeserializeOwned + Default,
        F: FnMut(&mut T),
    {
        loop {
            let current = self.get_versioned(pk, sk).await?;
            let (mut value, version) = match &current {
                Some(item) => (
                    decode::<T>(item)?,
                    Some(Version(get_n(item, attr::VERSION)? as u64)),
                ),
                None => (T::default(), None),
            };
            change(&mut value);
            let mut item = Self::key(pk, sk);
            item.insert(attr::DOC.to_owned(), s(encode(&value)?));
            match self.put_versioned(item, version).await {
                Ok(_) => return Ok(value),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// All items of one partition (a Query, paginated), optionally only those whose sort key
    /// starts with `sk_prefix` and those passing `filter`.
    async fn query_all(
        &self,
        pk: &str,
        sk_prefix: Option<&str>,
        filter: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_values(":pk", s(pk))
                .set_exclusive_start_key(start.take())
                .set_filter_expression(filter.map(str::to_owned));
            req = match sk_prefix {
                Some(prefix) => req
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(prefix)),
                None => req.key_condition_expression("pk = :pk"),
            };
            let out = req.send().await.map_err(|e| backend("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// How many items partition `pk` holds (a `Select: COUNT` query: nothing is transferred,
    /// though DynamoDB still reads the items; asked only when a new visitor or user would be
    /// created, for the quotas).
    async fn count_all(&self, pk: &str) -> Result<usize, StoreError> {
        let mut count = 0usize;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            count += usize::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(count),
            }
        }
    }

    /// An item of a record kind with a deadline: `doc`, and the `due` index entry (partition
    /// `due_partition`, sort key the deadline) plus a TTL past the deadline.
    fn deadline_item<T: Serialize>(
        pk: &str,
        sk: &str,
        due_partition: &str,
        record: &T,
        deadline: Timestamp,
    ) -> Result<Item, StoreError> {
        let deadline = deadline.as_millis();
        let mut item = Self::key(pk, sk);
        item.insert(attr::DOC.to_owned(), s(encode(record)?));
        item.insert(attr::DUE_SITE.to_owned(), s(due_partition));
        item.insert(attr::DEADLINE.to_owned(), n(deadline));
        item.insert(
            attr::TTL.to_owned(),
            n(deadline.div_euclid(1000) + VISITOR_TTL_SLACK_SECS),
        );
        Ok(item)
    }

    fn versioned<T: DeserializeOwned>(item: &Item) -> Result<Versioned<T>, StoreError> {
        Ok(Versioned {
            version: Version(get_n(item, attr::VERSION)? as u64),
            value: decode(item)?,
        })
    }

    /// The versioned record `sk` of partition `pk`.
    async fn record<T: DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        self.get_versioned(pk, sk)
            .await?
            .map(|item| Self::versioned(&item))
            .transpose()
    }

    /// Every record of partition `pk`.
    async fn records<T: DeserializeOwned>(&self, pk: &str) -> Result<Vec<T>, StoreError> {
        self.query_all(pk, None, None)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    /// At most `limit` records of the `due` index partition whose deadline has come.
    async fn due_records<T: DeserializeOwned>(
        &self,
        due_partition: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<T>>, StoreError> {
        self.due_query(due_partition, Some(now), limit)
            .await?
            .iter()
            .map(Self::versioned)
            .collect()
    }

    /// The earliest deadline in the `due` index partition.
    async fn next_due(&self, due_partition: &str) -> Result<Option<Timestamp>, StoreError> {
        match self.due_query(due_partition, None, 1).await?.first() {
            Some(item) => Ok(Some(Timestamp::from_millis(get_n(item, attr::DEADLINE)?))),
            None => Ok(None),
        }
    }

    async fn due_query(
        &self,
        due_partition: &str,
        now: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        while items.len() < limit {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .scan_index_forward(true)
                .limit(i32::try_from(limit - items.len()).unwrap_or(i32::MAX))
                .expression_attribute_values(":site", s(due_partition))
                .set_exclusive_start_key(start.take());
            req = match now {
                Some(now) => req
                    .key_condition_expression("dsite = :site AND dl <= :now")
                    .expression_attribute_values(":now", n(now.as_millis())),
                None => req.key_condition_expression("dsite = :site"),
            };
            let out = req.send().await.map_err(|e| backend("Query due", e))?;
            let got = out.items.unwrap_or_default();
            tracing::trace!(
                partition = due_partition,
                now_ms = ?now.map(Timestamp::as_millis),
                due = ?got
                    .iter()
                    .map(|i| (get_s(i, attr::SK).unwrap_or("?"), get_n(i, attr::DEADLINE).unwrap_or(0)))
                    .collect::<Vec<_>>(),
                "deadline index read"
            );
            items.extend(got);
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        items.truncate(limit);
        Ok(items)
    }

    /// Stores a WebSocket connection (both its per-site entry and its by-id entry), expiring
    /// by TTL after API Gateway's 2-hour connection limit; with the client's address as an
    /// [`address_tag`](tippen_core::quota::address_tag) (never the address itself) and a
    /// dashboard's snapshot budget.
    pub async fn put_connection(
        &self,
        conn: &Connection,
        now: Timestamp,
        address_tag: Option<&str>,
        budget: Option<&SnapshotBudget>,
    ) -> Result<(), StoreError> {
        let ttl = n(now.as_millis().div_euclid(1000) + CONNECTION_TTL_SECS);
        let mut by_site = Self::connection_key(conn);
        by_site.insert("cid".to_owned(), s(&conn.connection_id));
        by_site.insert("at".to_owned(), n(now.as_millis()));
        by_site.insert(attr::TTL.to_owned(), ttl.clone());
        if let Some(tag) = address_tag {
            by_site.insert(CONN_ADDRESS.to_owned(), s(tag));
        }
        let mut by_id = Self::key(&format!("CID#{}", conn.connection_id), "CONN");
        if let Some(budget) = budget {
            by_id.insert(CONN_BUDGET.to_owned(), s(encode(budget)?));
        }
        by_id.insert(attr::SITE.to_owned(), s(conn.role.site().as_str()));
        let role = match &conn.role {
            SocketRole::Dashboard { .. } => "dashboard",
            SocketRole::Visitor { visitor_id, .. } => {
                by_id.insert("visitor".to_owned(), s(visitor_id));
                "visitor"
            }
        };
        by_id.insert("role".to_owned(), s(role));
        by_id.insert(attr::TTL.to_owned(), ttl);
        // Two plain writes, by id first: a crash between them leaves only an entry no
        // fan-out reads, which TTL removes (a transaction would cost twice the capacity).
        for item in [by_id, by_site] {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(|e| backend("PutItem", e))?;
        }
        Ok(())
    }

    /// Records that `site` must be swept at `at` (a deadline too near for the scheduled run
    /// to notice in time). Idempotent; one item per deadline, so no writer's wake replaces
    /// another's.
    pub async fn put_wake(&self, site: &SiteId, at: Timestamp) -> Result<(), StoreError> {
        let wake = Wake::new(site.clone(), at);
        let mut item = Self::key(WAKE_PK, &wake.sort_key);
        item.insert(attr::SITE.to_owned(), s(site.as_str()));
        item.insert(attr::DEADLINE.to_owned(), n(at.as_millis()));
        item.insert(
            attr::TTL.to_owned(),
            n(at.as_millis().div_euclid(1000) + WAKE_TTL_SLACK_SECS),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(())
    }

    /// Every wake not yet met, earliest first, and the poller lease as
    /// [`poller_until`](Self::poller_until) reads it: one strongly consistent Query (a wake
    /// written before this read is in it).
    pub async fn wakes(&self) -> Result<(Vec<Wake>, Option<Timestamp>), StoreError> {
        let mut wakes = Vec::new();
        let mut lease = None;
        for item in self.query_all(WAKE_PK, None, None).await? {
            if get_s(&item, attr::SK)? == POLLER_SK {
                lease = Self::lease(&item)?;
                continue;
            }
            wakes.push(Wake {
                site: SiteId(get_s(&item, attr::SITE)?.to_owned()),
                at: Timestamp::from_millis(get_n(&item, attr::DEADLINE)?),
                sort_key: get_s(&item, attr::SK)?.to_owned(),
            });
        }
        Ok((wakes, lease))
    }

    fn lease(item: &Item) -> Result<Option<Timestamp>, StoreError> {
        item.contains_key(POLLER_UNTIL)
            .then(|| get_n(item, POLLER_UNTIL).map(Timestamp::from_millis))
            .transpose()
    }

    /// Forgets wakes that were met (their sites swept). A wake already gone is not an error.
    pub async fn delete_wakes(&self, wakes: &[Wake]) -> Result<(), StoreError> {
        for wake in wakes {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(WAKE_PK, &wake.sort_key)))
                .send()
                .await
                .map_err(|e| backend("DeleteItem", e))?;
        }
        Ok(())
    }

    /// Until when an invocation has said it polls the wakes (`None`: none has, or it gave the
    /// lease back). A time in the past is a lease that ran out.
    pub async fn poller_until(&self) -> Result<Option<Timestamp>, StoreError> {
        match self.get_versioned(WAKE_PK, POLLER_SK).await? {
            Some(item) => Self::lease(&item),
            None => Ok(None),
        }
    }

    /// Takes the poller lease until `until` unless another invocation holds it as long or
    /// longer. Returns whether it was taken.
    pub async fn claim_poller(&self, until: Timestamp) -> Result<bool, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(WAKE_PK, POLLER_SK)))
            .update_expression("SET #u = :u")
            .condition_expression("attribute_not_exists(#u) OR #u < :u")
            .expression_attribute_names("#u", POLLER_UNTIL)
            .expression_attribute_values(":u", n(until.as_millis()))
            .send()
            .await;
        conditional("UpdateItem", out)
    }

    /// Gives back the lease taken until `until`; returns false when another invocation has
    /// taken it since (then it is theirs to give back).
    pub async fn release_poller(&self, until: Timestamp) -> Result<bool, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(WAKE_PK, POLLER_SK)))
            .update_expression("REMOVE #u")
            .condition_expression("#u = :u")
            .expression_attribute_names("#u", POLLER_UNTIL)
            .expression_attribute_values(":u", n(until.as_millis()))
            .send()
            .await;
        conditional("UpdateItem", out)
    }

    /// Takes the sweep lease of `site` for `holder` (a token unique to this sweep) until
    /// `until`, unless another holder's lease runs past `now`: then marks it `again` (its
    /// holder sweeps once more before giving it back, [`end_sweep`](Self::end_sweep)) and
    /// returns [`SweepClaim::Held`]. Both are conditional writes on the one item, so a lease
    /// given back between the two is noticed (the mark fails) and claimed. A lease that ran
    /// out (a holder that crashed) is taken over, its `again` cleared: the new holder sweeps
    /// anyway.
    pub async fn claim_sweep(
        &self,
        site: &SiteId,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<SweepClaim, StoreError> {
        // Bounded: each failed round is another invocation's claim or release in between.
        for _ in 0..8 {
            let claimed = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(&sweep_pk(site), SWEEP_SK)))
                .update_expression("SET #h = :h, #u = :u REMOVE #a")
                .condition_expression("attribute_not_exists(#h) OR #u < :now")
                .expression_attribute_names("#h", SWEEP_HOLDER)
                .expression_attribute_names("#u", SWEEP_UNTIL)
                .expression_attribute_names("#a", SWEEP_AGAIN)
                .expression_attribute_values(":h", s(holder))
                .expression_attribute_values(":u", n(until.as_millis()))
                .expression_attribute_values(":now", n(now.as_millis()))
                .send()
                .await;
            if conditional("UpdateItem", claimed)? {
                return Ok(SweepClaim::Taken);
            }
            let marked = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(&sweep_pk(site), SWEEP_SK)))
                .update_expression("SET #a = :t")
                .condition_expression("attribute_exists(#h) AND #u >= :now")
                .expression_attribute_names("#h", SWEEP_HOLDER)
                .expression_attribute_names("#u", SWEEP_UNTIL)
                .expression_attribute_names("#a", SWEEP_AGAIN)
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .expression_attribute_values(":now", n(now.as_millis()))
                .send()
                .await;
            if conditional("UpdateItem", marked)? {
                return Ok(SweepClaim::Held);
            }
        }
        Err(StoreError::Conflict)
    }

    /// Moves the end of `holder`'s sweep lease of `site` to `until` (a sweep that goes on);
    /// false when it is not `holder`'s any more (it ran out and was taken over).
    pub async fn renew_sweep(
        &self,
        site: &SiteId,
        holder: &str,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&sweep_pk(site), SWEEP_SK)))
            .update_expression("SET #u = :u")
            .condition_expression("#h = :h")
            .expression_attribute_names("#h", SWEEP_HOLDER)
            .expression_attribute_names("#u", SWEEP_UNTIL)
            .expression_attribute_values(":h", s(holder))
            .expression_attribute_values(":u", n(until.as_millis()))
            .send()
            .await;
        conditional("UpdateItem", out)
    }

    /// Ends `holder`'s sweep of `site`: gives the lease back unless another invocation marked
    /// it `again` meanwhile ([`claim_sweep`](Self::claim_sweep)); then keeps it until `until`,
    /// clears the mark and answers [`SweepEnd::Again`]. The release is one conditional
    /// `DeleteItem` (`holder` is the caller's and no `again`), so a mark lands either before
    /// it (the release fails and the holder sweeps again, reading the index after the mark)
    /// or after it (the mark fails, and the marking invocation claims the lease itself).
    pub async fn end_sweep(
        &self,
        site: &SiteId,
        holder: &str,
        until: Timestamp,
    ) -> Result<SweepEnd, StoreError> {
        let released = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&sweep_pk(site), SWEEP_SK)))
            .condition_expression("#h = :h AND attribute_not_exists(#a)")
            .expression_attribute_names("#h", SWEEP_HOLDER)
            .expression_attribute_names("#a", SWEEP_AGAIN)
            .expression_attribute_values(":h", s(holder))
            .send()
            .await;
        if conditional("DeleteItem", released)? {
            return Ok(SweepEnd::Released);
        }
        let kept = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&sweep_pk(site), SWEEP_SK)))
            .update_expression("SET #u = :u REMOVE #a")
            .condition_expression("#h = :h")
            .expression_attribute_names("#h", SWEEP_HOLDER)
            .expression_attribute_names("#u", SWEEP_UNTIL)
            .expression_attribute_names("#a", SWEEP_AGAIN)
            .expression_attribute_values(":h", s(holder))
            .expression_attribute_values(":u", n(until.as_millis()))
            .send()
            .await;
        Ok(if conditional("UpdateItem", kept)? {
            SweepEnd::Again
        } else {
            SweepEnd::Lost
        })
    }

    /// Gives `holder`'s sweep lease of `site` back whatever `again` says (a sweep that
    /// failed: the deadlines stay in the index and the wakes for the next invocation). A
    /// lease no longer `holder`'s is left alone.
    pub async fn abandon_sweep(&self, site: &SiteId, holder: &str) -> Result<(), StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&sweep_pk(site), SWEEP_SK)))
            .condition_expression("#h = :h")
            .expression_attribute_names("#h", SWEEP_HOLDER)
            .expression_attribute_values(":h", s(holder))
            .send()
            .await;
        // A lease no longer `holder`'s (the condition failed) is left alone.
        conditional("DeleteItem", out).map(drop)
    }

    /// Counts one request with the key whose hash is `key` in `window` (one item per key and
    /// window: a conditional `ADD` on its counter). `Ok(false)`, counting nothing, when the
    /// window already holds [`Window::max`](tippen_core::rate::Window::max) requests. The
    /// items expire (TTL) a minute after their window.
    pub async fn count_request(&self, key: &KeyHash, window: Window) -> Result<bool, StoreError> {
        self.count_in(&format!("RATE#{}", key.to_hex()), window)
            .await
    }

    /// Counts one request from client address `ip` in `window`, like
    /// [`count_request`](Self::count_request). The address is never stored: its counter is
    /// keyed by `HMAC-SHA256(secret, address)` (`RATE#IP#<hex>`), the secret made once per
    /// table ([`address_secret`](Self::address_secret)).
    pub async fn count_address(&self, ip: IpAddr, window: Window) -> Result<bool, StoreError> {
        let secret = self.address_secret().await?;
        self.count_in(&format!("RATE#IP#{}", secret.sign(&ip.to_string())), window)
            .await
    }

    /// The secret keying client addresses (shared by every invocation on the table): read,
    /// or made at the first use (a conditional put; the loser of a race reads the winner's).
    pub async fn address_secret(&self) -> Result<tippen_core::IdentitySecret, StoreError> {
        self.address_secret
            .get_or_try_init(|| async {
                let (pk, sk) = ADDRESS_SECRET_KEY;
                for _ in 0..3 {
                    if let Some(item) = self.get_versioned(pk, sk).await? {
                        return Ok(tippen_core::IdentitySecret::new(get_s(
                            &item,
                            ADDRESS_SECRET_ATTR,
                        )?));
                    }
                    let ids = tippen_core::ids::SecureIds;
                    let fresh: String = (0..4)
                        .map(|_| format!("{:016x}", tippen_core::ids::IdGenerator::next_u64(&ids)))
                        .collect();
                    let mut item = Self::key(pk, sk);
                    item.insert(ADDRESS_SECRET_ATTR.to_owned(), s(&fresh));
                    if self.put_new(item).await? {
                        return Ok(tippen_core::IdentitySecret::new(fresh));
                    }
                }
                Err(StoreError::Backend(
                    "the client address secret could be neither read nor made".into(),
                ))
            })
            .await
            .cloned()
    }

    /// Puts `item` unless an item with its key exists: `Ok(false)`, writing nothing, when one
    /// does.
    async fn put_new(&self, item: Item) -> Result<bool, StoreError> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        conditional("PutItem", out)
    }

    /// One conditional `ADD` on the counter of partition `pk` in `window`.
    async fn count_in(&self, pk: &str, window: Window) -> Result<bool, StoreError> {
        let ttl = window.ends_at.as_millis() / 1000 + 60;
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, &format!("W#{}", window.index))))
            .update_expression("SET #t = :ttl ADD #n :one")
            .condition_expression("attribute_not_exists(#n) OR #n < :max")
            .expression_attribute_names("#n", attr::COUNTER)
            .expression_attribute_names("#t", attr::TTL)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(window.max))
            .expression_attribute_values(":ttl", n(ttl))
            .send()
            .await;
        conditional("UpdateItem", out)
    }

    fn connection_key(conn: &Connection) -> Item {
        Self::key(&format!("CONN#{}", conn.role.site()), &conn.sort_key())
    }

    /// Appends messages to the outbox of a connection not greeted yet. Returns false (nothing
    /// appended) when the connection has been greeted meanwhile (post directly) or is gone.
    pub async fn append_outbox(
        &self,
        conn: &Connection,
        texts: &[impl std::ops::Deref<Target = str>],
    ) -> Result<bool, StoreError> {
        let list = AttributeValue::L(texts.iter().map(|t| s(&**t)).collect());
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(conn)))
            .update_expression("SET outbox = list_append(if_not_exists(outbox, :empty), :m)")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(greeted)")
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":m", list)
            .send()
            .await;
        conditional("UpdateItem", out)
    }

    /// Marks the connection greeted (its first message was sent) and takes its outbox: the
    /// messages fanned out since it was stored, in order. `None` when the connection is gone.
    pub async fn greet_connection(
        &self,
        conn: &Connection,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::connection_key(conn)))
            .update_expression("SET greeted = :t REMOVE outbox")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match out {
            Ok(out) => {
                let old = out.attributes.unwrap_or_default();
                let outbox = match old.get("outbox") {
                    Some(AttributeValue::L(items)) => items
                        .iter()
                        .filter_map(|v| v.as_s().ok().cloned())
                        .collect(),
                    _ => Vec::new(),
                };
                Ok(Some(outbox))
            }
            Err(e) if condition_failed(&e) => Ok(None),
            Err(e) => Err(backend("UpdateItem", e)),
        }
    }

    /// The connection with this id, if stored.
    pub async fn connection(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        Ok(self
            .connection_with_budget(connection_id)
            .await?
            .map(|(c, _)| c))
    }

    /// The connection with this id, if stored, and its snapshot budget (a dashboard's; `None`
    /// for a visitor channel or a connection stored without one).
    pub async fn connection_with_budget(
        &self,
        connection_id: &str,
    ) -> Result<Option<(Connection, Option<SnapshotBudget>)>, StoreError> {
        let Some(item) = self
            .get_versioned(&format!("CID#{connection_id}"), "CONN")
            .await?
        else {
            return Ok(None);
        };
        let site = SiteId(get_s(&item, attr::SITE)?.to_owned());
        let role = match get_s(&item, "role")? {
            "visitor" => SocketRole::Visitor {
                site,
                visitor_id: get_s(&item, "visitor")?.to_owned(),
            },
            _ => SocketRole::Dashboard { site },
        };
        let budget = match item.get(CONN_BUDGET).and_then(|v| v.as_s().ok()) {
            Some(json) => Some(serde_json::from_str(json).map_err(|e| backend("decode", e))?),
            None => None,
        };
        Ok(Some((
            Connection {
                connection_id: connection_id.to_owned(),
                role,
            },
            budget,
        )))
    }

    /// Stores a dashboard connection's spent snapshot budget, if it still is `old` (the
    /// budget read with the connection): `false` when another frame of the connection spent
    /// from it meanwhile (read again and retry) or the connection is gone.
    pub async fn save_snapshot_budget(
        &self,
        connection_id: &str,
        old: Option<&SnapshotBudget>,
        new: &SnapshotBudget,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&format!("CID#{connection_id}"), "CONN")))
            .update_expression("SET #b = :new")
            .expression_attribute_names("#b", CONN_BUDGET)
            .expression_attribute_values(":new", s(encode(new)?));
        req = match old {
            Some(old) => req
                .condition_expression("attribute_exists(pk) AND #b = :old")
                .expression_attribute_values(":old", s(encode(old)?)),
            None => req.condition_expression("attribute_exists(pk) AND attribute_not_exists(#b)"),
        };
        conditional("UpdateItem", req.send().await)
    }

    /// How many connections `site` has, and how many of them came from the address whose
    /// [`address_tag`](tippen_core::quota::address_tag) is `address_tag`: one Query of the
    /// site's connection partition reading only the address and the expiry of each (a
    /// connection past its TTL, whose `$disconnect` was lost, does not count).
    pub async fn count_connections(
        &self,
        site: &SiteId,
        address_tag: Option<&str>,
        now: Timestamp,
    ) -> Result<(usize, usize), StoreError> {
        let now_secs = now.as_millis().div_euclid(1000);
        let (mut on_site, mut from_address) = (0, 0);
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(format!("CONN#{site}")))
                .projection_expression("#a, #t")
                .expression_attribute_names("#a", CONN_ADDRESS)
                .expression_attribute_names("#t", attr::TTL)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            for item in out.items.unwrap_or_default() {
                if get_n(&item, attr::TTL).is_ok_and(|ttl| ttl <= now_secs) {
                    continue;
                }
                on_site += 1;
                let tag = item.get(CONN_ADDRESS).and_then(|v| v.as_s().ok());
                if address_tag.is_some() && tag.map(String::as_str) == address_tag {
                    from_address += 1;
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok((on_site, from_address)),
            }
        }
    }

    /// Forgets a connection (both entries). Removing one already gone is not an error.
    pub async fn remove_connection(&self, conn: &Connection) -> Result<(), StoreError> {
        // By site first: once it is gone no fan-out reaches the connection.
        for key in [
            Self::connection_key(conn),
            Self::key(&format!("CID#{}", conn.connection_id), "CONN"),
        ] {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key))
                .send()
                .await
                .map_err(|e| backend("DeleteItem", e))?;
        }
        Ok(())
    }

    /// The connections of `role`: its site's dashboards, or its visitor's channels.
    pub async fn connections(&self, role: &SocketRole) -> Result<Vec<FanoutTarget>, StoreError> {
        let pk = format!("CONN#{}", role.site());
        self.query_all(&pk, Some(&Connection::prefix(role)), None)
            .await?
            .iter()
            .map(|item| {
                Ok(FanoutTarget {
                    connection: Connection {
                        connection_id: get_s(item, "cid")?.to_owned(),
                        role: role.clone(),
                    },
                    greeted: item.contains_key("greeted"),
                    connected_at: Timestamp::from_millis(get_n(item, "at").unwrap_or(0)),
                })
            })
            .collect()
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn put_site(&self, site: &Site) -> Result<(), StoreError> {
        let old: Option<Site> = match self.get_versioned(SITES_PK, site.id.as_str()).await? {
            Some(item) => Some(decode(&item)?),
            None => None,
        };
        let mut tx = Vec::new();
        let mut site_item = Self::key(SITES_PK, site.id.as_str());
        site_item.insert(attr::DOC.to_owned(), s(encode(site)?));
        site_item.insert(attr::VERSION.to_owned(), n(1));
        let put = |item: Item| -> Result<TransactWriteItem, StoreError> {
            Ok(TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .build()
                        .map_err(|e| backend("TransactWriteItems", e))?,
                )
                .build())
        };
        tx.push(put(site_item)?);
        let new_hashes: Vec<KeyHash> = site.key_hashes().collect();
        for hash in &new_hashes {
            let mut item = Self::key(&key_pk(hash), "KEY");
            item.insert(attr::SITE.to_owned(), s(site.id.as_str()));
            tx.push(put(item)?);
        }
        for hash in old.iter().flat_map(|o| o.key_hashes()) {
            if !new_hashes.contains(&hash) {
                tx.push(
                    TransactWriteItem::builder()
                        .delete(
                            Delete::builder()
                                .table_name(&self.table)
                                .set_key(Some(Self::key(&key_pk(&hash), "KEY")))
                                .build()
                                .map_err(|e| backend("TransactWriteItems", e))?,
                        )
                        .build(),
                );
            }
        }
        self.client
            .transact_write_items()
            .set_transact_items(Some(tx))
            .send()
            .await
            .map_err(|e| backend("TransactWriteItems", e))?;
        self.sites.clear();
        Ok(())
    }

    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        self.query_all(SITES_PK, None, None)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    async fn site(&self, id: &SiteId) -> Result<Option<Site>, StoreError> {
        self.get_versioned(SITES_PK, id.as_str())
            .await?
            .map(|item| decode(&item))
            .transpose()
    }

    async fn spend_ticket(
        &self,
        site: &SiteId,
        token: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        // One conditional put: taken when absent or when the stored `until` has passed
        // (DynamoDB's TTL removes items only eventually, so the item's own `until` decides).
        // Kept for TTL's cleanup a minute past `until`.
        let mut item = Self::key(&format!("TICKET#{site}"), token);
        item.insert(attr::TTL.to_owned(), n(until.as_millis() / 1000 + 60));
        item.insert(attr::UNTIL.to_owned(), n(until.as_millis()));
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #u <= :now")
            .expression_attribute_names("#u", attr::UNTIL)
            .expression_attribute_values(":now", n(now.as_millis()))
            .send()
            .await;
        conditional("PutItem", out)
    }

    async fn log_alert(
        &self,
        site: &SiteId,
        entry: &tippen_core::alerts::AlertLogEntry,
        _keep: usize,
    ) -> Result<(), StoreError> {
        // One item per entry, sorted by time; DynamoDB's TTL drops it after 30 days (a trim
        // by count would cost a query and deletes per entry).
        use tippen_core::IdGenerator;
        let sk = format!(
            "{:015}#{}",
            entry.at.max(0),
            tippen_core::SecureIds.id("log")
        );
        let mut item = Self::key(&format!("ALERTLOG#{site}"), &sk);
        item.insert(attr::DOC.to_owned(), s(encode(entry)?));
        item.insert(
            attr::TTL.to_owned(),
            n(entry.at / 1000 + ALERT_LOG_TTL_SECS),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(())
    }

    async fn alert_log(
        &self,
        site: &SiteId,
        limit: usize,
    ) -> Result<Vec<tippen_core::alerts::AlertLogEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("ALERTLOG#{site}")))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| backend("Query", e))?;
        out.items.unwrap_or_default().iter().map(decode).collect()
    }

    async fn log_audit(
        &self,
        entry: &tippen_core::audit::AuditEntry,
        keep_after: Timestamp,
    ) -> Result<(), StoreError> {
        use tippen_core::IdGenerator;
        let at = entry.at.as_millis();
        let sk = format!(
            "{}#{}",
            audit_sk_prefix(entry.at),
            tippen_core::SecureIds.id("audit")
        );
        let mut item = Self::key(&audit_pk(&entry.site), &sk);
        item.insert(attr::DOC.to_owned(), s(encode(entry)?));
        // Kept as long after the entry as the write's retention reaches back before it.
        let retention = at.saturating_sub(keep_after.as_millis()).max(0);
        item.insert(
            attr::TTL.to_owned(),
            n(at.saturating_add(retention).div_euclid(1000)),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(())
    }

    async fn audit_log(
        &self,
        site: &SiteId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<tippen_core::audit::AuditEntry>, StoreError> {
        let mut entries = Vec::new();
        let mut start: Option<Item> = None;
        // One page answers a read of up to `AUDIT_READ_MAX` small entries; more pages only
        // when DynamoDB's 1 MB page ends first.
        while entries.len() < limit {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND sk >= :since")
                .expression_attribute_values(":pk", s(audit_pk(site)))
                .expression_attribute_values(":since", s(audit_sk_prefix(since)))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - entries.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            for item in out.items.unwrap_or_default() {
                entries.push(decode(&item)?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(entries)
    }

    async fn site_by_key(&self, key: &KeyHash) -> Result<Option<Site>, StoreError> {
        if let Some((site, age)) = self.sites.get(key) {
            // Which instance answered from what it kept, and how old: a change of the site
            // reaches the other instances only as their entries age out.
            tracing::debug!(
                site = %site.id,
                disabled = site.disabled,
                age_ms = age.as_millis(),
                "site found by key in this instance's cache"
            );
            return Ok(Some(site));
        }
        let generation = self.sites.generation();
        let Some(entry) = self.get_versioned(&key_pk(key), "KEY").await? else {
            return Ok(None);
        };
        let id = get_s(&entry, attr::SITE)?;
        let Some(item) = self.get_versioned(SITES_PK, id).await? else {
            return Ok(None);
        };
        let site: Site = decode(&item)?;
        // A key entry left behind by a racing rotation or revocation never authorizes: the key
        // must be one of the site's (a primary key or a credential, expired or not: expiry is
        // the core's to judge).
        if !site.key_hashes().any(|h| h.matches(key)) {
            return Ok(None);
        }
        tracing::debug!(
            site = %site.id,
            disabled = site.disabled,
            "site found by key in the table"
        );
        self.sites.put(*key, &site, generation);
        Ok(Some(site))
    }

    async fn visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Option<Versioned<VisitorRecord>>, StoreError> {
        self.record(&visitor_pk(site), visitor_id).await
    }

    async fn save_visitor(
        &self,
        site: &SiteId,
        record: &VisitorRecord,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let item = Self::deadline_item(
            &visitor_pk(site),
            &record.visitor_id,
            site.as_str(),
            record,
            record.deadline,
        )?;
        tracing::trace!(
            site = %site,
            visitor = %record.visitor_id,
            deadline_ms = record.deadline.as_millis(),
            "visitor written with its deadline index entry"
        );
        self.put_versioned(item, expected).await
    }

    async fn remove_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        self.delete_versioned(&visitor_pk(site), visitor_id, expected)
            .await
    }

    fn numbers_before_writes(&self) -> bool {
        // An invocation may be cut off (its timeout) between a write and its numbers.
        true
    }

    async fn visitors(&self, site: &SiteId) -> Result<Vec<VisitorRecord>, StoreError> {
        self.records(&visitor_pk(site)).await
    }

    async fn count_visitors(&self, site: &SiteId) -> Result<usize, StoreError> {
        self.count_all(&visitor_pk(site)).await
    }

    async fn due_visitors(
        &self,
        site: &SiteId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<VisitorRecord>>, StoreError> {
        self.due_records(site.as_str(), now, limit).await
    }

    async fn next_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError> {
        self.next_due(site.as_str()).await
    }

    async fn advance_sequence(&self, site: &SiteId, by: u64) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&format!("SEQ#{site}"), "SEQ")))
            .update_expression("ADD #n :by")
            .expression_attribute_names("#n", attr::COUNTER)
            .expression_attribute_values(":by", n(by))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| backend("UpdateItem", e))?;
        let attrs = out.attributes.unwrap_or_default();
        Ok(get_n(&attrs, attr::COUNTER)? as u64)
    }

    async fn sequence(&self, site: &SiteId) -> Result<u64, StoreError> {
        match self.get_versioned(&format!("SEQ#{site}"), "SEQ").await? {
            Some(item) => Ok(get_n(&item, attr::COUNTER)? as u64),
            None => Ok(0),
        }
    }

    async fn cached_lookup(&self, ip: IpAddr) -> Result<Option<CachedLookup>, StoreError> {
        self.get_versioned(&format!("IP#{ip}"), "CACHE")
            .await?
            .map(|item| decode(&item))
            .transpose()
    }

    async fn put_cached_lookup(&self, ip: IpAddr, entry: &CachedLookup) -> Result<(), StoreError> {
        let mut item = Self::key(&format!("IP#{ip}"), "CACHE");
        item.insert(attr::DOC.to_owned(), s(encode(entry)?));
        item.insert(attr::VERSION.to_owned(), n(1));
        item.insert(
            attr::TTL.to_owned(),
            n(entry.expires_at.as_millis().div_euclid(1000)),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(())
    }

    async fn enrichment_stats(&self, site: &SiteId) -> Result<EnrichmentStats, StoreError> {
        let Some(item) = self.get_versioned(&stats_pk(site), "STATS").await? else {
            return Ok(EnrichmentStats::default());
        };
        // `st.<field>` and `st.<field>.<key>` number attributes back into the JSON shape.
        let mut counters = Vec::new();
        for (name, value) in &item {
            let Some(path) = name.strip_prefix(STATS_PREFIX) else {
                continue;
            };
            let count: u64 = value
                .as_n()
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| StoreError::Corrupt(format!("counter {name} is not a number")))?;
            counters.push((path.to_owned(), count));
        }
        EnrichmentStats::from_flat_counters(counters)
            .map_err(|e| StoreError::Corrupt(format!("enrichment counters of {site}: {e}")))
    }

    async fn record_enrichment(
        &self,
        site: &SiteId,
        events: &[EnrichmentEvent],
    ) -> Result<(), StoreError> {
        // One atomic `ADD` of every counter the batch moves: no read, no retry, and two
        // concurrent batches both count.
        let mut delta = EnrichmentStats::default();
        for e in events {
            delta.record(*e);
        }
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(&stats_pk(site), "STATS")));
        let mut adds = Vec::new();
        for (i, (name, by)) in delta.flat_counters().into_iter().enumerate() {
            adds.push(format!("#c{i} :c{i}"));
            req = req
                .expression_attribute_names(format!("#c{i}"), format!("{STATS_PREFIX}{name}"))
                .expression_attribute_values(format!(":c{i}"), n(by));
        }
        if adds.is_empty() {
            return Ok(());
        }
        req.update_expression(format!("ADD {}", adds.join(", ")))
            .send()
            .await
            .map_err(|e| backend("UpdateItem", e))?;
        Ok(())
    }

    async fn user(
        &self,
        site: &SiteId,
        user_id: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        self.record(&user_pk(site), user_id).await
    }

    async fn save_user(
        &self,
        site: &SiteId,
        record: &UserRecord,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let pk = user_pk(site);
        let item = Self::deadline_item(&pk, &record.user_id, &pk, record, record.deadline)?;
        self.put_versioned(item, expected).await
    }

    async fn remove_user(
        &self,
        site: &SiteId,
        user_id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        self.delete_versioned(&user_pk(site), user_id, expected)
            .await
    }

    async fn users(&self, site: &SiteId) -> Result<Vec<UserRecord>, StoreError> {
        self.records(&user_pk(site)).await
    }

    async fn count_users(&self, site: &SiteId) -> Result<usize, StoreError> {
        self.count_all(&user_pk(site)).await
    }

    async fn due_users(
        &self,
        site: &SiteId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<UserRecord>>, StoreError> {
        self.due_records(&user_pk(site), now, limit).await
    }

    async fn next_user_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError> {
        self.next_due(&user_pk(site)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(ttl: Duration) -> SiteCache {
        SiteCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    #[test]
    fn a_cached_site_ages_from_when_its_read_began() {
        let ttl = Duration::from_secs(2);
        let sites = cache(ttl);
        let key = KeyHash::of("pk");
        let site = Site::new("a", "A", "pk", "sk");
        // A read that began just now is kept.
        sites.put(key, &site, sites.generation());
        assert_eq!(sites.get(&key).map(|(s, _)| s.id), Some(site.id.clone()));
        // A read that took the whole ttl (a slow table) is not kept past it: what it read may
        // be older than every later request may see.
        let sites = cache(ttl);
        let Some(began) = Instant::now().checked_sub(ttl) else {
            return; // a clock this young cannot express the case
        };
        let slow = Generation {
            began,
            ..sites.generation()
        };
        sites.put(key, &site, slow);
        assert!(sites.get(&key).is_none());
    }

    #[test]
    fn a_read_that_began_before_a_clear_is_not_kept() {
        let sites = cache(Duration::from_secs(30));
        let key = KeyHash::of("pk");
        let before = sites.generation();
        sites.clear();
        sites.put(key, &Site::new("a", "A", "pk", "sk"), before);
        assert!(sites.get(&key).is_none());
        sites.put(key, &Site::new("a", "A", "pk", "sk"), sites.generation());
        assert!(sites.get(&key).is_some());
    }
}
