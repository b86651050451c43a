#![doc = include_str!("../README.md")]
//!
//! ## Design
//!
//! [`RedisStore`] implements the core's [`Store`] contract on one Redis (or a Redis Cluster):
//!
//! - **One script per conditional write.** [`Store::save_visitor`] and [`Store::save_user`]
//!   are one Lua script each: check the stored version, write the record with its new
//!   version, move its entry in the site's deadline sorted set. [`Store::remove_visitor`] and
//!   [`Store::remove_user`] check the version, delete the record and its index entry. Redis runs
//!   a script alone, so two replicas writing one visitor at once see exactly one win and one
//!   [`StoreError::Conflict`]; the core re-reads and retries, and no update is lost.
//! - **Deadlines in a sorted set** per site (score: the deadline in milliseconds), so
//!   [`Store::due_visitors`] is one `ZRANGEBYSCORE … LIMIT` (O(log n + k)), read together with
//!   the records in one script, and [`Store::next_deadline`] is the set's first score.
//! - **A heartbeat is a touch.** When a heartbeat changes nothing a dashboard sees
//!   ([`VisitorRecord::only_touched_since`]), the core calls [`Store::touch_visitor`]: one
//!   script checks the version, writes the few fields the heartbeat moved (last activity, the
//!   client's timestamp, each tab's `last_seen`, the deadline; about 100 bytes) beside the
//!   record at the next version, and moves the deadline with `ZADD … XX GT`. The record is
//!   not rewritten and no sequence number is taken. Every read applies the touch; the next
//!   save writes the whole record and drops it.
//! - **Sequence numbers** per site by `HINCRBY` on the site's meta hash: atomic, never
//!   overlapping, shared by every replica.
//! - **Keys hash-tagged by site**: every key of a site starts with `{<namespace>:<site id>}`, so
//!   it lives in one Redis Cluster slot and every script touches one slot. Sites and their key
//!   index share the tag `{<namespace>}`; each enrichment cache entry is a key of its own.
//! - **No silent replays.** The client is built to send a command at most once: a write whose
//!   connection drops before the answer fails with [`StoreError::Backend`] rather than being
//!   sent again (a replayed conditional write could count a page view twice after its caller
//!   retried). Lost connections are re-established in the background with exponential backoff;
//!   every command has a timeout ([`RedisOptions::command_timeout`]).
//!
//! ## Keys
//!
//! With the default namespace `tippen`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{tippen}:sites` | hash | site id → the site as JSON (key hashes only) |
//! | `{tippen}:site_keys` | hash | hex SHA-256 of a key → site id |
//! | `{tippen}:site_key_list` | hash | site id → its key hashes, comma-separated |
//! | `{tippen:<site>}:visitors` | hash | visitor id → `<version>:<record as JSON>` |
//! | `{tippen:<site>}:visitor_deadlines` | sorted set | visitor id, scored by deadline (ms) |
//! | `{tippen:<site>}:visitor_touches` | hash | visitor id → `<version>:<what its last heartbeats moved>` |
//! | `{tippen:<site>}:users` | hash | user id → `<version>:<record as JSON>` |
//! | `{tippen:<site>}:user_deadlines` | sorted set | user id, scored by deadline (ms) |
//! | `{tippen:<site>}:user_touches` | hash | (unused: support users are never touched) |
//! | `{tippen:<site>}:meta` | hash | `sequence` → the site's message counter; `audit` → the number of its last audit entry |
//! | `{tippen:<site>}:alert_log` | list | the site's alert log, newest first, as JSON |
//! | `{tippen:<site>}:audit` | sorted set | the site's audit log: `<number, 20 digits>:<entry as JSON>`, scored by the entry's time (ms) |
//! | `{tippen:<site>}:enrichment` | hash | counter name → count (`failures.<kind>` for maps) |
//! | `{tippen:<site>}:log` | stream | the site's last numbered dashboard messages (entry id `<seq>-1`, field `m`: the text) |
//! | `{tippen:<site>}:bus` | channel | each numbered dashboard message as published (`<seq> <text>`) |
//! | `tippen:lookup:<ip>` | string | the cached lookup as JSON, expiring after its lifetime |
//! | `tippen:lookup_claim:<ip>` | string | the token of the replica looking the address up, expiring after [`PlannerConfig::claim_hold`](tippen_core::enrichment::PlannerConfig::claim_hold) |
//! | `tippen:rl:ip:<hash>` | string | [`RedisRateLimiter`]: one client address's bucket (its theoretical arrival time, µs on Redis's clock), expiring once the bucket is full again; `<hash>`: the address's HMAC-SHA-256 under the secret, 16 bytes in hex |
//! | `tippen:rl:key:<key hash>` | string | the same for one presented key (hex SHA-256), under the host's per-key limit |
//! | `tippen:rl:site_key:<key hash>` | string | the same for one key of a site with its own per-key limit |
//! | `tippen:rl:secret` | string | the random secret addresses are hashed under ([`RedisRateLimiter::new`]; none with [`RedisRateLimiter::with_secret`]) |
//!
//! A site id may hold any character: the key of a site ends with a fixed suffix without `}`,
//! so two sites never share a key, and all keys of one site share one hash tag.
//!
//! - **Numbering is publishing.** A store that several replicas share numbers a change's
//!   dashboard messages and publishes them in one script
//!   ([`Store::advance_sequence_publishing`]): `HINCRBY` of the sequence, `XADD … MAXLEN ~` of
//!   each numbered message to the site's log (entry id `<seq>-1`, at least
//!   [`RedisOptions::log_len`] kept) and `PUBLISH` on the site's channel. [`RedisBus`] follows
//!   the channels of the sites whose dashboards a replica holds and replays a range from the
//!   log (`XRANGE`) when the replica missed some.
//! - **The audit log is a sorted set** per site scored by each entry's time: one script
//!   appends an entry (`ZADD`) and drops the site's entries older than the retention boundary
//!   (`ZREMRANGEBYSCORE`) and beyond [`AUDIT_KEEP_MAX`](tippen_core::audit::AUDIT_KEEP_MAX)
//!   (`ZREMRANGEBYRANK`); [`Store::audit_log`] is one `ZREVRANGEBYSCORE … LIMIT`. It is not
//!   deleted when a site is retired (nor is the alert log).
//! - **Shared rate limits.** [`RedisRateLimiter`] counts the axum host's rate limits for every
//!   replica at once: GCRA in one script per check, on Redis's clock, one expiring key per
//!   bucket, client addresses hashed under a secret.
//!
//! - **One provider request per address across replicas.** Before a replica sends a lookup,
//!   it claims the address (`SET … NX PX`, [`Store::claim_lookup`]); a replica finding the
//!   claim held keeps its visitors waiting and checks the shared cache every
//!   [`PlannerConfig::claim_poll`](tippen_core::enrichment::PlannerConfig::claim_poll) until
//!   the result is there (or the claim is gone: then it looks up itself). The claimer
//!   releases the claim after writing the cache.
//!
//! ## What the store does not do (yet)
//!
//! Redis's durability is the server's (RDB/AOF as configured), so [`Store::sync`] has
//! nothing to wait for. The axum host's rate limits are per replica unless it counts them with a
//! [`RedisRateLimiter`]. The enrichment provider's rate limit
//! ([`PlannerConfig::rate_limit`](tippen_core::enrichment::PlannerConfig::rate_limit)) is
//! counted per replica: give each replica its share of the provider's limit.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bus;
mod limits;
mod scripts;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::{
    Builder, ClientLike, Config, Expiration, HashesInterface, KeysInterface, ListInterface,
    ReconnectPolicy, SortedSetsInterface,
};
use fred::types::{MultipleKeys, SetOptions};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use thiserror::Error;
use tippen_core::enrichment::{CachedLookup, EnrichmentEvent, EnrichmentStats};
use tippen_core::presence::VisitorRecord;
use tippen_core::support::UserRecord;
use tippen_core::{KeyHash, Site, SiteId, Store, StoreError, Timestamp, Version, Versioned};

pub use bus::RedisBus;
pub use limits::RedisRateLimiter;
use scripts::Scripts;

/// The default key namespace.
pub const DEFAULT_NAMESPACE: &str = "tippen";

/// The default length of each site's message log ([`RedisOptions::log_len`]).
pub const DEFAULT_LOG_LEN: usize = 10_000;

/// How a [`RedisStore`] connects and names its keys. `Default`: namespace `tippen`, 5 s
/// command timeout, 5 s connect timeout, a log of 10,000 messages per site.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// The first part of every key (`{<namespace>:<site>}:…`), so several deployments or test
    /// runs can share one Redis. Must not contain `{` or `}`.
    pub namespace: String,
    /// How long a command may wait for its answer before it fails with
    /// [`StoreError::Backend`].
    pub command_timeout: Duration,
    /// How long connecting (TCP, TLS, `AUTH`, `SELECT`) may take.
    pub connect_timeout: Duration,
    /// How many numbered dashboard messages each site's log keeps at least (`XADD … MAXLEN ~`),
    /// for a replica that missed some to replay them ([`RedisBus`]). At least 1.
    pub log_len: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            command_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            log_len: DEFAULT_LOG_LEN,
        }
    }
}

impl RedisOptions {
    /// The default options with another key namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The options with another log length ([`log_len`](Self::log_len)).
    pub fn with_log_len(mut self, log_len: usize) -> Self {
        self.log_len = log_len;
        self
    }

    /// The options with another command timeout.
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }
}

/// Connecting to Redis failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The URL could not be parsed (`redis://[user:password@]host[:port][/db]`), or asks for
    /// TLS (`rediss://…`), which this build does not support. The URL itself is not
    /// repeated, since it may hold a password.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// The options are unusable (a namespace with `{` or `}`, or an empty one).
    #[error("invalid Redis store options: {0}")]
    Options(String),
    /// The server could not be reached or refused the connection (`AUTH`, `SELECT`).
    #[error("cannot connect to Redis at {server}: {source}")]
    Connect {
        /// The server's host and port (no credentials).
        server: String,
        /// The client's error.
        source: fred::error::Error,
    },
}

/// A [`Store`] on Redis, shared by every replica connected to the same server. See the
/// [crate docs](crate) for the design and the keys.
///
/// One store is one multiplexed connection (commands are pipelined); clone the store to share
/// it, connect another one for a second connection.
#[derive(Clone, Debug)]
pub struct RedisStore {
    client: fred::clients::Client,
    scripts: Scripts,
    namespace: String,
    log_len: usize,
    /// Names this store's enrichment lookup claims (random per connection).
    claimer: String,
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[user:password@]host[:port][/db]`) with the
    /// default options.
    pub async fn connect(url: &str) -> Result<Self, RedisError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to the Redis at `url` with `options`.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, RedisError> {
        let namespace = options.namespace;
        let log_len = options.log_len.max(1);
        if namespace.is_empty() || namespace.contains(['{', '}']) {
            return Err(RedisError::Options(format!(
                "namespace {namespace:?} must be non-empty and hold no '{{' or '}}'"
            )));
        }
        // Without a TLS feature the client would connect to a `rediss://` URL in plain text
        // (sending the password in the clear); refuse instead.
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        if scheme.starts_with("rediss") || scheme.starts_with("valkeys") {
            return Err(RedisError::Url(format!(
                "TLS ({scheme}://) is not supported by this build of tippen-redis"
            )));
        }
        let config = Config::from_url(url).map_err(|e| RedisError::Url(e.details().to_owned()))?;
        let server = describe_server(&config);
        let (command_timeout, connect_timeout) = (options.command_timeout, options.connect_timeout);
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = connect_timeout;
                c.internal_command_timeout = connect_timeout;
                // At most once: never replay a write whose answer was lost (see the crate docs).
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| p.default_command_timeout = command_timeout)
            // Unlimited attempts, 100 ms doubling up to 5 s.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()
            .map_err(|e| RedisError::Url(e.details().to_owned()))?;
        client.init().await.map_err(|source| RedisError::Connect {
            server: server.clone(),
            source,
        })?;
        tracing::info!(%server, %namespace, "connected to Redis");
        Ok(RedisStore {
            client,
            scripts: Scripts::new(),
            namespace,
            log_len,
            claimer: claimer_token()?,
        })
    }

    /// The key namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Closes the connection (pending commands finish first). Clones of the store close too.
    pub async fn quit(&self) -> Result<(), StoreError> {
        self.client.quit().await.map_err(backend)
    }

    /// Retires a site: its keys stop finding it at once, then its visitors, support users,
    /// sequence and counters are deleted. Returns whether the site existed. Not part of the
    /// [`Store`] contract (a host retires sites its configuration no longer lists); the
    /// shared enrichment cache is kept.
    pub async fn remove_site(&self, site: &SiteId) -> Result<bool, StoreError> {
        // Two steps, since the site index and the site's own keys are in different slots:
        // first no key finds the site (no new writes), then its data goes.
        let removed: i64 = self
            .eval(
                &self.scripts.remove_site,
                self.site_index_keys(),
                vec![site.as_str().to_owned()],
            )
            .await?;
        let keys: Vec<String> = SITE_KINDS.iter().map(|k| self.site_key(site, k)).collect();
        let _: i64 = self.client.del(keys).await.map_err(backend)?;
        tracing::info!(%site, existed = removed == 1, "site retired");
        Ok(removed == 1)
    }

    fn global_key(&self, kind: &str) -> String {
        format!("{{{}}}:{kind}", self.namespace)
    }

    fn site_key(&self, site: &SiteId, kind: &str) -> String {
        format!("{{{}:{}}}:{kind}", self.namespace, site.as_str())
    }

    /// The site's channel, on which its numbered messages are published (`<seq> <text>`).
    fn channel(&self, site: &SiteId) -> String {
        self.site_key(site, "bus")
    }

    fn lookup_key(&self, ip: IpAddr) -> String {
        format!("{}:lookup:{ip}", self.namespace)
    }

    fn claim_key(&self, ip: IpAddr) -> String {
        format!("{}:lookup_claim:{ip}", self.namespace)
    }

    fn site_index_keys(&self) -> Vec<String> {
        vec![
            self.global_key("sites"),
            self.global_key("site_keys"),
            self.global_key("site_key_list"),
        ]
    }

    async fn eval<R: fred::prelude::FromValue>(
        &self,
        script: &fred::types::scripts::Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<R, StoreError> {
        let keys: MultipleKeys = keys.into();
        script
            .evalsha_with_reload(&self.client, keys, args)
            .await
            .map_err(backend)
    }

    async fn get_versioned<T: Touched>(
        &self,
        keys: RecordKeys,
        id: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let raws: Vec<String> = self
            .eval(&self.scripts.read, keys.to_vec(), vec![id.to_owned()])
            .await?;
        match raws.as_slice() {
            [] => Ok(None),
            [record] => decode_versioned(record, "").map(Some),
            [record, touch] => decode_versioned(record, touch).map(Some),
            _ => Err(StoreError::Corrupt(format!(
                "reading {id:?} answered {} values",
                raws.len()
            ))),
        }
    }

    async fn all_records<T: Touched>(&self, keys: RecordKeys) -> Result<Vec<T>, StoreError> {
        let raws: Vec<String> = self
            .eval(&self.scripts.all, keys.to_vec(), Vec::new())
            .await?;
        pairs(&raws)?
            .map(|(record, touch)| decode_versioned(record, touch).map(|v| v.value))
            .collect()
    }

    async fn count(&self, hash: String) -> Result<usize, StoreError> {
        let n: u64 = self.client.hlen(hash).await.map_err(backend)?;
        usize::try_from(n).map_err(|_| StoreError::Backend(format!("HLEN answered {n}")))
    }

    async fn save_versioned<T: Serialize>(
        &self,
        keys: RecordKeys,
        id: &str,
        record: &T,
        deadline: Timestamp,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        let json = serde_json::to_string(record).map_err(corrupt)?;
        let expected = expected.map_or_else(String::new, |v| v.0.to_string());
        self.conditional(&self.scripts.save, keys, id, expected, json, deadline)
            .await
    }

    /// Runs the save or the touch script and reads its answer.
    async fn conditional(
        &self,
        script: &fred::types::scripts::Script,
        keys: RecordKeys,
        id: &str,
        expected: String,
        json: String,
        deadline: Timestamp,
    ) -> Result<Version, StoreError> {
        let hash = keys.records.clone();
        let answer: i64 = self
            .eval(
                script,
                keys.to_vec(),
                vec![
                    id.to_owned(),
                    expected,
                    json,
                    deadline.as_millis().to_string(),
                ],
            )
            .await?;
        match answer {
            0 => {
                tracing::trace!(%hash, id, "conditional write conflicted");
                Err(StoreError::Conflict)
            }
            n if n > 0 => Ok(Version(n.unsigned_abs())),
            _ => Err(StoreError::Corrupt(format!(
                "{hash} field {id:?} holds no version"
            ))),
        }
    }

    async fn remove_versioned(
        &self,
        keys: RecordKeys,
        id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        let answer: i64 = self
            .eval(
                &self.scripts.remove,
                keys.to_vec(),
                vec![id.to_owned(), expected.0.to_string()],
            )
            .await?;
        if answer == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    async fn due<T: Touched>(
        &self,
        keys: RecordKeys,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<T>>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // A negative LIMIT count means "all"; clamp instead of wrapping.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let raws: Vec<String> = self
            .eval(
                &self.scripts.due,
                keys.to_vec(),
                vec![now.as_millis().to_string(), limit.to_string()],
            )
            .await?;
        pairs(&raws)?
            .map(|(record, touch)| decode_versioned(record, touch))
            .collect()
    }

    async fn first_deadline(&self, index: String) -> Result<Option<Timestamp>, StoreError> {
        let score: Option<String> = self
            .eval(&self.scripts.first_score, vec![index.clone()], Vec::new())
            .await?;
        score
            .map(|s| {
                parse_score(&s).ok_or_else(|| {
                    StoreError::Corrupt(format!("{index} holds a score that is no deadline: {s:?}"))
                })
            })
            .transpose()
    }

    fn visitor_keys(&self, site: &SiteId) -> RecordKeys {
        RecordKeys {
            records: self.site_key(site, "visitors"),
            deadlines: self.site_key(site, "visitor_deadlines"),
            touches: self.site_key(site, "visitor_touches"),
        }
    }

    fn user_keys(&self, site: &SiteId) -> RecordKeys {
        RecordKeys {
            records: self.site_key(site, "users"),
            deadlines: self.site_key(site, "user_deadlines"),
            touches: self.site_key(site, "user_touches"),
        }
    }
}

/// The keys of one kind of versioned record of a site: the records, their deadline index and
/// their touches (what a heartbeat moved, kept beside the record).
struct RecordKeys {
    records: String,
    deadlines: String,
    touches: String,
}

impl RecordKeys {
    /// `KEYS` of the record scripts, in their order.
    fn to_vec(&self) -> Vec<String> {
        vec![
            self.records.clone(),
            self.deadlines.clone(),
            self.touches.clone(),
        ]
    }
}

/// What a heartbeat moved in a visitor record ([`VisitorRecord::only_touched_since`]), kept
/// beside the record by [`Store::touch_visitor`] at the record's next version.
#[derive(Debug, Serialize, Deserialize)]
struct Touch {
    /// [`VisitorRecord::last_activity`].
    #[serde(rename = "a")]
    last_activity: Timestamp,
    /// [`VisitorRecord::client_timestamp`].
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    client_timestamp: Option<Box<str>>,
    /// Each tab's id and `last_seen`, in the record's order.
    #[serde(rename = "t")]
    tabs: Vec<(String, Timestamp)>,
    /// [`VisitorRecord::deadline`].
    #[serde(rename = "d")]
    deadline: Timestamp,
}

impl Touch {
    fn of(record: &VisitorRecord) -> Self {
        Touch {
            last_activity: record.last_activity,
            client_timestamp: record.client_timestamp.clone(),
            tabs: record
                .tabs
                .iter()
                .map(|t| (t.tab_id.clone(), t.last_seen))
                .collect(),
            deadline: record.deadline,
        }
    }

    /// The record as the heartbeat left it.
    fn apply(self, record: &mut VisitorRecord) {
        record.last_activity = self.last_activity;
        record.client_timestamp = self.client_timestamp;
        record.deadline = self.deadline;
        let mut rest = std::mem::take(&mut record.tabs);
        let mut tabs = Vec::with_capacity(rest.len());
        for (id, seen) in self.tabs {
            if let Some(i) = rest.iter().position(|t| t.tab_id == id) {
                let mut tab = rest.remove(i);
                tab.last_seen = seen;
                tabs.push(tab);
            }
        }
        // A touch names every tab (a change of tabs is a save, which drops the touch).
        tabs.append(&mut rest);
        record.tabs = tabs;
    }
}

/// A stored record kind, read back with its touch (if it can have one).
trait Touched: DeserializeOwned {
    /// Applies the touch stored beside the record (its JSON).
    fn touched(&mut self, touch: &str) -> Result<(), StoreError>;
}

impl Touched for VisitorRecord {
    fn touched(&mut self, touch: &str) -> Result<(), StoreError> {
        let touch: Touch = serde_json::from_str(touch).map_err(corrupt)?;
        touch.apply(self);
        Ok(())
    }
}

impl Touched for UserRecord {
    fn touched(&mut self, _: &str) -> Result<(), StoreError> {
        Err(StoreError::Corrupt(format!(
            "support user {:?} has a touch, which only visitors have",
            self.user_id
        )))
    }
}

/// A flattened list of records and touches (`''`: none) as pairs.
fn pairs(raws: &[String]) -> Result<impl Iterator<Item = (&str, &str)>, StoreError> {
    if !raws.len().is_multiple_of(2) {
        return Err(StoreError::Corrupt(
            "a read answered records and touches unpaired".to_owned(),
        ));
    }
    Ok(raws
        .chunks_exact(2)
        .map(|pair| (pair[0].as_str(), pair[1].as_str())))
}

/// The suffixes of a site's keys (`{<namespace>:<site>}:<kind>`).
const SITE_KINDS: [&str; 9] = [
    "visitors",
    "visitor_deadlines",
    "visitor_touches",
    "users",
    "user_deadlines",
    "user_touches",
    "meta",
    "enrichment",
    "log",
];

/// A random token naming one store's lookup claims.
fn claimer_token() -> Result<String, RedisError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| RedisError::Options(format!("no random source for the claim token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `host:port` of the configured server(s), without credentials.
fn describe_server(config: &Config) -> String {
    config
        .server
        .hosts()
        .iter()
        .map(|s| format!("{}:{}", s.host, s.port))
        .collect::<Vec<_>>()
        .join(",")
}

fn backend(e: fred::error::Error) -> StoreError {
    tracing::warn!(error = %e, "Redis command failed");
    StoreError::Backend(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Decodes a stored `<version>:<json>` value and applies its touch (`<version>:<json>`, or
/// `""` for none): the version is the newer of the two.
fn decode_versioned<T: Touched>(raw: &str, touch: &str) -> Result<Versioned<T>, StoreError> {
    let (version, json) = split_version(raw)?;
    let mut value: T = serde_json::from_str(json).map_err(corrupt)?;
    if touch.is_empty() {
        return Ok(Versioned { version, value });
    }
    let (touched, touch) = split_version(touch)?;
    value.touched(touch)?;
    Ok(Versioned {
        version: version.max(touched),
        value,
    })
}

fn split_version(raw: &str) -> Result<(Version, &str), StoreError> {
    let (version, json) = raw
        .split_once(':')
        .ok_or_else(|| StoreError::Corrupt("a stored record has no version".to_owned()))?;
    let version = version
        .parse::<u64>()
        .map_err(|_| StoreError::Corrupt(format!("a stored version is {version:?}")))?;
    Ok((Version(version), json))
}

/// A sorted-set score (as Redis prints a double) back to whole milliseconds.
fn parse_score(s: &str) -> Option<Timestamp> {
    let f: f64 = s.parse().ok()?;
    // Whole milliseconds are exact in a double up to ±2^53 (285,000 years); beyond, a
    // saturated deadline (`i64::MAX`) comes back as the nearest double, cast back saturating.
    if !f.is_finite() || f.fract() != 0.0 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    Some(Timestamp::from_millis(f as i64))
}

/// An enrichment batch as counter increments ([`EnrichmentStats::flat_counters`]).
fn counter_increments(events: &[EnrichmentEvent]) -> Result<Vec<(String, u64)>, StoreError> {
    let mut delta = EnrichmentStats::default();
    for e in events {
        delta.record(*e);
    }
    Ok(delta.flat_counters())
}

/// The counters hash back into [`EnrichmentStats`].
fn stats_from_counters(counters: HashMap<String, String>) -> Result<EnrichmentStats, StoreError> {
    let counters = counters
        .into_iter()
        .map(|(name, value)| {
            value
                .parse()
                .map(|count| (name.clone(), count))
                .map_err(|_| StoreError::Corrupt(format!("counter {name} is {value:?}")))
        })
        .collect::<Result<Vec<(String, u64)>, _>>()?;
    EnrichmentStats::from_flat_counters(counters)
        .map_err(|e| StoreError::Corrupt(format!("enrichment counters: {e}")))
}

#[async_trait]
impl Store for RedisStore {
    async fn put_site(&self, site: &Site) -> Result<(), StoreError> {
        let json = serde_json::to_string(site).map_err(corrupt)?;
        let hashes: Vec<String> = site.key_hashes().map(|h| h.to_hex()).collect();
        let mut args = vec![site.id.as_str().to_owned(), json, hashes.join(",")];
        args.extend(hashes);
        let _: i64 = self
            .eval(&self.scripts.put_site, self.site_index_keys(), args)
            .await?;
        tracing::debug!(site = %site.id, "site stored");
        Ok(())
    }

    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        let raws: Vec<String> = self
            .client
            .hvals(self.global_key("sites"))
            .await
            .map_err(backend)?;
        raws.iter()
            .map(|raw| serde_json::from_str(raw).map_err(corrupt))
            .collect()
    }

    async fn site_by_key(&self, key: &KeyHash) -> Result<Option<Site>, StoreError> {
        let mut keys = self.site_index_keys();
        keys.truncate(2);
        let raw: Option<String> = self
            .eval(&self.scripts.site_by_key, keys, vec![key.to_hex()])
            .await?;
        raw.map(|raw| serde_json::from_str(&raw).map_err(corrupt))
            .transpose()
    }

    async fn site(&self, id: &SiteId) -> Result<Option<Site>, StoreError> {
        let raw: Option<String> = self
            .client
            .hget(self.global_key("sites"), id.as_str())
            .await
            .map_err(backend)?;
        raw.map(|raw| serde_json::from_str(&raw).map_err(corrupt))
            .transpose()
    }

    async fn spend_ticket(
        &self,
        site: &SiteId,
        token: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        if until <= now {
            // Already past: nothing to keep.
            return Ok(false);
        }
        // Compared in the core's clock (the stored `until`); Redis's own expiry, relative to
        // `now`, only cleans up.
        let px = i64::try_from(until.since(now).as_millis()).unwrap_or(i64::MAX);
        let spent: i64 = self
            .eval(
                &self.scripts.spend,
                vec![self.site_key(site, &format!("ticket:{token}"))],
                vec![
                    now.as_millis().to_string(),
                    until.as_millis().to_string(),
                    px.to_string(),
                ],
            )
            .await?;
        Ok(spent == 1)
    }

    async fn log_alert(
        &self,
        site: &SiteId,
        entry: &tippen_core::alerts::AlertLogEntry,
        keep: usize,
    ) -> Result<(), StoreError> {
        let key = self.site_key(site, "alert_log");
        let text = serde_json::to_string(entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let _: i64 = self.client.lpush(&key, text).await.map_err(backend)?;
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        let _: () = self
            .client
            .ltrim(&key, 0, keep - 1)
            .await
            .map_err(backend)?;
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let texts: Vec<String> = self
            .client
            .lrange(self.site_key(site, "alert_log"), 0, limit - 1)
            .await
            .map_err(backend)?;
        texts
            .iter()
            .map(|t| {
                serde_json::from_str(t).map_err(|e| StoreError::Corrupt(format!("alert log: {e}")))
            })
            .collect()
    }

    async fn log_audit(
        &self,
        entry: &tippen_core::audit::AuditEntry,
        keep_after: Timestamp,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(entry).map_err(corrupt)?;
        let _: i64 = self
            .eval(
                &self.scripts.log_audit,
                vec![
                    self.site_key(&entry.site, "audit"),
                    self.site_key(&entry.site, "meta"),
                ],
                vec![
                    entry.at.as_millis().to_string(),
                    json,
                    keep_after.as_millis().to_string(),
                    tippen_core::audit::AUDIT_KEEP_MAX.to_string(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn audit_log(
        &self,
        site: &SiteId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<tippen_core::audit::AuditEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let members: Vec<String> = self
            .client
            .zrevrangebyscore(
                self.site_key(site, "audit"),
                "+inf",
                since.as_millis(),
                false,
                Some((0, limit)),
            )
            .await
            .map_err(backend)?;
        members
            .iter()
            .map(|member| {
                let (_, json) = member.split_once(':').ok_or_else(|| {
                    StoreError::Corrupt("an audit log entry has no number".to_owned())
                })?;
                serde_json::from_str(json)
                    .map_err(|e| StoreError::Corrupt(format!("audit log: {e}")))
            })
            .collect()
    }

    async fn visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
    ) -> Result<Option<Versioned<VisitorRecord>>, StoreError> {
        self.get_versioned(self.visitor_keys(site), visitor_id)
            .await
    }

    async fn save_visitor(
        &self,
        site: &SiteId,
        record: &VisitorRecord,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        self.save_versioned(
            self.visitor_keys(site),
            &record.visitor_id,
            record,
            record.deadline,
            expected,
        )
        .await
    }

    async fn remove_visitor(
        &self,
        site: &SiteId,
        visitor_id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        self.remove_versioned(self.visitor_keys(site), visitor_id, expected)
            .await
    }

    fn touches_visitors(&self) -> bool {
        true
    }

    async fn touch_visitor(
        &self,
        site: &SiteId,
        record: &VisitorRecord,
        expected: Version,
    ) -> Result<Version, StoreError> {
        let json = serde_json::to_string(&Touch::of(record)).map_err(corrupt)?;
        self.conditional(
            &self.scripts.touch,
            self.visitor_keys(site),
            &record.visitor_id,
            expected.0.to_string(),
            json,
            record.deadline,
        )
        .await
    }

    async fn visitors(&self, site: &SiteId) -> Result<Vec<VisitorRecord>, StoreError> {
        self.all_records(self.visitor_keys(site)).await
    }

    async fn count_visitors(&self, site: &SiteId) -> Result<usize, StoreError> {
        self.count(self.visitor_keys(site).records).await
    }

    async fn due_visitors(
        &self,
        site: &SiteId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<VisitorRecord>>, StoreError> {
        self.due(self.visitor_keys(site), now, limit).await
    }

    async fn next_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError> {
        self.first_deadline(self.visitor_keys(site).deadlines).await
    }

    async fn advance_sequence(&self, site: &SiteId, by: u64) -> Result<u64, StoreError> {
        let by = i64::try_from(by)
            .map_err(|_| StoreError::Backend(format!("cannot advance a sequence by {by}")))?;
        let n: i64 = self
            .client
            .hincrby(self.site_key(site, "meta"), "sequence", by)
            .await
            .map_err(backend)?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("the sequence of {site} is {n}")))
    }

    fn publishes_broadcasts(&self) -> bool {
        true
    }

    async fn advance_sequence_publishing(
        &self,
        site: &SiteId,
        unnumbered: &[String],
    ) -> Result<u64, StoreError> {
        let mut args = Vec::with_capacity(unnumbered.len() + 2);
        args.push(self.channel(site));
        args.push(self.log_len.to_string());
        args.extend(unnumbered.iter().cloned());
        let n: i64 = self
            .eval(
                &self.scripts.publish,
                vec![self.site_key(site, "meta"), self.site_key(site, "log")],
                args,
            )
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("the sequence of {site} is {n}")))
    }

    async fn sequence(&self, site: &SiteId) -> Result<u64, StoreError> {
        let raw: Option<String> = self
            .client
            .hget(self.site_key(site, "meta"), "sequence")
            .await
            .map_err(backend)?;
        raw.map_or(Ok(0), |raw| {
            raw.parse()
                .map_err(|_| StoreError::Corrupt(format!("the sequence of {site} is {raw:?}")))
        })
    }

    async fn cached_lookup(&self, ip: IpAddr) -> Result<Option<CachedLookup>, StoreError> {
        let raw: Option<String> = self
            .client
            .get(self.lookup_key(ip))
            .await
            .map_err(backend)?;
        raw.map(|raw| serde_json::from_str(&raw).map_err(corrupt))
            .transpose()
    }

    async fn put_cached_lookup(&self, ip: IpAddr, entry: &CachedLookup) -> Result<(), StoreError> {
        let json = serde_json::to_string(entry).map_err(corrupt)?;
        // Redis drops the entry once its lifetime (counted from now, on Redis's clock) is
        // over, plus a minute so a caller still sees it stale rather than missing at the edge.
        let lifetime = entry
            .expires_at
            .as_millis()
            .saturating_sub(entry.looked_up_at.as_millis())
            .max(0);
        // At most a year: Redis refuses an expiry that overflows its clock.
        let px = lifetime.saturating_add(60_000).min(366 * 24 * 3_600_000);
        let _: () = self
            .client
            .set(
                self.lookup_key(ip),
                json,
                Some(Expiration::PX(px)),
                None,
                false,
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn claim_lookup(&self, ip: IpAddr, hold: Duration) -> Result<bool, StoreError> {
        let px = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX).max(1);
        let set: Option<String> = self
            .client
            .set(
                self.claim_key(ip),
                self.claimer.as_str(),
                Some(Expiration::PX(px)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(backend)?;
        Ok(set.is_some())
    }

    async fn release_lookup(&self, ip: IpAddr) -> Result<(), StoreError> {
        let _: i64 = self
            .eval(
                &self.scripts.release_claim,
                vec![self.claim_key(ip)],
                vec![self.claimer.clone()],
            )
            .await?;
        Ok(())
    }

    async fn enrichment_stats(&self, site: &SiteId) -> Result<EnrichmentStats, StoreError> {
        let counters: HashMap<String, String> = self
            .client
            .hgetall(self.site_key(site, "enrichment"))
            .await
            .map_err(backend)?;
        stats_from_counters(counters)
    }

    async fn record_enrichment(
        &self,
        site: &SiteId,
        events: &[EnrichmentEvent],
    ) -> Result<(), StoreError> {
        let increments = counter_increments(events)?;
        if increments.is_empty() {
            return Ok(());
        }
        let mut args = Vec::with_capacity(increments.len() * 2);
        for (field, by) in increments {
            args.push(field);
            args.push(by.to_string());
        }
        let _: i64 = self
            .eval(
                &self.scripts.add_counters,
                vec![self.site_key(site, "enrichment")],
                args,
            )
            .await?;
        Ok(())
    }

    async fn user(
        &self,
        site: &SiteId,
        user_id: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        self.get_versioned(self.user_keys(site), user_id).await
    }

    async fn save_user(
        &self,
        site: &SiteId,
        record: &UserRecord,
        expected: Option<Version>,
    ) -> Result<Version, StoreError> {
        self.save_versioned(
            self.user_keys(site),
            &record.user_id,
            record,
            record.deadline,
            expected,
        )
        .await
    }

    async fn remove_user(
        &self,
        site: &SiteId,
        user_id: &str,
        expected: Version,
    ) -> Result<(), StoreError> {
        self.remove_versioned(self.user_keys(site), user_id, expected)
            .await
    }

    async fn users(&self, site: &SiteId) -> Result<Vec<UserRecord>, StoreError> {
        self.all_records(self.user_keys(site)).await
    }

    async fn count_users(&self, site: &SiteId) -> Result<usize, StoreError> {
        self.count(self.user_keys(site).records).await
    }

    async fn due_users(
        &self,
        site: &SiteId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<UserRecord>>, StoreError> {
        self.due(self.user_keys(site), now, limit).await
    }

    async fn next_user_deadline(&self, site: &SiteId) -> Result<Option<Timestamp>, StoreError> {
        self.first_deadline(self.user_keys(site).deadlines).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store value without a connection, to name keys (never used to send commands).
    fn namer(namespace: &str) -> RedisStore {
        RedisStore {
            client: fred::clients::Client::default(),
            scripts: Scripts::new(),
            namespace: namespace.to_owned(),
            log_len: DEFAULT_LOG_LEN,
            claimer: "test".to_owned(),
        }
    }

    #[test]
    fn every_key_of_a_site_is_in_one_cluster_slot_and_distinct() {
        use fred::util::redis_keyslot;
        let store = namer("tippen");
        let kinds = SITE_KINDS;
        let mut seen = std::collections::HashSet::new();
        for site in ["acme", "a", "a}b", "{x}", "a:b", "ü", "", "a}:visitors"] {
            let site = SiteId::from(site);
            let slots: std::collections::HashSet<u16> = kinds
                .iter()
                .map(|k| redis_keyslot(store.site_key(&site, k).as_bytes()))
                .collect();
            assert_eq!(slots.len(), 1, "one slot for every key of {site:?}");
            for k in kinds {
                assert!(
                    seen.insert(store.site_key(&site, k)),
                    "{site:?} {k} shares a key with another site"
                );
            }
        }
        let index: std::collections::HashSet<u16> = store
            .site_index_keys()
            .iter()
            .map(|k| redis_keyslot(k.as_bytes()))
            .collect();
        assert_eq!(index.len(), 1, "sites and their key index in one slot");
    }

    #[test]
    fn scores_parse_back_to_whole_milliseconds() {
        assert_eq!(
            parse_score("1729080010000"),
            Some(Timestamp::from_millis(1_729_080_010_000))
        );
        assert_eq!(
            parse_score("1.72908001e+12"),
            Some(Timestamp::from_millis(1_729_080_010_000))
        );
        assert_eq!(parse_score("-5"), Some(Timestamp::from_millis(-5)));
        assert_eq!(
            parse_score("9.2233720368547758e+18"),
            Some(Timestamp::from_millis(i64::MAX)),
            "a saturated deadline"
        );
        assert_eq!(parse_score("1.5"), None);
        assert_eq!(parse_score("inf"), None);
        assert_eq!(parse_score("nan"), None);
        assert_eq!(parse_score("x"), None);
    }

    #[test]
    fn versioned_values_decode_or_report_corruption() {
        let record = tippen_core::testkit::sample_record("v", 1_000, 61_000);
        let raw = format!("7:{}", serde_json::to_string(&record).unwrap());
        let v: Versioned<VisitorRecord> = decode_versioned(&raw, "").expect("decodes");
        assert_eq!((v.version, &v.value), (Version(7), &record));
        for bad in ["42", "x:42", "7:{", ":1", "-1:2"] {
            assert!(
                matches!(
                    decode_versioned::<VisitorRecord>(bad, ""),
                    Err(StoreError::Corrupt(_))
                ),
                "{bad:?} is corrupt"
            );
        }
        // A touch moves the volatile fields and the version.
        let mut touched = record.clone();
        touched.last_activity = Timestamp::from_millis(5_000);
        touched.tabs[0].last_seen = Timestamp::from_millis(5_000);
        touched.deadline = Timestamp::from_millis(65_000);
        let touch = format!("8:{}", serde_json::to_string(&Touch::of(&touched)).unwrap());
        let v: Versioned<VisitorRecord> = decode_versioned(&raw, &touch).expect("decodes");
        assert_eq!((v.version, &v.value), (Version(8), &touched));
        assert!(matches!(
            decode_versioned::<VisitorRecord>(&raw, "8:{"),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn counters_round_trip_through_the_flat_hash() {
        use tippen_core::enrichment::{FailureKind, SkipCause};
        let events = [
            EnrichmentEvent::CacheHit,
            EnrichmentEvent::CacheHit,
            EnrichmentEvent::Skipped(SkipCause::Bot),
            EnrichmentEvent::LookupFailed(FailureKind::InvalidKey),
        ];
        let counters: HashMap<String, String> = counter_increments(&events)
            .expect("flattens")
            .into_iter()
            .map(|(k, n)| (k, n.to_string()))
            .collect();
        let mut want = EnrichmentStats::default();
        for e in events {
            want.record(e);
        }
        assert_eq!(stats_from_counters(counters).expect("reads back"), want);
        assert!(
            counter_increments(&[]).expect("flattens").is_empty(),
            "no zero increments"
        );
        let bad: HashMap<String, String> = [("cache_hits".to_owned(), "x".to_owned())].into();
        assert!(matches!(
            stats_from_counters(bad),
            Err(StoreError::Corrupt(_))
        ));
    }
}
