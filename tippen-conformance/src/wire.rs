//! Wire shapes of the contract: request bodies the cases send, and checks of what comes back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// A visitor id no other case (and no other run) uses: `<prefix>_<time>_<counter>`.
pub(crate) fn unique_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "conf_{prefix}_{:x}{:x}_{n}",
        nanos % 0x1_0000_0000_0000,
        std::process::id()
    )
}

/// Milliseconds since the Unix epoch on this machine's clock.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A `POST /track/visitor` body: `event` for `visitor_id` on `url`, with extra `visitor` fields.
pub(crate) fn track_body(event: &str, visitor_id: &str, url: &str, extra: Value) -> Value {
    let mut visitor = json!({
        "visitorId": visitor_id,
        "url": url,
        "timestamp": "2025-10-16T12:00:00Z",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) tippen-conformance",
    });
    if let (Some(v), Value::Object(extra)) = (visitor.as_object_mut(), extra) {
        v.extend(extra);
    }
    json!({ "event": event, "visitor": visitor, "website": "conformance.test" })
}

/// Bytes for a failure message: text when it is UTF-8 (shortened to `max` bytes), otherwise
/// the bytes escaped.
pub(crate) fn describe_bytes(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut text = match std::str::from_utf8(shown) {
        Ok(s) => format!("{s:?}"),
        Err(e) if e.valid_up_to() + 4 > shown.len() && shown.len() < bytes.len() => {
            // Cut inside a character: show the valid part.
            format!("{:?}", String::from_utf8_lossy(&shown[..e.valid_up_to()]))
        }
        Err(_) => format!("b\"{}\"", shown.escape_ascii()),
    };
    if bytes.is_empty() {
        text = "(empty)".into();
    } else if shown.len() < bytes.len() {
        text.push_str(&format!("… ({} bytes in all)", bytes.len()));
    }
    text
}

/// A JSON value for a failure message, shortened.
pub(crate) fn describe_json(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 600 {
        let mut cut = 600;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}… ({} bytes in all)", &text[..cut], text.len())
    } else {
        text
    }
}

/// The visitor with `visitor_id` in a list of `<Visitor>`s, if listed.
pub(crate) fn find_visitor<'a>(visitors: &'a Value, visitor_id: &str) -> Option<&'a Value> {
    visitors
        .as_array()?
        .iter()
        .find(|v| v.get("visitorId").and_then(Value::as_str) == Some(visitor_id))
}

/// How many entries of a `<Visitor>` list carry `visitor_id`.
pub(crate) fn count_visitor(visitors: &Value, visitor_id: &str) -> usize {
    visitors.as_array().map_or(0, |list| {
        list.iter()
            .filter(|v| v.get("visitorId").and_then(Value::as_str) == Some(visitor_id))
            .count()
    })
}

/// Checks a `<Visitor>` against the contract's shape: Part A's nine fields with their types,
/// then the additions (`enrichmentSource`, `isCached`, `url`, `isBot`, `tabs`). Returns what is
/// wrong, if anything.
pub(crate) fn visitor_shape_problems(v: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(obj) = v.as_object() else {
        return vec!["a <Visitor> must be a JSON object".into()];
    };
    let mut string_field = |name: &str| match obj.get(name) {
        Some(Value::String(_)) => {}
        Some(other) => problems.push(format!("`{name}` must be a string, is {other}")),
        None => problems.push(format!("`{name}` is missing")),
    };
    for name in [
        "visitorId",
        "company",
        "location",
        "lastRole",
        "website",
        "url",
    ] {
        string_field(name);
    }
    for name in ["timestamp", "lastActivity"] {
        match obj.get(name) {
            Some(Value::String(s)) if rfc3339_utc_ms(s).is_some() => {}
            Some(other) => problems.push(format!(
                "`{name}` must be an RFC 3339 UTC time string, is {other}"
            )),
            None => problems.push(format!("`{name}` is missing")),
        }
    }
    match obj.get("pageViews") {
        Some(n) if n.as_u64().is_some() => {}
        Some(other) => problems.push(format!(
            "`pageViews` must be a non-negative integer, is {other}"
        )),
        None => problems.push("`pageViews` is missing".into()),
    }
    match obj.get("status").and_then(Value::as_str) {
        Some("active" | "idle") => {}
        _ => problems.push(format!(
            "`status` must be \"active\" or \"idle\", is {}",
            obj.get("status").map_or("missing".into(), Value::to_string)
        )),
    }
    match obj.get("enrichmentSource").and_then(Value::as_str) {
        Some("provider" | "cache" | "fallback") => {}
        _ => problems.push(format!(
            "`enrichmentSource` must be \"provider\", \"cache\" or \"fallback\", is {}",
            obj.get("enrichmentSource")
                .map_or("missing".into(), Value::to_string)
        )),
    }
    for name in ["isCached", "isBot"] {
        match obj.get(name) {
            Some(Value::Bool(_)) => {}
            Some(other) => problems.push(format!("`{name}` must be a boolean, is {other}")),
            None => problems.push(format!("`{name}` is missing")),
        }
    }
    match obj.get("tabs").and_then(Value::as_array) {
        Some(tabs) if !tabs.is_empty() => {
            for tab in tabs {
                let ok = tab.get("tabId").is_some_and(Value::is_string)
                    && tab.get("url").is_some_and(Value::is_string)
                    && matches!(
                        tab.get("visibility").and_then(Value::as_str),
                        Some("visible" | "hidden")
                    )
                    && tab
                        .get("lastSeen")
                        .and_then(Value::as_str)
                        .and_then(rfc3339_utc_ms)
                        .is_some();
                if !ok {
                    problems.push(format!(
                        "each of `tabs` must be {{\"tabId\":string,\"url\":string,\"visibility\":\"visible\"|\"hidden\",\"lastSeen\":RFC 3339}}, one is {tab}"
                    ));
                }
            }
        }
        _ => problems.push(format!(
            "`tabs` must be a non-empty array, is {}",
            obj.get("tabs").map_or("missing".into(), Value::to_string)
        )),
    }
    problems
}

/// The tab ids of a `<Visitor>`, sorted.
pub(crate) fn tab_ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v
        .get("tabs")
        .and_then(Value::as_array)
        .map(|tabs| {
            tabs.iter()
                .filter_map(|t| t.get("tabId").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Parses an RFC 3339 time in UTC (`Z` or `+00:00`, optional fraction) into epoch milliseconds.
pub(crate) fn rfc3339_utc_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let first3: String = frac[..digits].chars().chain("00".chars()).take(3).collect();
        millis = first3.parse().ok()?;
        rest = &frac[digits..];
    }
    if !matches!(rest, "Z" | "z" | "+00:00") {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_utc() {
        assert_eq!(rfc3339_utc_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_utc_ms("2025-10-16T12:00:00Z"),
            Some(1_760_616_000_000)
        );
        assert_eq!(
            rfc3339_utc_ms("2025-10-16T12:00:00.123Z"),
            Some(1_760_616_000_123)
        );
        assert_eq!(
            rfc3339_utc_ms("2025-10-16T12:00:00.1+00:00"),
            Some(1_760_616_000_100)
        );
        assert_eq!(rfc3339_utc_ms("2025-10-16T12:00:00+02:00"), None);
        assert_eq!(rfc3339_utc_ms("2025-10-16 12:00"), None);
        assert_eq!(rfc3339_utc_ms("1729080000000"), None);
    }

    #[test]
    fn describes_bytes() {
        assert_eq!(describe_bytes(b"", 10), "(empty)");
        assert_eq!(describe_bytes(b"abc", 10), "\"abc\"");
        assert_eq!(describe_bytes(b"\xff", 10), "b\"\\xff\"");
        assert!(describe_bytes(b"abcdef", 3).starts_with("\"abc\"…"));
    }

    #[test]
    fn unique_ids_differ() {
        assert_ne!(unique_id("a"), unique_id("a"));
    }
}
