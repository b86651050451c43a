//! The Lua scripts: every write that must be atomic is one script, and every script touches
//! the keys of one hash tag (one Redis Cluster slot).
//!
//! Versioned records (visitors, support users) are stored as `<version>:<json>` in one hash
//! field per record, so a read is one `HGET` and the version check needs no second key.

use fred::types::scripts::Script;

/// The version a record holds: its own, or its touch's when that is newer (a touch is
/// written beside the record, see [`TOUCH`]). Defines `version_of(records, touches, id)`,
/// which answers the number, `-1` when the stored value has no version, or nil.
const VERSION_OF: &str = r"
local function version_of(records, touches, id)
  local cur = redis.call('HGET', records, id)
  if not cur then return nil end
  local v = string.match(cur, '^(%d+):')
  if not v then return -1 end
  v = tonumber(v)
  local side = redis.call('HGET', touches, id)
  if side then
    local t = tonumber(string.match(side, '^(%d+):') or '0')
    if t > v then v = t end
  end
  return v
end
";

/// The versioned conditional write of one record, with its deadline index entry. The
/// record's touch, if any, is dropped: the record written includes what it moved.
///
/// `KEYS[1]`: the records hash, `KEYS[2]`: the deadline sorted set, `KEYS[3]`: the touches
/// hash. `ARGV[1]`: record id, `ARGV[2]`: expected version (`""`: only if absent),
/// `ARGV[3]`: the record as JSON, `ARGV[4]`: its deadline (ms since the epoch).
/// Returns the new version, `0` on a conflict, `-1` when the stored value has no version.
const SAVE: &str = r"
local v = version_of(KEYS[1], KEYS[3], ARGV[1])
if v == -1 then return -1 end
local version
if v then
  if ARGV[2] == '' or v ~= tonumber(ARGV[2]) then return 0 end
  version = v + 1
else
  if ARGV[2] ~= '' then return 0 end
  version = 1
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', version) .. ':' .. ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return version
";

/// A heartbeat's write: the fields it moved, kept beside the record (`<version>:<json>` in
/// the touches hash) at the next version, and the deadline moved later (`ZADD … XX GT`);
/// the record itself is not rewritten.
///
/// `KEYS` as [`SAVE`]. `ARGV[1]`: record id, `ARGV[2]`: expected version, `ARGV[3]`: the
/// touch as JSON, `ARGV[4]`: the deadline (ms). Returns as [`SAVE`] (`0` also when there is
/// no record).
const TOUCH: &str = r"
local v = version_of(KEYS[1], KEYS[3], ARGV[1])
if v == -1 then return -1 end
if not v or v ~= tonumber(ARGV[2]) then return 0 end
local version = v + 1
redis.call('HSET', KEYS[3], ARGV[1], string.format('%d', version) .. ':' .. ARGV[3])
redis.call('ZADD', KEYS[2], 'XX', 'GT', ARGV[4], ARGV[1])
return version
";

/// The versioned conditional delete of one record, its touch and its deadline index entry.
///
/// `KEYS` as [`SAVE`]; `ARGV[1]`: record id, `ARGV[2]`: expected version.
/// Returns `1` when deleted, `0` on a conflict (another version, or no record).
const REMOVE: &str = r"
local v = version_of(KEYS[1], KEYS[3], ARGV[1])
if not v or v ~= tonumber(ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
";

/// One record and its touch, read together.
///
/// `KEYS` as [`SAVE`]; `ARGV[1]`: record id. Returns `{}` when there is no record, else
/// `{record}` or `{record, touch}`.
const READ: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return {} end
local side = redis.call('HGET', KEYS[3], ARGV[1])
if side then return {cur, side} end
return {cur}
";

/// Every record of a site with its touch, read together.
///
/// `KEYS` as [`SAVE`]. Returns each record and its touch (`''` for none), flattened.
const ALL: &str = r"
local r = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #r, 2 do
  out[#out + 1] = r[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[3], r[i]) or ''
end
return out
";

/// The records due at `now`, earliest first (ties by id), at most `limit`, read atomically
/// with the index and their touches.
///
/// `KEYS` as [`SAVE`]; `ARGV[1]`: now (ms), `ARGV[2]`: limit.
/// Returns each stored `<version>:<json>` value and its touch (`''` for none), flattened.
const DUE: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  local cur = redis.call('HGET', KEYS[1], id)
  if cur then
    out[#out + 1] = cur
    out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
  end
end
return out
";

/// Replaces a site and its key index entries.
///
/// `KEYS[1]`: sites hash (id → JSON), `KEYS[2]`: key index (key hash → id), `KEYS[3]`: each
/// site's key hashes (id → comma-separated hashes).
/// `ARGV[1]`: site id, `ARGV[2]`: the site as JSON, `ARGV[3]`: its key hashes, comma-separated,
/// `ARGV[4..]`: the same hashes one by one. An old key hash is retired only while it still
/// points to this site.
const PUT_SITE: &str = r"
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old then
  for h in string.gmatch(old, '[^,]+') do
    if redis.call('HGET', KEYS[2], h) == ARGV[1] then redis.call('HDEL', KEYS[2], h) end
  end
end
for i = 4, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], ARGV[1]) end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// Retires a site: its record and the key index entries that still point to it.
///
/// `KEYS` as [`PUT_SITE`]; `ARGV[1]`: site id. Returns `1` when the site existed, else `0`.
const REMOVE_SITE: &str = r"
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old then
  for h in string.gmatch(old, '[^,]+') do
    if redis.call('HGET', KEYS[2], h) == ARGV[1] then redis.call('HDEL', KEYS[2], h) end
  end
end
redis.call('HDEL', KEYS[3], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
";

/// The site a key hash belongs to, read atomically with the index.
///
/// `KEYS` as [`PUT_SITE`]'s first two; `ARGV[1]`: the key hash. Returns the site's JSON or nil.
const SITE_BY_KEY: &str = r"
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return false end
return redis.call('HGET', KEYS[1], id)
";

/// The smallest score of a sorted set, as Redis prints it, or nil.
///
/// `KEYS[1]`: the sorted set.
const FIRST_SCORE: &str = r"
local r = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #r == 0 then return false end
return r[2]
";

/// Adds counters to a hash in one step.
///
/// `KEYS[1]`: the hash; `ARGV`: field, increment, field, increment, …
const ADD_COUNTERS: &str = r"
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
";

/// Numbers a site's dashboard messages and publishes them, in one step: the sequence
/// (`HINCRBY`), an append of each numbered message to the site's bounded log (`XADD … MAXLEN ~`,
/// entry id `<seq>-1`) and its `PUBLISH` on the site's channel, so numbering order is log
/// order is publishing order.
///
/// `KEYS[1]`: the meta hash, `KEYS[2]`: the log stream. `ARGV[1]`: the channel, `ARGV[2]`: the
/// log's length, `ARGV[3..]`: each message's text up to its number (the number and `}` are
/// appended here). Publishes `<seq> <text>`. Returns the new sequence number.
const PUBLISH: &str = r"
local n = #ARGV - 2
local last = redis.call('HINCRBY', KEYS[1], 'sequence', n)
for i = 1, n do
  local seq = string.format('%d', last - n + i)
  local text = ARGV[i + 2] .. seq .. '}'
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-1', 'm', text)
  redis.call('PUBLISH', ARGV[1], seq .. ' ' .. text)
end
return last
";

/// A range of a site's log.
///
/// `KEYS[1]`: the log stream. `ARGV[1]`, `ARGV[2]`: the first and last number. Returns each
/// entry's number and text, flattened.
const REPLAY: &str = r"
local r = redis.call('XRANGE', KEYS[1], ARGV[1] .. '-1', ARGV[2] .. '-1')
local out = {}
for _, e in ipairs(r) do
  out[#out + 1] = string.match(e[1], '^(%d+)')
  out[#out + 1] = e[2][2]
end
return out
";

/// Deletes a lookup claim if it is still the caller's.
///
/// `KEYS[1]`: the claim. `ARGV[1]`: the caller's token. Returns `1` when deleted.
const RELEASE_CLAIM: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Spends a token (a ticket, an alert cooldown) held until `ARGV[2]` (epoch ms, the core's
/// clock) when it is absent or its stored `until` is not after `ARGV[1]` (now); kept by Redis
/// for `ARGV[3]` ms (its own clock only cleans up). 1 when spent.
const SPEND: &str = r"
local held = redis.call('GET', KEYS[1])
if held and tonumber(held) > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

/// Appends an entry to a site's audit log and drops what retention and the cap leave out, in
/// one step.
///
/// `KEYS[1]`: the audit log (sorted set), `KEYS[2]`: the site's meta hash (its `audit` field
/// numbers the entries). `ARGV[1]`: the entry's time (ms, the score), `ARGV[2]`: the entry as
/// JSON, `ARGV[3]`: the retention boundary (ms; lower scores are dropped), `ARGV[4]`: the most
/// entries kept. The member is `<number, 20 digits>:<json>`: unique, so identical entries
/// both stay, and ordered, so entries of one millisecond read newest first. Returns the
/// number.
const LOG_AUDIT: &str = r"
local n = redis.call('HINCRBY', KEYS[2], 'audit', 1)
redis.call('ZADD', KEYS[1], ARGV[1], string.format('%020d', n) .. ':' .. ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -1 - tonumber(ARGV[4]))
return n
";

/// Every script, hashed once (`EVALSHA`, loaded again on `NOSCRIPT`).
#[derive(Debug, Clone)]
pub(crate) struct Scripts {
    pub(crate) save: Script,
    pub(crate) touch: Script,
    pub(crate) remove: Script,
    pub(crate) read: Script,
    pub(crate) all: Script,
    pub(crate) due: Script,
    pub(crate) put_site: Script,
    pub(crate) remove_site: Script,
    pub(crate) site_by_key: Script,
    pub(crate) first_score: Script,
    pub(crate) add_counters: Script,
    pub(crate) publish: Script,
    pub(crate) replay: Script,
    pub(crate) release_claim: Script,
    pub(crate) spend: Script,
    pub(crate) log_audit: Script,
}

/// A script that compares versions, with [`VERSION_OF`] before it.
fn versioned(body: &str) -> Script {
    Script::from_lua(format!("{VERSION_OF}{body}"))
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            save: versioned(SAVE),
            touch: versioned(TOUCH),
            remove: versioned(REMOVE),
            read: Script::from_lua(READ),
            all: Script::from_lua(ALL),
            due: Script::from_lua(DUE),
            put_site: Script::from_lua(PUT_SITE),
            remove_site: Script::from_lua(REMOVE_SITE),
            site_by_key: Script::from_lua(SITE_BY_KEY),
            first_score: Script::from_lua(FIRST_SCORE),
            add_counters: Script::from_lua(ADD_COUNTERS),
            publish: Script::from_lua(PUBLISH),
            replay: Script::from_lua(REPLAY),
            release_claim: Script::from_lua(RELEASE_CLAIM),
            spend: Script::from_lua(SPEND),
            log_audit: Script::from_lua(LOG_AUDIT),
        }
    }
}
