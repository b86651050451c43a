//! Dashboard socket tickets: `POST /api/ws-ticket` issues one, `/ws/dashboard?ticket=…` spends
//! it, so a dashboard never puts its secret key in a URL (where proxies, browser history and
//! server logs would keep it).
//!
//! A ticket is `<site id>.<expiry ms>.<nonce>.<tag>`: the tag is the first 16 bytes of
//! `HMAC-SHA256(key = the hash of the site's secret key, "tippen ws-ticket v1\n<site>\n<expiry>\n<nonce>")`,
//! in hex. Checking it needs no storage (the Workers host's front checks it before forwarding
//! to the site's object); rotating the secret key voids every ticket issued under the old one.
//! Spending it is the one stored step ([`Store::spend_ticket`](crate::Store::spend_ticket)):
//! a ticket opens one socket, once, before its expiry
//! ([`Limits::ws_ticket_ttl`](crate::config::Limits::ws_ticket_ttl)).

use hmac::{Hmac, Mac};
use http::StatusCode;
use sha2::Sha256;

use super::response::{ApiError, json_response};
use crate::clock::Timestamp;
use crate::service::Tippen;
use crate::site::Site;

/// The query parameter a dashboard socket presents its ticket in.
pub const TICKET_PARAM: &str = "ticket";

/// A ticket's parts, as read (not yet checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ticket<'a> {
    pub(crate) site: &'a str,
    pub(crate) expires: Timestamp,
    nonce: &'a str,
    tag: &'a str,
}

fn mac(site: &Site, site_id: &str, expires: Timestamp, nonce: &str) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(&site.secret_key_hash.0).expect("HMAC takes any key");
    mac.update(b"tippen ws-ticket v1\n");
    mac.update(site_id.as_bytes());
    mac.update(b"\n");
    mac.update(expires.as_millis().to_string().as_bytes());
    mac.update(b"\n");
    mac.update(nonce.as_bytes());
    mac
}

/// Issues a ticket for `site`, valid until `expires`, with a random `nonce`.
pub(crate) fn issue(site: &Site, expires: Timestamp, nonce: u64) -> String {
    let nonce = format!("{nonce:016x}");
    let tag = mac(site, site.id.as_str(), expires, &nonce)
        .finalize()
        .into_bytes();
    format!(
        "{}.{}.{nonce}.{}",
        site.id.as_str(),
        expires.as_millis(),
        hex::encode(&tag[..16])
    )
}

/// The answer of `POST /api/ws-ticket`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct TicketResponse {
    ticket: String,
    /// Epoch milliseconds.
    expires_at: Timestamp,
}

impl Tippen {
    /// `200 {"ticket": …, "expiresAt": <epoch ms>}`: a single-use ticket that opens one
    /// dashboard socket of `site` (`/ws/dashboard?ticket=…`) within
    /// [`Limits::ws_ticket_ttl`](crate::config::Limits::ws_ticket_ttl). Stores nothing.
    pub(super) fn ws_ticket(&self, site: &Site) -> http::Response<bytes::Bytes> {
        let expires = self.now().plus(self.config().limits.ws_ticket_ttl);
        json_response(
            StatusCode::OK,
            &TicketResponse {
                ticket: issue(site, expires, self.next_random()),
                expires_at: expires,
            },
        )
    }
}

pub(super) fn invalid() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "invalid ticket (get one from POST /api/ws-ticket)",
    )
}

impl<'a> Ticket<'a> {
    /// Reads a ticket's parts (the site id may itself contain dots); 403 when it has not the
    /// shape of one.
    pub(crate) fn parse(ticket: &'a str) -> Result<Self, ApiError> {
        let mut parts = ticket.rsplitn(4, '.');
        let (Some(tag), Some(nonce), Some(expires), Some(site)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let expires = expires.parse::<i64>().map_err(|_| invalid())?;
        if site.is_empty() || nonce.len() != 16 || tag.len() != 32 {
            return Err(invalid());
        }
        Ok(Ticket {
            site,
            expires: Timestamp::from_millis(expires),
            nonce,
            tag,
        })
    }

    /// Checks the tag against `site` (the site the ticket names) and the expiry against `now`:
    /// 403 naming what is wrong.
    pub(crate) fn check(&self, site: &Site, now: Timestamp) -> Result<(), ApiError> {
        let mut tag = [0u8; 16];
        if hex::decode_to_slice(self.tag, &mut tag).is_err() {
            return Err(invalid());
        }
        mac(site, self.site, self.expires, self.nonce)
            .verify_truncated_left(&tag)
            .map_err(|_| invalid())?;
        if now >= self.expires {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "ticket expired (get a new one from POST /api/ws-ticket)",
            ));
        }
        Ok(())
    }

    /// What the store remembers as spent: the nonce and the tag.
    pub(crate) fn spend_key(&self) -> String {
        format!("{}.{}", self.nonce, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_ticket_checks_until_it_expires() {
        let site = Site::new("a.b", "A", "pk", "sk");
        let t = issue(&site, Timestamp::from_millis(30_000), 7);
        let parsed = Ticket::parse(&t).unwrap();
        assert_eq!(parsed.site, "a.b");
        assert!(parsed.check(&site, Timestamp::from_millis(29_999)).is_ok());
        let expired = parsed
            .check(&site, Timestamp::from_millis(30_000))
            .unwrap_err();
        assert!(expired.message.contains("expired"), "{}", expired.message);
    }

    #[test]
    fn a_changed_part_or_another_key_fails_the_check() {
        let site = Site::new("a", "A", "pk", "sk");
        let other_key = Site::new("a", "A", "pk", "sk2");
        let t = issue(&site, Timestamp::from_millis(30_000), 7);
        let now = Timestamp::from_millis(1);
        assert!(Ticket::parse(&t).unwrap().check(&other_key, now).is_err());
        let later = t.replacen("30000", "90000", 1);
        assert!(Ticket::parse(&later).unwrap().check(&site, now).is_err());
        let mut flipped = t.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert!(Ticket::parse(&flipped).unwrap().check(&site, now).is_err());
        for bad in ["", "a", "a.1.2", "a.x.0000000000000007.00", &t[1..]] {
            let r = Ticket::parse(bad).and_then(|p| p.check(&site, now));
            assert!(r.is_err(), "{bad}");
        }
    }
}
