//! Socket quotas (issue 17): sockets per site and per client address, refused with
//! `429 {"error":…}` before upgrading and counted only while open; snapshots per dashboard a
//! minute, answered with an `ERROR` beyond while broadcasts keep coming.
//!
//! All on the quota site ([`Target::quota_site_keys`]), whose small quotas would fail each
//! other's counts if two of these cases ran at once: they take turns ([`QUOTA_SITE`]). Every
//! socket comes from an address of its own ([`Outbound::client_ip_header`](crate::Outbound)),
//! so the loopback sockets of the rest of the suite never count against them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{PROMPT, step_failure, track_ok};
use crate::dashboard::{Dashboard, dashboard_url, is_type, is_update};
use crate::http::Http;
use crate::socket::visitor_url;
use crate::wire::{describe_bytes, unique_id};
use crate::{
    Failure, QUOTA_SITE_MAX_SOCKETS, QUOTA_SITE_MAX_SOCKETS_PER_ADDRESS,
    QUOTA_SITE_SNAPSHOTS_PER_MINUTE, Target,
};

/// The quota site's cases take turns.
static QUOTA_SITE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a closed socket may take to stop counting: the host learns of the close after the
/// client does (on Lambda, `$disconnect` is an event of its own), so an upgrade that must
/// succeed again is retried on 429 for this long.
const RELEASE: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The quota site's keys and the client address header, or why the case cannot run.
fn quota_site(t: &Target) -> Result<(&str, &str, &str), Failure> {
    match (&t.quota_site_keys, &t.outbound.client_ip_header) {
        (Some((public, secret)), Some(header)) => Ok((public, secret, header)),
        _ => Err(step_failure(
            "a socket-quota case",
            "the quota site's keys and a client address header",
            "none given",
        )),
    }
}

/// A documentation-range address no other socket of this run uses.
fn fresh_address() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let salt = std::process::id() % 200;
    format!("198.51.{}.{}", (salt + n / 250) % 256, n % 250 + 1)
}

/// One socket to open on the quota site: a dashboard, or a visitor's channel.
#[derive(Clone, Copy)]
enum Kind<'a> {
    Dashboard { secret: &'a str },
    Visitor { public: &'a str },
}

/// Opens one socket of `kind` from `address`: the open socket, or the refusal's status and
/// body.
async fn open(
    t: &Target,
    kind: Kind<'_>,
    header: &str,
    address: &str,
) -> Result<Result<Ws, (u16, String)>, Failure> {
    let url = match kind {
        Kind::Dashboard { secret } => dashboard_url(t, Some(secret)),
        Kind::Visitor { public } => visitor_url(t, Some(public), Some(&unique_id("quota"))),
    };
    let sent = format!("WebSocket upgrade GET {url} ({header}: {address})");
    let bad = |error: String| Failure::Transport {
        sent: sent.clone(),
        error,
    };
    let mut req = url.into_client_request().map_err(|e| bad(e.to_string()))?;
    req.headers_mut().insert(
        HeaderName::from_bytes(header.as_bytes()).map_err(|e| bad(e.to_string()))?,
        HeaderValue::from_str(address).map_err(|e| bad(e.to_string()))?,
    );
    match tokio::time::timeout(PROMPT, tokio_tungstenite::connect_async(req)).await {
        Err(_) => Err(bad(format!("no answer within {PROMPT:?}"))),
        Ok(Ok((ws, _))) => Ok(Ok(ws)),
        Ok(Err(WsError::Http(response))) => Ok(Err((
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ))),
        Ok(Err(e)) => Err(bad(e.to_string())),
    }
}

/// Opens a socket that must open, though a socket closed a moment ago may still count:
/// retried on 429 for [`RELEASE`].
async fn open_ok(
    t: &Target,
    kind: Kind<'_>,
    header: &str,
    address: &str,
    step: &str,
) -> Result<Ws, Failure> {
    let start = Instant::now();
    loop {
        match open(t, kind, header, address).await? {
            Ok(ws) => return Ok(ws),
            Err((429, _)) if start.elapsed() < RELEASE => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err((status, body)) => {
                return Err(step_failure(
                    step,
                    "HTTP 101, the socket opened",
                    format!("HTTP {status} {}", describe_bytes(body.as_bytes(), 300)),
                ));
            }
        }
    }
}

/// Opens a socket that must be refused over a quota: `429 {"error": "…<mentions>…"}`.
async fn open_refused(
    t: &Target,
    kind: Kind<'_>,
    header: &str,
    address: &str,
    step: &str,
    mentions: &[&str],
) -> Result<(), Failure> {
    let expected = format!("HTTP 429 {{\"error\": \"… {} …\"}}", mentions.join(" … "));
    match open(t, kind, header, address).await? {
        Ok(ws) => {
            close(ws).await;
            Err(step_failure(step, expected, "HTTP 101, the socket opened"))
        }
        // The WebSocket client keeps of a refused upgrade's body only the bytes that arrived
        // with its head (tungstenite's handshake `tail`): a body written in a later segment
        // (`wrangler dev` now and then) is lost. The status is checked there, the body
        // wherever it arrives.
        Err((429, body)) if body.is_empty() => Ok(()),
        Err((429, body))
            if serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_lowercase))
                .is_some_and(|e| mentions.iter().all(|m| e.contains(m))) =>
        {
            Ok(())
        }
        Err((status, body)) => Err(step_failure(
            step,
            expected,
            format!("HTTP {status} {}", describe_bytes(body.as_bytes(), 300)),
        )),
    }
}

/// Closes a socket and waits for the server's side of the closing handshake (or the end of
/// the stream), so the server has seen the close.
async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(PROMPT, async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

async fn close_all(sockets: Vec<Ws>) {
    futures_util::future::join_all(sockets.into_iter().map(close)).await;
}

/// A site's quota on open sockets (4 on the quota site) counts its dashboards and visitor
/// channels together, whatever their addresses: one more upgrade is refused with
/// `429 {"error": "…sockets…site…"}`, and once one socket closed a new one opens.
pub(super) async fn sockets_over_a_sites_quota_are_refused_until_one_closes(
    t: &Target,
) -> Result<(), Failure> {
    let (public, secret, header) = quota_site(t)?;
    let _turn = QUOTA_SITE.lock().await;
    let kinds = [
        Kind::Dashboard { secret },
        Kind::Visitor { public },
        Kind::Dashboard { secret },
        Kind::Visitor { public },
    ];
    let mut sockets = Vec::new();
    for (i, kind) in kinds
        .iter()
        .cycle()
        .take(QUOTA_SITE_MAX_SOCKETS)
        .enumerate()
    {
        let step = format!(
            "socket {} of {QUOTA_SITE_MAX_SOCKETS} on a site of maxSockets {QUOTA_SITE_MAX_SOCKETS}",
            i + 1
        );
        match open_ok(t, *kind, header, &fresh_address(), &step).await {
            Ok(ws) => sockets.push(ws),
            Err(e) => {
                close_all(sockets).await;
                return Err(e);
            }
        }
    }
    let over = async {
        for kind in [Kind::Dashboard { secret }, Kind::Visitor { public }] {
            open_refused(
                t,
                kind,
                header,
                &fresh_address(),
                &format!("one socket more than the site's maxSockets {QUOTA_SITE_MAX_SOCKETS}"),
                &["socket", "site"],
            )
            .await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = over {
        close_all(sockets).await;
        return Err(e);
    }
    // One closes: its place is free again (and only its place).
    if let Some(ws) = sockets.pop() {
        close(ws).await;
    }
    let again = open_ok(
        t,
        Kind::Dashboard { secret },
        header,
        &fresh_address(),
        "a dashboard after one of the site's sockets closed",
    )
    .await;
    let result = match again {
        Ok(ws) => {
            sockets.push(ws);
            open_refused(
                t,
                Kind::Visitor { public },
                header,
                &fresh_address(),
                "one socket more once the freed place is taken again",
                &["socket", "site"],
            )
            .await
        }
        Err(e) => Err(e),
    };
    close_all(sockets).await;
    result
}

/// An address's quota on open sockets (2 on upgrades to the quota site) counts dashboards and
/// visitor channels from that address: one more from it is refused with
/// `429 {"error": "…sockets…address…"}` while another address still connects, and once one of
/// its sockets closed the address connects again.
pub(super) async fn sockets_over_an_addresss_quota_are_refused_until_one_closes(
    t: &Target,
) -> Result<(), Failure> {
    let (public, secret, header) = quota_site(t)?;
    let _turn = QUOTA_SITE.lock().await;
    let address = fresh_address();
    let mut sockets = Vec::new();
    let result = async {
        let kinds = [Kind::Dashboard { secret }, Kind::Visitor { public }];
        for (i, kind) in kinds
            .iter()
            .cycle()
            .take(QUOTA_SITE_MAX_SOCKETS_PER_ADDRESS)
            .enumerate()
        {
            let step = format!(
                "socket {} of {QUOTA_SITE_MAX_SOCKETS_PER_ADDRESS} from {address} (maxSocketsPerAddress {QUOTA_SITE_MAX_SOCKETS_PER_ADDRESS})",
                i + 1
            );
            sockets.push(open_ok(t, *kind, header, &address, &step).await?);
        }
        let step = format!(
            "one socket more from {address} than maxSocketsPerAddress {QUOTA_SITE_MAX_SOCKETS_PER_ADDRESS}"
        );
        open_refused(t, Kind::Visitor { public }, header, &address, &step, &["socket", "address"])
            .await?;
        // Another address is not concerned.
        let other = fresh_address();
        sockets.push(
            open_ok(t, Kind::Dashboard { secret }, header, &other, "a dashboard from another address")
                .await?,
        );
        // One of the address's sockets closes: the address connects again.
        close(sockets.remove(0)).await;
        sockets.push(
            open_ok(
                t,
                Kind::Dashboard { secret },
                header,
                &address,
                &format!("a dashboard from {address} after one of its sockets closed"),
            )
            .await?,
        );
        open_refused(t, Kind::Dashboard { secret }, header, &address, &step, &["socket", "address"])
            .await
    }
    .await;
    close_all(sockets).await;
    result
}

/// A dashboard asking for more snapshots than its quota (12 `GET_VISITORS` a minute on the
/// quota site; the opening one does not count) gets `ERROR` replies naming the quota instead,
/// keeps receiving the site's broadcasts, and gets a snapshot again once the time the
/// `ERROR` names has passed.
pub(super) async fn a_dashboard_over_its_snapshot_quota_gets_an_error_and_still_hears_broadcasts(
    t: &Target,
) -> Result<(), Failure> {
    let (public, secret, header) = quota_site(t)?;
    let _turn = QUOTA_SITE.lock().await;
    let address = fresh_address();
    let started = Instant::now();
    // The place of a socket of an earlier case may still be taken for a moment.
    let mut dashboard = loop {
        match Dashboard::connect_from(t, secret, (header, &address)).await {
            Ok(d) => break d,
            Err(e) if started.elapsed() < RELEASE && e.to_string().contains("HTTP 429") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let flood = QUOTA_SITE_SNAPSHOTS_PER_MINUTE + 4;
    for _ in 0..flood {
        dashboard.send(&json!({"type": "GET_VISITORS"})).await?;
    }
    let mut snapshots = 0;
    let mut errors = Vec::new();
    while snapshots + errors.len() < flood {
        let (m, _) = dashboard
            .wait_for(
                &format!("{flood} answers to {flood} GET_VISITORS"),
                PROMPT * 2,
                |m| is_type(m, "INITIAL_VISITORS") || is_type(m, "ERROR"),
            )
            .await?;
        if is_type(&m, "INITIAL_VISITORS") {
            snapshots += 1;
        } else {
            errors.push(m);
        }
    }
    // The bucket refills one snapshot every 5 s: at most one more may have come back.
    let elapsed_refills = (started.elapsed().as_secs() / 5) as usize;
    if snapshots < QUOTA_SITE_SNAPSHOTS_PER_MINUTE
        || snapshots > QUOTA_SITE_SNAPSHOTS_PER_MINUTE + elapsed_refills
        || errors.is_empty()
    {
        return Err(step_failure(
            format!(
                "{flood} GET_VISITORS at once on a site of snapshotsPerMinute {QUOTA_SITE_SNAPSHOTS_PER_MINUTE}"
            ),
            format!(
                "{QUOTA_SITE_SNAPSHOTS_PER_MINUTE} INITIAL_VISITORS (one more per 5 s taken), the rest ERROR"
            ),
            format!("{snapshots} INITIAL_VISITORS, {} ERROR", errors.len()),
        ));
    }
    let first = &errors[0];
    let text = first["error"].as_str().unwrap_or_default().to_lowercase();
    let retry = text
        .split("retry in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    let Some(retry) = retry.filter(|s| (1..=5).contains(s) && text.contains("snapshot")) else {
        return Err(dashboard.mismatch(
            "ERROR {\"error\": \"…snapshot…; retry in N s\"} with N from 1 to 5",
            first,
        ));
    };
    // Broadcasts keep coming.
    let http = Http::new(t)?;
    let id = unique_id("quota_flood");
    track_ok(&http, public, "pageview", &id, "https://x.test/", json!({})).await?;
    dashboard.note(format!(
        "POST /track/visitor pageview {id} (after the snapshot quota was spent)"
    ));
    dashboard
        .wait_for(
            "the new_visitor broadcast of the new visitor",
            PROMPT,
            |m| is_update(m, &id, "new_visitor"),
        )
        .await?;
    // The quota refills with time: once the time named has passed, a snapshot again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    dashboard.get_visitors().await?;
    dashboard.close().await;
    Ok(())
}
