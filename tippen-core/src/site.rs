//! Sites (tenants) and their keys.
//!
//! A site has a public site key (goes into the tracker snippet, may only track) and a secret key
//! (dashboards, invites, statistics, deletion). Keys are stored as SHA-256 hashes and compared in
//! constant time. A site in legacy single-key mode has one key that plays both roles, so the
//! predecessor's clients keep working.

use std::fmt;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A site's stable identifier (not a key; safe to log).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SiteId(pub String);

impl SiteId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SiteId {
    fn from(s: &str) -> Self {
        SiteId(s.to_owned())
    }
}

/// The SHA-256 hash of a key. Only hashes are stored; the key itself never is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyHash(#[serde(with = "hex_bytes")] pub [u8; 32]);

impl KeyHash {
    /// Hashes a presented key.
    pub fn of(key: &str) -> Self {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    /// The hash as 64 lowercase hex digits (the storage form).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(KeyHash(out))
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

/// What a presented key may do, in increasing order: each role may do what the ones before it
/// may (a secret key tracks too). See `docs/access.md` for the role of every route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// The public site key: tracking only.
    Public,
    /// A viewer's member token: the live view, history, statistics and alerts, read only.
    Viewer,
    /// An agent's member token: a viewer who may also invite visitors into calls.
    Agent,
    /// The secret key, a legacy single key or an admin's member token: everything on the site
    /// (deletion, export, alert rules and destinations, member tokens, the audit log).
    #[serde(alias = "admin")]
    Secret,
}

impl KeyRole {
    /// The role's name in the API (`public`, `viewer`, `agent`, `admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Public => "public",
            KeyRole::Viewer => "viewer",
            KeyRole::Agent => "agent",
            KeyRole::Secret => "admin",
        }
    }

    /// A member role by its API name (`viewer`, `agent`, `admin`).
    pub fn member(name: &str) -> Option<KeyRole> {
        match name {
            "viewer" => Some(KeyRole::Viewer),
            "agent" => Some(KeyRole::Agent),
            "admin" => Some(KeyRole::Secret),
            _ => None,
        }
    }
}

/// A key issued at runtime (by the operator API or a site's admin) besides a site's primary
/// keys: a member token naming its holder, or a primary key replaced by a rotation that keeps
/// working until [`expires_at`](Self::expires_at). Only its hash is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    /// Stable id (`key_…` or `mem_…`), safe to show and log; revocation names it.
    pub id: String,
    /// The key's hash.
    pub hash: KeyHash,
    /// What it may do.
    pub role: KeyRole,
    /// The person a member token belongs to (recorded on the invites they send and in the
    /// audit log); `None` for a rotated primary key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was issued.
    pub created_at: crate::Timestamp,
    /// From when on it answers `401` (a rotated key's overlap end); `None`: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<crate::Timestamp>,
}

/// What a key presented to a site matched (see [`Site::access_of`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMatch {
    /// A primary key or a legacy key of the site, or a live credential.
    Valid {
        /// What it may do.
        role: KeyRole,
        /// The credential, when it is one (member tokens carry their holder's name).
        credential: Option<Credential>,
    },
    /// A credential whose [`expires_at`](Credential::expires_at) has passed.
    Expired,
}

/// Prefixes of the keys the server issues: public, secret, member.
const ISSUED_PREFIXES: [&str; 3] = ["tpk_", "tsk_", "tmk_"];

/// A new random key for `site`: `<prefix><site id>.<48 hex digits>` (192 bits from the
/// platform's secure random source). The site id in the key lets a host that keeps each site
/// apart (the Worker's Durable Objects) route a key it has not seen; the site still checks the
/// key's hash. `prefix` is `tpk_`, `tsk_` or `tmk_`.
pub(crate) fn issue_key(prefix: &str, site: &SiteId) -> String {
    let mut bytes = [0u8; 24];
    if let Err(e) = getrandom::fill(&mut bytes) {
        // As for ids (crate::ids::SecureIds): a key that might repeat is never handed out.
        panic!("the platform's secure random source failed: {e}");
    }
    format!("{prefix}{site}.{}", hex::encode(bytes))
}

/// The site id inside a key the server issued (`<prefix><site id>.<48 hex digits>`), `None` for any other
/// key. Only a hint for routing: whether the key is valid is for the site to say.
pub fn site_in_key(key: &str) -> Option<SiteId> {
    let rest = ISSUED_PREFIXES.iter().find_map(|p| key.strip_prefix(p))?;
    let (site, random) = rest.rsplit_once('.')?;
    let valid_site = !site.is_empty()
        && site.len() <= 64
        && site
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (valid_site && random.len() == 48 && random.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| SiteId(site.to_owned()))
}

/// A site as stored: its id, key hashes and policies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// Stable id.
    pub id: SiteId,
    /// Display name.
    pub name: String,
    /// Hash of the public site key (`None` in legacy single-key mode).
    pub public_key_hash: Option<KeyHash>,
    /// Hash of the secret key (in legacy mode: of the single key).
    pub secret_key_hash: KeyHash,
    /// Legacy single-key mode: the one key both tracks and administers.
    pub legacy_single_key: bool,
    /// Honour the browser's Global Privacy Control (`Sec-GPC: 1`) for this site.
    pub honor_gpc: bool,
    /// Honour the browser's Do Not Track (`DNT: 1`) for this site, as Global Privacy Control:
    /// no company lookup for the visitor (counted as `doNotTrack`). Off unless the site
    /// chooses it (browsers stopped offering the setting; GPC is its successor).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub honor_dnt: bool,
    /// Origins (`https://host[:port]`) that invites sent with a guest URL
    /// (`POST /api/send-video-invite`) may point at, besides the video provider's. Empty: any
    /// `https://` URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guest_url_origins: Vec<String>,
    /// Origins (`http(s)://host[:port]`) whose pages may open this site's dashboard socket
    /// (the browser's `Origin` on `/ws/dashboard`), besides the server's own (an `Origin`
    /// naming the request's `Host`). Empty: any. A client sending no `Origin` (no browser) is
    /// not concerned: it must hold the secret key all the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dashboard_origins: Vec<String>,
    /// The identity secret of the in-app tracker's verified identities: when set, every
    /// `POST /api/track/user-activity` must carry `userHash`, the HMAC-SHA256 of its `userId`
    /// under this secret (hex), which the product's backend computes for its logged-in user
    /// (see [`IdentitySecret`]). `None`: user ids are taken as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_secret: Option<IdentitySecret>,
    /// How many days closed visits are kept (`None`: [`DEFAULT_HISTORY_RETENTION_DAYS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_retention_days: Option<u32>,
    /// This site's own limit per key (its public and its secret key each), replacing the
    /// host's per-key limit ([`RateLimits::per_key`](crate::rate::RateLimits::per_key)) for
    /// them. `None`: the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_key: Option<crate::rate::RateLimit>,
    /// This site's own socket quotas, each replacing the host's
    /// ([`Limits`](crate::Limits)) for this site's sockets when set.
    #[serde(
        default,
        skip_serializing_if = "crate::quota::QuotaOverrides::is_empty"
    )]
    pub socket_quotas: crate::quota::QuotaOverrides,
    /// The site's alert rules ([`crate::alerts`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_rules: Vec<crate::alerts::AlertRule>,
    /// Where the site's alerts go.
    #[serde(
        default,
        skip_serializing_if = "crate::alerts::AlertDestinations::is_empty"
    )]
    pub alert_destinations: crate::alerts::AlertDestinations,
    /// Keys issued at runtime: member tokens and rotated-out primary keys in their overlap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<Credential>,
    /// A disabled site refuses every key (`403`); its data stays.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// The operator API created or changed the site: from then on the stored record wins over
    /// the configuration's ([`register_sites`](crate::settings::register_sites) leaves it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub managed: bool,
}

/// Days of visit history kept for a site that does not say.
pub const DEFAULT_HISTORY_RETENTION_DAYS: u32 = 90;

impl Site {
    /// A site with a public and a secret key.
    pub fn new(id: &str, name: &str, public_key: &str, secret_key: &str) -> Self {
        Site {
            id: SiteId::from(id),
            name: name.to_owned(),
            public_key_hash: Some(KeyHash::of(public_key)),
            secret_key_hash: KeyHash::of(secret_key),
            legacy_single_key: false,
            honor_gpc: true,
            honor_dnt: false,
            guest_url_origins: Vec::new(),
            dashboard_origins: Vec::new(),
            identity_secret: None,
            history_retention_days: None,
            rate_limit_per_key: None,
            socket_quotas: crate::quota::QuotaOverrides::default(),
            alert_rules: Vec::new(),
            alert_destinations: crate::alerts::AlertDestinations::default(),
            credentials: Vec::new(),
            disabled: false,
            managed: false,
        }
    }

    /// A site in legacy single-key mode: `key` tracks and administers.
    pub fn legacy(id: &str, name: &str, key: &str) -> Self {
        Site {
            id: SiteId::from(id),
            name: name.to_owned(),
            public_key_hash: None,
            secret_key_hash: KeyHash::of(key),
            legacy_single_key: true,
            honor_gpc: true,
            honor_dnt: false,
            guest_url_origins: Vec::new(),
            dashboard_origins: Vec::new(),
            identity_secret: None,
            history_retention_days: None,
            rate_limit_per_key: None,
            socket_quotas: crate::quota::QuotaOverrides::default(),
            alert_rules: Vec::new(),
            alert_destinations: crate::alerts::AlertDestinations::default(),
            credentials: Vec::new(),
            disabled: false,
            managed: false,
        }
    }

    /// The role `key` has on this site, compared in constant time; `None` when it is neither key.
    pub fn role_of(&self, key: &KeyHash) -> Option<KeyRole> {
        let secret = self.secret_key_hash.matches(key);
        let public = self.public_key_hash.is_some_and(|p| p.matches(key));
        if secret {
            Some(KeyRole::Secret)
        } else if public {
            Some(KeyRole::Public)
        } else {
            None
        }
    }

    /// What `key` may do on this site at `now`, compared in constant time: `None` when it is
    /// none of the site's keys, [`KeyMatch::Expired`] for a credential past its expiry.
    pub fn access_of(&self, key: &KeyHash, now: crate::Timestamp) -> Option<KeyMatch> {
        if let Some(role) = self.role_of(key) {
            return Some(KeyMatch::Valid {
                role,
                credential: None,
            });
        }
        let credential = self.credentials.iter().find(|c| c.hash.matches(key))?;
        if credential.expires_at.is_some_and(|at| at <= now) {
            return Some(KeyMatch::Expired);
        }
        Some(KeyMatch::Valid {
            role: credential.role,
            credential: Some(credential.clone()),
        })
    }

    /// The same site allowing guest URLs on `origins` only (besides the video provider's).
    pub fn with_guest_url_origins(mut self, origins: &[&str]) -> Self {
        self.guest_url_origins = origins.iter().filter_map(|o| https_origin(o)).collect();
        self
    }

    /// The same site letting pages of `origins` only (besides the server's own) open its
    /// dashboard socket (see [`dashboard_origins`](Self::dashboard_origins)).
    pub fn with_dashboard_origins(mut self, origins: &[&str]) -> Self {
        self.dashboard_origins = origins.iter().filter_map(|o| web_origin(o)).collect();
        self
    }

    /// Whether a browser page of `origin` (its `Origin` header) may open this site's
    /// dashboard socket on a server reached as `host` (the request's `Host`): any origin when
    /// the site lists none, else a listed one or the server's own.
    pub fn allows_dashboard_origin(&self, origin: &str, host: Option<&str>) -> bool {
        if self.dashboard_origins.is_empty() {
            return true;
        }
        let Some(origin) = web_origin(origin) else {
            // `null` (a sandboxed or file page) and anything unparsable.
            return false;
        };
        if self.dashboard_origins.contains(&origin) {
            return true;
        }
        host.is_some_and(|host| {
            let host = host.to_ascii_lowercase();
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority == host)
                || web_origin(&format!("http://{host}")).is_some_and(|o| o == origin)
                || web_origin(&format!("https://{host}")).is_some_and(|o| o == origin)
        })
    }

    /// The same site verifying in-app user identities with `secret` (see
    /// [`identity_secret`](Self::identity_secret)).
    pub fn with_identity_secret(mut self, secret: &str) -> Self {
        self.identity_secret = Some(IdentitySecret(secret.to_owned()));
        self
    }

    /// The same site honouring Do Not Track or not (see [`honor_dnt`](Self::honor_dnt)).
    pub fn with_honor_dnt(mut self, honour: bool) -> Self {
        self.honor_dnt = honour;
        self
    }

    /// The same site with its own limit per key (see
    /// [`rate_limit_per_key`](Self::rate_limit_per_key)).
    pub fn with_rate_limit_per_key(mut self, limit: crate::rate::RateLimit) -> Self {
        self.rate_limit_per_key = Some(limit);
        self
    }

    /// The same site with its own socket quotas (see [`socket_quotas`](Self::socket_quotas)).
    pub fn with_socket_quotas(mut self, quotas: crate::quota::QuotaOverrides) -> Self {
        self.socket_quotas = quotas;
        self
    }

    /// The limit on this site's keys: its own, else `host_default`.
    pub fn key_rate_limit(
        &self,
        host_default: Option<crate::rate::RateLimit>,
    ) -> Option<crate::rate::RateLimit> {
        self.rate_limit_per_key.or(host_default)
    }

    /// Checks the identity an in-app activity batch claims: without an identity secret every
    /// user id is taken as sent (`Ok(false)`: not verified); with one, `user_hash` must be the
    /// HMAC-SHA256 of `user_id` under it, in hex (`Ok(true)`), compared in constant time.
    pub fn verify_identity(
        &self,
        user_id: &str,
        user_hash: Option<&str>,
    ) -> Result<bool, IdentityError> {
        let Some(secret) = &self.identity_secret else {
            return Ok(false);
        };
        let hash = user_hash.ok_or(IdentityError::Missing)?;
        if secret.verify(user_id, hash) {
            Ok(true)
        } else {
            Err(IdentityError::Mismatch)
        }
    }

    /// How long closed visits are kept ([`history_retention_days`](Self::history_retention_days),
    /// at least one day).
    pub fn history_retention(&self) -> std::time::Duration {
        let days = self
            .history_retention_days
            .unwrap_or(DEFAULT_HISTORY_RETENTION_DAYS)
            .max(1);
        std::time::Duration::from_secs(u64::from(days) * 86_400)
    }

    /// Every key hash under which this site is found.
    pub fn key_hashes(&self) -> impl Iterator<Item = KeyHash> + '_ {
        std::iter::once(self.secret_key_hash)
            .chain(self.public_key_hash)
            .chain(self.credentials.iter().map(|c| c.hash))
    }
}

/// A site's identity secret: the key under which a product's backend signs its logged-in
/// user's id for the in-app tracker, as `userHash = hex(HMAC-SHA256(secret, userId))`, so
/// that the public tracking key alone cannot post activity (and so trigger support alerts)
/// for users who did nothing. It is kept with the site record (the HMAC needs the secret
/// itself, not a hash); `Debug` never shows it.
///
/// ```
/// use tippen_core::IdentitySecret;
/// let secret = IdentitySecret::new("idv_0123456789abcdef0123");
/// let hash = secret.sign("user_123");
/// assert_eq!(hash.len(), 64);
/// assert!(secret.verify("user_123", &hash));
/// assert!(!secret.verify("user_124", &hash));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdentitySecret(String);

impl IdentitySecret {
    /// The secret.
    pub fn new(secret: impl Into<String>) -> Self {
        IdentitySecret(secret.into())
    }

    /// The secret itself (kept with the site; the operator API's settings round trip).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_bytes()).expect("HMAC takes any key")
    }

    /// `hex(HMAC-SHA256(secret, user_id))`: what a product's backend puts in the page as the
    /// user's `userHash`.
    pub fn sign(&self, user_id: &str) -> String {
        let mut mac = self.mac();
        mac.update(user_id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `user_hash` (hex, either case) is `user_id`'s HMAC under this secret, compared
    /// in constant time.
    pub fn verify(&self, user_id: &str, user_hash: &str) -> bool {
        let mut tag = [0u8; 32];
        if hex::decode_to_slice(user_hash.trim(), &mut tag).is_err() {
            return false;
        }
        let mut mac = self.mac();
        mac.update(user_id.as_bytes());
        mac.verify_slice(&tag).is_ok()
    }
}

impl fmt::Debug for IdentitySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentitySecret([redacted])")
    }
}

/// Why an in-app activity batch's identity was refused (see [`Site::verify_identity`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The site verifies identities and the batch has no `userHash`.
    #[error(
        "userHash is required: this site verifies user identities (userHash = hex HMAC-SHA256 of userId under the site's identity secret, computed by your backend)"
    )]
    Missing,
    /// `userHash` is not `userId`'s HMAC under the site's identity secret.
    #[error(
        "userHash does not match userId (expected hex HMAC-SHA256 of userId under the site's identity secret)"
    )]
    Mismatch,
}

/// The origin (`https://host` or `https://host:port`, host in lower case) of an `https://`
/// URL; `None` for any other scheme, no host, or credentials in the URL
/// (`https://trusted@evil.test`).
pub fn https_origin(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    if uri.scheme_str() != Some("https") {
        return None;
    }
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host();
    if host.is_empty() {
        return None;
    }
    let host = host.to_ascii_lowercase();
    Some(match authority.port_u16() {
        Some(443) | None => format!("https://{host}"),
        Some(port) => format!("https://{host}:{port}"),
    })
}

/// The origin (`http(s)://host[:port]`, lowercase, default port left out) of an `http://` or
/// `https://` URL without credentials; `None` for anything else.
pub fn web_origin(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let (scheme, default_port) = match uri.scheme_str()? {
        "https" => ("https", 443),
        "http" => ("http", 80),
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    Some(match authority.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_origins_allow_the_listed_and_the_servers_own() {
        let open = Site::new("a", "A", "pk", "sk");
        assert!(open.allows_dashboard_origin("https://evil.test", Some("tippen.test")));
        let site =
            open.with_dashboard_origins(&["https://Dash.Acme.test/", "http://localhost:3000"]);
        assert_eq!(
            site.dashboard_origins,
            ["https://dash.acme.test", "http://localhost:3000"]
        );
        for allowed in [
            "https://dash.acme.test",
            "https://DASH.acme.test:443",
            "http://localhost:3000",
            "https://tippen.test",
            "http://tippen.test",
        ] {
            assert!(
                site.allows_dashboard_origin(allowed, Some("tippen.test")),
                "{allowed}"
            );
        }
        assert!(site.allows_dashboard_origin("http://127.0.0.1:8787", Some("127.0.0.1:8787")));
        for refused in [
            "https://evil.test",
            "https://dash.acme.test.evil.test",
            "http://dash.acme.test",
            "null",
            "",
            "https://tippen.test:8443",
        ] {
            assert!(
                !site.allows_dashboard_origin(refused, Some("tippen.test")),
                "{refused}"
            );
        }
        assert!(!site.allows_dashboard_origin("https://tippen.test", None));
    }

    #[test]
    fn roles() {
        let s = Site::new("a", "A", "pk_a", "sk_a");
        assert_eq!(s.role_of(&KeyHash::of("pk_a")), Some(KeyRole::Public));
        assert_eq!(s.role_of(&KeyHash::of("sk_a")), Some(KeyRole::Secret));
        assert_eq!(s.role_of(&KeyHash::of("nope")), None);
        let l = Site::legacy("d", "Demo", "demo_api_key");
        assert_eq!(
            l.role_of(&KeyHash::of("demo_api_key")),
            Some(KeyRole::Secret)
        );
        assert_eq!(l.key_hashes().count(), 1);
    }

    #[test]
    fn https_origins() {
        assert_eq!(
            https_origin("https://Meet.Example.com/room/1?x=1").as_deref(),
            Some("https://meet.example.com")
        );
        assert_eq!(
            https_origin("https://meet.example.com:8443/r").as_deref(),
            Some("https://meet.example.com:8443")
        );
        assert_eq!(
            https_origin("https://meet.example.com:443/r").as_deref(),
            Some("https://meet.example.com")
        );
        for bad in [
            "http://meet.example.com/r",
            "https://meet.example.com@evil.test/r",
            "javascript:alert(1)",
            "//evil.test/r",
            "",
        ] {
            assert_eq!(https_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn hash_round_trips_through_hex_and_serde() {
        let h = KeyHash::of("x");
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        let s = Site::new("a", "A", "p", "s");
        let json = serde_json::to_string(&s).unwrap();
        assert!(!json.contains("\"s\""));
        assert_eq!(serde_json::from_str::<Site>(&json).unwrap(), s);
    }
}
