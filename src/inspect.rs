//! `status` and `history`: what an operator reads. Never prints a token.

use crate::config::Config;
use crate::error::Error;
use crate::store::{now, Store};
use crate::units::human;
use serde_json::json;
use std::path::Path;

/// Prints per-account state; returns false when an account needs re-authorization.
pub fn status(db: &Path, config: Option<&Config>, as_json: bool) -> Result<bool, Error> {
    let store = Store::open_existing(db)?;
    let t = now();
    let rows = store.tokens()?;
    let mut names: Vec<String> = rows.iter().map(|r| r.account.clone()).collect();
    if let Some(c) = config {
        for a in &c.accounts {
            if !names.contains(&a.name) {
                names.push(a.name.clone());
            }
        }
    }
    let mut all_ok = true;
    let mut out = Vec::new();
    for name in &names {
        let row = rows.iter().find(|r| &r.account == name);
        let account_cfg = config.and_then(|c| c.accounts.iter().find(|a| &a.name == name));
        let is_api_key = account_cfg.is_some_and(|a| a.auth == crate::config::AuthKind::ApiKey);
        let state = match row {
            Some(r) => r.state.as_str(),
            None if is_api_key => "ok",
            None => "no_token",
        };
        if state != "ok" {
            all_ok = false;
        }
        let mut endpoint_names: Vec<String> = account_cfg
            .map(|a| a.endpoints.iter().map(|e| e.name.clone()).collect())
            .unwrap_or_default();
        if endpoint_names.is_empty() {
            endpoint_names = store.endpoints_of(name)?;
        }
        let mut endpoints = Vec::new();
        for e in &endpoint_names {
            let (last, failures) = store.endpoint_summary(name, e)?;
            endpoints.push(json!({
                "name": e,
                "last_poll_at": last.as_ref().map(|p| p.started_at),
                "status": last.as_ref().and_then(|p| p.status),
                "items": last.as_ref().and_then(|p| p.items),
                "error": last.as_ref().and_then(|p| p.error.clone()),
                "consecutive_failures": failures,
            }));
        }
        // The API refusing freshly refreshed tokens: a `rejected` event no successful poll
        // has followed.
        let refusing = store
            .events(Some(name), 1)?
            .into_iter()
            .find(|e| e.event == "rejected")
            .filter(|e| {
                !endpoints.iter().any(|p| {
                    p["status"]
                        .as_i64()
                        .is_some_and(|s| (200..300).contains(&s))
                        && p["last_poll_at"].as_i64().is_some_and(|at| at > e.at)
                })
            })
            .and_then(|e| e.detail);
        out.push(json!({
            "account": name,
            "state": state,
            "detail": row.and_then(|r| r.state_detail.clone()),
            "api_refusing": refusing,
            "access_expires_at": row.and_then(|r| r.access_expires_at),
            "refresh_expires_at": row.and_then(|r| r.refresh_expires_at),
            "has_refresh_token": row.is_some_and(|r| r.refresh_token.is_some()),
            "obtained_at": row.map(|r| r.obtained_at),
            "obtained_by": row.map(|r| r.obtained_by.clone()),
            "last_refresh_at": row.and_then(|r| r.last_refresh_at),
            "generation": row.map(|r| r.generation),
            "endpoints": endpoints,
        }));
    }
    if as_json {
        let doc = json!({ "database": db.display().to_string(), "now": t, "accounts": out });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(all_ok);
    }
    println!("database: {}", db.display());
    for a in &out {
        print_account(a, t);
    }
    Ok(all_ok)
}

fn print_account(a: &serde_json::Value, t: i64) {
    let i = |k: &str| a[k].as_i64();
    println!(
        "\naccount {}: {}",
        a["account"].as_str().unwrap_or(""),
        a["state"].as_str().unwrap_or("")
    );
    if let Some(d) = a["detail"].as_str() {
        println!("  {d}");
    }
    if let Some(d) = a["api_refusing"].as_str() {
        println!("  api: {d}");
    }
    if a["state"] == "no_token" {
        println!(
            "  no token stored: run `oauth-poller seed {} FILE`",
            a["account"].as_str().unwrap_or("")
        );
    }
    match i("access_expires_at") {
        Some(e) if e > t => println!(
            "  access token:  expires in {} (at {})",
            human(e - t),
            fmt_time(e)
        ),
        Some(e) => println!(
            "  access token:  expired {} ago (at {})",
            human(t - e),
            fmt_time(e)
        ),
        None if i("generation").is_some() => println!("  access token:  no known expiry"),
        None => {}
    }
    match (i("refresh_expires_at"), a["has_refresh_token"].as_bool()) {
        (Some(e), _) if e > t => println!(
            "  refresh token: expires in {} (at {}): a human must re-authorize before then",
            human(e - t),
            fmt_time(e)
        ),
        (Some(e), _) => println!("  refresh token: expired {} ago", human(t - e)),
        (None, Some(true)) => println!("  refresh token: no known expiry"),
        (None, _) if i("generation").is_some() => println!("  refresh token: none"),
        _ => {}
    }
    if let Some(r) = i("last_refresh_at") {
        println!(
            "  last refresh:  {} ago ({})",
            human(t - r),
            a["obtained_by"].as_str().unwrap_or("")
        );
    } else if let Some(o) = i("obtained_at") {
        println!(
            "  obtained:      {} ago ({})",
            human(t - o),
            a["obtained_by"].as_str().unwrap_or("")
        );
    }
    for e in a["endpoints"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or("");
        let Some(at) = e["last_poll_at"].as_i64() else {
            println!("  endpoint {name}: not polled yet");
            continue;
        };
        let status = e["status"]
            .as_i64()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into());
        let mut line = format!(
            "  endpoint {name}: last poll {} ago, status {status}",
            human(t - at)
        );
        if let Some(n) = e["items"].as_i64() {
            line.push_str(&format!(", {n} items"));
        }
        line.push_str(&format!(
            ", {} consecutive failure(s)",
            e["consecutive_failures"]
        ));
        if let Some(err) = e["error"].as_str() {
            line.push_str(&format!(": {err}"));
        }
        println!("{line}");
    }
}

/// Polls and token events merged, newest first.
pub fn history(db: &Path, account: Option<&str>, limit: usize, as_json: bool) -> Result<(), Error> {
    let store = Store::open_existing(db)?;
    let mut items: Vec<(i64, i64, serde_json::Value)> = Vec::new();
    for p in store.polls(account, limit)? {
        items.push((p.started_at, p.id, json!({
            "kind": "poll", "at": p.started_at, "account": p.account, "endpoint": p.endpoint,
            "status": p.status, "duration_ms": p.duration_ms, "bytes": p.bytes, "items": p.items,
            "changed": p.changed, "error": p.error,
        })));
    }
    for e in store.events(account, limit)? {
        items.push((e.at, e.id, json!({
            "kind": "event", "at": e.at, "account": e.account, "event": e.event, "detail": e.detail,
        })));
    }
    items.sort_by(|a, b| {
        (b.0, b.2["kind"] == "event", b.1).cmp(&(a.0, a.2["kind"] == "event", a.1))
    });
    items.truncate(limit);
    if as_json {
        let list: Vec<_> = items.into_iter().map(|i| i.2).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(());
    }
    for (_, _, v) in items {
        let at = fmt_time(v["at"].as_i64().unwrap_or(0));
        let acct = v["account"].as_str().unwrap_or("");
        if v["kind"] == "poll" {
            let status = v["status"]
                .as_i64()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into());
            let mut line = format!(
                "{at}  poll   {acct}/{} status={status} {}ms",
                v["endpoint"].as_str().unwrap_or(""),
                v["duration_ms"]
            );
            if let Some(n) = v["items"].as_i64() {
                line.push_str(&format!(" items={n}"));
            }
            if let Some(c) = v["changed"].as_bool() {
                line.push_str(&format!(" changed={c}"));
            }
            if let Some(e) = v["error"].as_str() {
                line.push_str(&format!(" error: {e}"));
            }
            println!("{line}");
        } else {
            println!(
                "{at}  event  {acct} {}: {}",
                v["event"].as_str().unwrap_or(""),
                v["detail"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

/// Unix seconds as RFC 3339 UTC (civil-from-days, Howard Hinnant's algorithm).
pub fn fmt_time(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times() {
        assert_eq!(super::fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::fmt_time(1616778780), "2021-03-26T17:13:00Z");
    }
}
