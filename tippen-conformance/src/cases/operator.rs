//! Running tippen for many customers: the operator API (sites and keys at runtime), member
//! roles, the audit log (`docs/access.md`). Each case creates sites of its own, with ids no
//! other run uses, through the operator token ([`Target::operator_token`]).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{listed_visitor, step_failure, track_ok};
use crate::http::{Http, Req};
use crate::wire::unique_id;
use crate::{Failure, Target};

/// A site the case created: its id and keys.
struct NewSite {
    id: String,
    public_key: String,
    secret_key: String,
}

fn operator_token(t: &Target) -> Result<&str, Failure> {
    t.operator_token.as_deref().ok_or_else(|| {
        step_failure(
            "(starting the case)",
            "the operator token (--operator-token)",
            "not configured",
        )
    })
}

/// Sends `req()` once the change just answered (one that takes access away or gives it back)
/// must be seen by every request, and checks its answer with `check`: at once on a host with
/// one view of its sites, [`Target::revocation_delay`] after the change on a host whose
/// instances each keep sites for a while (Lambda). Before then, one request may see the change
/// and the next, on another instance, not: a case that went on after the first new answer
/// failed its next step there.
async fn answers_once_settled<T>(
    http: &Http,
    delay: Duration,
    req: impl FnOnce() -> Req,
    check: impl FnOnce(crate::http::Answer) -> Result<T, Failure>,
) -> Result<T, Failure> {
    tokio::time::sleep(delay).await;
    check(http.send(req()).await?)
}

/// `POST /api/operator/sites` for a fresh site id; checks the `201` and its keys.
async fn create_site(http: &Http, t: &Target, settings: Value) -> Result<NewSite, Failure> {
    let token = operator_token(t)?;
    let id = unique_id("op").to_ascii_lowercase();
    let mut body = json!({"id": id, "name": format!("Customer {id}")});
    if let (Some(b), Some(extra)) = (body.as_object_mut(), settings.as_object()) {
        b.extend(extra.clone());
    }
    let answer = http
        .send(Req::post("/api/operator/sites").key(token).json(&body))
        .await?;
    let created = answer.expect_ok_json(201)?;
    let (Some(public_key), Some(secret_key)) =
        (created["publicKey"].as_str(), created["secretKey"].as_str())
    else {
        return Err(answer.fail("201 {\"site\":…,\"publicKey\":…,\"secretKey\":…}"));
    };
    if created["site"]["id"] != id.as_str() || created.to_string().contains("hash") {
        return Err(answer.fail(format!(
            "201 with the site {id} and no key hash in the answer"
        )));
    }
    Ok(NewSite {
        id,
        public_key: public_key.to_owned(),
        secret_key: secret_key.to_owned(),
    })
}

/// The audit entries `key` (or the operator token, with `operator`) reads for the site.
async fn audit(http: &Http, key: &str, operator_site: Option<&str>) -> Result<Vec<Value>, Failure> {
    let req = match operator_site {
        Some(site) => Req::get(format!("/api/operator/audit?site={site}&limit=100")),
        None => Req::get("/api/audit?limit=100"),
    };
    let answer = http.send(req.key(key)).await?;
    let body = answer.expect_ok_json(200)?;
    body["entries"]
        .as_array()
        .cloned()
        .ok_or_else(|| answer.fail("200 {\"entries\":[…]}"))
}

/// Fails unless `entries` has one matching `action`, `outcome`, actor kind and name.
fn expect_entry(
    entries: &[Value],
    action: &str,
    outcome: &str,
    kind: &str,
    name: Option<&str>,
) -> Result<(), Failure> {
    let found = entries.iter().any(|e| {
        e["action"] == action
            && e["outcome"] == outcome
            && e["actor"]["kind"] == kind
            && name.is_none_or(|n| e["actor"]["name"] == n)
            && e["at"].as_str().is_some_and(|at| at.contains('T'))
    });
    if found {
        Ok(())
    } else {
        Err(step_failure(
            "the audit log",
            format!(
                "an entry {action} {outcome} by {kind}{}",
                name.map(|n| format!(" named {n}")).unwrap_or_default()
            ),
            Value::from(entries.to_vec()).to_string(),
        ))
    }
}

pub(super) async fn operator_creates_a_site_whose_keys_work_at_once(
    t: &Target,
) -> Result<(), Failure> {
    let token = operator_token(t)?;
    let http = Http::new(t)?;
    // Without the token, a wrong one, a site's key: refused.
    http.send(Req::get("/api/operator/sites"))
        .await?
        .expect_error(401)?;
    http.send(Req::get("/api/operator/sites").key("not-the-operator-token-0123456789"))
        .await?
        .expect_error(403)?;
    http.send(Req::get("/api/operator/sites").key(&t.secret_key))
        .await?
        .expect_error(403)?;
    // Bad input: keys in the body, a bad id, unknown settings.
    for bad in [
        json!({"id": unique_id("opbad"), "secretKey": "sk_mine_0123456789abcdefghij"}),
        json!({"id": "no spaces allowed"}),
        json!({"id": "__tippen_registry"}),
        json!({"id": unique_id("opbad"), "colour": "blue"}),
    ] {
        http.send(Req::post("/api/operator/sites").key(token).json(&bad))
            .await?
            .expect_error(400)?;
    }

    let site = create_site(&http, t, json!({"honorGpc": true})).await?;
    // The same id again: 409.
    http.send(
        Req::post("/api/operator/sites")
            .key(token)
            .json(&json!({"id": site.id})),
    )
    .await?
    .expect_error(409)?;
    // Tracking works with the new keys at once; the secret key sees the visitor.
    let visitor = unique_id("opv");
    track_ok(
        &http,
        &site.public_key,
        "pageview",
        &visitor,
        "https://customer.test/pricing",
        json!({}),
    )
    .await?;
    listed_visitor(&http, &site.secret_key, &visitor).await?;
    // The new public key is only a public key; the main site's key sees nothing of it.
    http.send(Req::get("/api/visitors").key(&site.public_key))
        .await?
        .expect_error(403)?;
    let (main, _) = super::list_visitors(&http, &t.secret_key).await?;
    if crate::wire::find_visitor(&main, &visitor).is_some() {
        return Err(step_failure(
            "GET /api/visitors with the main site's key",
            format!("no {visitor} (it is the new site's)"),
            main.to_string(),
        ));
    }

    // The operator lists it, with its live visitor, in the sites and the overview (a
    // heartbeat before each, as the visitor's tracker sends: on a slow host the steps, and
    // each listing of every site, take much of a short test grace).
    let heartbeat = || {
        track_ok(
            &http,
            &site.public_key,
            "heartbeat",
            &visitor,
            "https://customer.test/pricing",
            json!({}),
        )
    };
    heartbeat().await?;
    let listed = http
        .send(Req::get("/api/operator/sites").key(token))
        .await?
        .expect_ok_json(200)?;
    let shown = listed["sites"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == site.id.as_str()))
        .cloned();
    match shown {
        Some(s) if s["overview"]["liveVisitors"] == 1 && s["disabled"] == false => {}
        _ => {
            return Err(step_failure(
                "GET /api/operator/sites",
                format!("the site {} with liveVisitors 1", site.id),
                listed.to_string(),
            ));
        }
    }
    heartbeat().await?;
    let overview = http
        .send(Req::get("/api/operator/overview").key(token))
        .await?
        .expect_ok_json(200)?;
    let in_overview = overview["sites"].as_array().is_some_and(|s| {
        s.iter()
            .any(|s| s["id"] == site.id.as_str() && s["overview"]["liveVisitors"] == 1)
    });
    if !in_overview || overview["totals"]["liveVisitors"].as_u64().unwrap_or(0) < 1 {
        return Err(step_failure(
            "GET /api/operator/overview",
            format!("the site {} with 1 live visitor, and totals", site.id),
            overview.to_string(),
        ));
    }

    // Disabled: every key refused (403), data kept; enabled again: tracking works.
    let answer = http
        .send(
            Req::new(
                reqwest::Method::PATCH,
                format!("/api/operator/sites/{}", site.id),
            )
            .key(token)
            .json(&json!({"disabled": true, "dashboardOrigins": ["https://app.customer.test"]})),
        )
        .await?;
    let patched = answer.expect_ok_json(200)?;
    if patched["disabled"] != true
        || patched["settings"]["dashboardOrigins"] != json!(["https://app.customer.test"])
    {
        return Err(answer.fail("200 with disabled true and the new dashboard origins"));
    }
    answers_once_settled(
        &http,
        t.revocation_delay,
        || Req::get("/api/visitors").key(&site.secret_key),
        |a| a.expect_error(403),
    )
    .await?;
    http.send(
        Req::new(
            reqwest::Method::PATCH,
            format!("/api/operator/sites/{}", site.id),
        )
        .key(token)
        .json(&json!({"disabled": false})),
    )
    .await?
    .expect_ok_json(200)?;
    answers_once_settled(
        &http,
        t.revocation_delay,
        || Req::get("/api/visitors").key(&site.secret_key),
        |a| a.expect_ok_json(200),
    )
    .await?;
    // Tracking works again (a page view: the waits above may have outlasted a short test
    // grace), and the visitor is listed.
    track_ok(
        &http,
        &site.public_key,
        "pageview",
        &visitor,
        "https://customer.test/pricing",
        json!({}),
    )
    .await?;
    listed_visitor(&http, &site.secret_key, &visitor).await?;
    // A PATCH that would break a rule is refused whole.
    http.send(
        Req::new(
            reqwest::Method::PATCH,
            format!("/api/operator/sites/{}", site.id),
        )
        .key(token)
        .json(&json!({"guestUrlOrigins": ["http://not-https.test"]})),
    )
    .await?
    .expect_error(400)?;
    http.send(
        Req::new(
            reqwest::Method::PATCH,
            "/api/operator/sites/no-such-site-here",
        )
        .key(token)
        .json(&json!({"disabled": true})),
    )
    .await?
    .expect_error(404)?;

    let entries = audit(&http, token, Some(&site.id)).await?;
    expect_entry(&entries, "site.create", "done", "operator", None)?;
    expect_entry(&entries, "site.update", "done", "operator", None)?;
    Ok(())
}

pub(super) async fn a_rotated_key_works_until_its_overlap_ends(t: &Target) -> Result<(), Failure> {
    let token = operator_token(t)?;
    let http = Http::new(t)?;
    let site = create_site(&http, t, json!({})).await?;
    let rotate = |key: &'static str, overlap: u64| {
        Req::post(format!("/api/operator/sites/{}/rotate-key", site.id))
            .key(token)
            .json(&json!({"key": key, "overlapSeconds": overlap}))
    };
    http.send(rotate("neither", 1)).await?.expect_error(400)?;
    let answer = http.send(rotate("secret", 2)).await?;
    let rotated = answer.expect_ok_json(200)?;
    let (Some(new_key), Some(expires)) = (
        rotated["key"].as_str(),
        rotated["previous"]["expiresAt"].as_str(),
    ) else {
        return Err(answer.fail("200 {\"key\":…,\"previous\":{\"id\",\"expiresAt\"}}"));
    };
    let rotated_at = Instant::now();
    // Both keys work during the overlap.
    for key in [new_key, site.secret_key.as_str()] {
        http.send(Req::get("/api/visitors").key(key))
            .await?
            .expect_ok_json(200)?;
    }
    // After it: the old key is 401, the new one still works.
    let deadline = rotated_at + Duration::from_secs(8);
    loop {
        let answer = http
            .send(Req::get("/api/visitors").key(&site.secret_key))
            .await?;
        if answer.status == 401u16 {
            answer.expect_error(401)?;
            if rotated_at.elapsed() < Duration::from_millis(1_500) {
                return Err(step_failure(
                    "the old key after the rotation",
                    "working for the 2 s overlap",
                    format!("401 after {:?}", rotated_at.elapsed()),
                ));
            }
            break;
        }
        answer.expect_ok_json(200)?;
        if Instant::now() >= deadline {
            return Err(step_failure(
                "the old key after the rotation",
                format!("401 once its overlap ended ({expires})"),
                format!("still 200 after {:?}", rotated_at.elapsed()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    http.send(Req::get("/api/visitors").key(new_key))
        .await?
        .expect_ok_json(200)?;
    // The public key too, and a revocation ends the overlap at once.
    let answer = http.send(rotate("public", 3600)).await?;
    let rotated = answer.expect_ok_json(200)?;
    let (Some(new_public), Some(previous_id)) =
        (rotated["key"].as_str(), rotated["previous"]["id"].as_str())
    else {
        return Err(answer.fail("200 {\"key\":…,\"previous\":{\"id\",…}}"));
    };
    let visitor = unique_id("rot");
    track_ok(
        &http,
        &site.public_key,
        "pageview",
        &visitor,
        "https://customer.test/",
        json!({}),
    )
    .await?;
    track_ok(
        &http,
        new_public,
        "heartbeat",
        &visitor,
        "https://customer.test/",
        json!({}),
    )
    .await?;
    http.send(
        Req::new(
            reqwest::Method::DELETE,
            format!("/api/operator/sites/{}/keys/{previous_id}", site.id),
        )
        .key(token),
    )
    .await?
    .expect_ok_json(200)?;
    let beat = crate::wire::track_body("heartbeat", &visitor, "https://customer.test/", json!({}));
    answers_once_settled(
        &http,
        t.revocation_delay,
        || {
            Req::post("/track/visitor")
                .key(&site.public_key)
                .json(&beat)
        },
        |a| a.expect_error(403),
    )
    .await?;
    let entries = audit(&http, token, Some(&site.id)).await?;
    expect_entry(&entries, "key.rotate", "done", "operator", None)?;
    expect_entry(&entries, "key.revoke", "done", "operator", None)?;
    Ok(())
}

pub(super) async fn member_roles_limit_what_a_token_may_do_and_the_audit_names_them(
    t: &Target,
) -> Result<(), Failure> {
    let http = Http::new(t)?;
    let site = create_site(&http, t, json!({})).await?;
    let member = |name: &str, role: &str| {
        Req::post("/api/members")
            .key(&site.secret_key)
            .json(&json!({"name": name, "role": role}))
    };
    http.send(member("Nobody", "owner"))
        .await?
        .expect_error(400)?;
    http.send(
        Req::post("/api/members")
            .key(&site.public_key)
            .json(&json!({"name": "Mallory", "role": "admin"})),
    )
    .await?
    .expect_error(403)?;
    let mut tokens = Vec::new();
    for (name, role) in [("Vera Viewer", "viewer"), ("Ada Agent", "agent")] {
        let answer = http.send(member(name, role)).await?;
        let made = answer.expect_ok_json(201)?;
        match (made["token"].as_str(), made["id"].as_str()) {
            (Some(token), Some(id)) if made["role"] == role && made["name"] == name => {
                tokens.push((token.to_owned(), id.to_owned()));
            }
            _ => {
                return Err(answer.fail(format!(
                    "201 {{\"id\",\"name\":\"{name}\",\"role\":\"{role}\",\"token\"}}"
                )));
            }
        }
    }
    let (viewer, agent) = (tokens[0].0.clone(), tokens[1].0.clone());
    let visitor = unique_id("rolev");
    track_ok(
        &http,
        &site.public_key,
        "pageview",
        &visitor,
        "https://customer.test/",
        json!({}),
    )
    .await?;
    // The visitor's heartbeats, as its tracker sends them, before the steps that need it live
    // (on a slow host the steps between take much of a short test grace).
    let heartbeat = || {
        track_ok(
            &http,
            &site.public_key,
            "heartbeat",
            &visitor,
            "https://customer.test/",
            json!({}),
        )
    };

    // Who each key is (GET /api/me).
    for (key, role, kind, name) in [
        (&viewer, "viewer", "member", json!("Vera Viewer")),
        (&agent, "agent", "member", json!("Ada Agent")),
        (&site.secret_key, "admin", "secret_key", Value::Null),
    ] {
        let answer = http.send(Req::get("/api/me").key(key)).await?;
        let me = answer.expect_ok_json(200)?;
        if me["site"] != site.id.as_str()
            || me["role"] != role
            || me["kind"] != kind
            || me["name"] != name
        {
            return Err(answer.fail(format!(
                "200 {{\"site\":\"{}\",\"role\":\"{role}\",\"kind\":\"{kind}\",\"name\":{name},…}}",
                site.id
            )));
        }
    }
    http.send(Req::get("/api/me").key(&site.public_key))
        .await?
        .expect_error(403)?;

    // The viewer reads: the list, statistics, the dashboard socket; nothing else.
    heartbeat().await?;
    listed_visitor(&http, &viewer, &visitor).await?;
    http.send(Req::get("/api/stats").key(&viewer))
        .await?
        .expect_ok_json(200)?;
    let mut dashboard = crate::dashboard::Dashboard::connect(t, &viewer).await?;
    let snapshot = dashboard.get_visitors().await?;
    if crate::wire::find_visitor(&snapshot["visitors"], &visitor).is_none() {
        return Err(dashboard.mismatch(
            "INITIAL_VISITORS with the visitor, to a viewer's socket",
            &snapshot,
        ));
    }
    let invite = |key: &str, invite_id: &str| {
        Req::post("/api/send-video-invite").key(key).json(&json!({
            "visitorId": visitor,
            "inviteId": invite_id,
            "guestUrl": super::guest_url(invite_id),
        }))
    };
    http.send(invite(&viewer, &unique_id("inv")))
        .await?
        .expect_error(403)?;
    http.send(Req::new(reqwest::Method::DELETE, format!("/api/visitors/{visitor}")).key(&viewer))
        .await?
        .expect_error(403)?;
    for path in ["/api/audit", "/api/members"] {
        http.send(Req::get(path).key(&viewer))
            .await?
            .expect_error(403)?;
    }
    // The agent invites (recorded as sent by the agent, though the body names no one), may
    // not delete.
    let invite_id = unique_id("inv");
    heartbeat().await?;
    http.send(invite(&agent, &invite_id))
        .await?
        .expect_json(200, &json!({"success": true}))?;
    let listed = listed_visitor(&http, &site.secret_key, &visitor).await?;
    if listed["invite"]["invitedBy"] != "Ada Agent" {
        return Err(step_failure(
            "GET /api/visitors after the agent's invite",
            "the open invite with invitedBy \"Ada Agent\"",
            listed.to_string(),
        ));
    }
    http.send(Req::new(reqwest::Method::DELETE, format!("/api/visitors/{visitor}")).key(&agent))
        .await?
        .expect_error(403)?;
    // The secret key deletes.
    http.send(
        Req::new(reqwest::Method::DELETE, format!("/api/visitors/{visitor}")).key(&site.secret_key),
    )
    .await?
    .expect_ok_json(200)?;
    // A revoked member token is refused from then on.
    http.send(
        Req::new(
            reqwest::Method::DELETE,
            format!("/api/members/{}", tokens[0].1),
        )
        .key(&site.secret_key),
    )
    .await?
    .expect_ok_json(200)?;
    answers_once_settled(
        &http,
        t.revocation_delay,
        || Req::get("/api/visitors").key(&viewer),
        |a| a.expect_error(403),
    )
    .await?;

    let entries = audit(&http, &site.secret_key, None).await?;
    expect_entry(&entries, "member.create", "done", "secret_key", None)?;
    expect_entry(
        &entries,
        "invite.send",
        "denied",
        "member",
        Some("Vera Viewer"),
    )?;
    expect_entry(
        &entries,
        "visitor.delete",
        "denied",
        "member",
        Some("Vera Viewer"),
    )?;
    expect_entry(&entries, "invite.send", "done", "member", Some("Ada Agent"))?;
    expect_entry(
        &entries,
        "visitor.delete",
        "denied",
        "member",
        Some("Ada Agent"),
    )?;
    expect_entry(&entries, "visitor.delete", "done", "secret_key", None)?;
    expect_entry(&entries, "member.revoke", "done", "secret_key", None)?;
    if !entries
        .iter()
        .any(|e| e["action"] == "visitor.delete" && e["target"] == visitor.as_str())
    {
        return Err(step_failure(
            "the audit log",
            format!("the deletion naming its visitor {visitor}"),
            Value::from(entries).to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Json;
    use axum::http::StatusCode;

    use super::*;

    /// A host of two instances taking turns, just after a disabled site was enabled again: the
    /// first sees it at once, the second answers 403 for `lag` more (a Lambda instance that
    /// read the disabled site just before and keeps it in its site cache). Its base URL.
    async fn two_instances(lag: Duration) -> String {
        let enabled = Instant::now();
        let requests = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new().route(
            "/api/visitors",
            axum::routing::get(move || {
                let second = requests.fetch_add(1, Ordering::SeqCst) % 2 == 1;
                async move {
                    if second && enabled.elapsed() < lag {
                        let error = json!({"error": "site \"op\" is disabled"});
                        (StatusCode::FORBIDDEN, Json(error))
                    } else {
                        (StatusCode::OK, Json(json!({"visitors": []})))
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    /// The operator case failed on Lambda this way: its first request after enabling the site
    /// reached an instance that saw it, the case went on, and its next request reached one
    /// that still kept the disabled site (within `TIPPEN_SITE_CACHE_MS`) and answered 403.
    #[tokio::test]
    async fn a_change_is_checked_once_every_instance_must_see_it() {
        let lag = Duration::from_millis(400);
        let http = Http::at(&two_instances(lag).await).expect("a client");
        let visitors = || Req::get("/api/visitors").key("tsk_op");
        answers_once_settled(&http, lag + Duration::from_millis(100), visitors, |a| {
            a.expect_ok_json(200)
        })
        .await
        .expect("enabled after the delay");
        // Whichever instance the next requests reach, they see the site enabled.
        for _ in 0..2 {
            http.send(visitors())
                .await
                .and_then(|a| a.expect_ok_json(200))
                .expect("enabled on every instance");
        }
    }
}
