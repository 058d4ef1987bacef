//! `history`: polls and token events merged, newest first.

use super::fmt_time;
use crate::config::Config;
use crate::error::{Error, InputError};
use crate::store::{Database, Handle, Store};
use serde_json::json;

/// Prints the history; an account neither configured nor in the store is bad input (exit 2),
/// as for every other command that takes an account.
pub fn history(
    db: &Database,
    config: Option<&Config>,
    account: Option<&str>,
    limit: usize,
    as_json: bool,
) -> Result<(), Error> {
    let store = Handle::new(db, config.and_then(|c| c.store_key.as_ref())).open_existing()?;
    if let Some(name) = account {
        check_account(&store, db, config, name)?;
    }
    let mut items: Vec<(i64, i64, serde_json::Value)> = Vec::new();
    for p in store.polls(account, limit)? {
        items.push((p.started_at, p.id, json!({
            "kind": "poll", "at": p.started_at, "account": p.account, "endpoint": p.endpoint,
            "status": p.status, "duration_ms": p.duration_ms, "bytes": p.bytes, "items": p.items,
            "changed": p.changed, "error": p.error, "pages": p.pages, "partial": p.partial,
        })));
    }
    for e in store.events(account, limit)? {
        let detail = event_detail(&e.event, e.detail.as_deref());
        items.push((e.at, e.id, json!({
            "kind": "event", "at": e.at, "account": e.account, "event": e.event, "detail": detail,
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
    if items.is_empty() {
        let whose = account
            .map(|a| format!(" for account `{a}`"))
            .unwrap_or_default();
        println!("no polls or token events{whose} in {db} yet");
        return Ok(());
    }
    for (_, _, v) in items {
        println!("{}", line(&v));
    }
    Ok(())
}

fn check_account(
    store: &Store,
    db: &Database,
    config: Option<&Config>,
    name: &str,
) -> Result<(), Error> {
    let configured = config.is_some_and(|c| c.accounts.iter().any(|a| a.name == name));
    // An account removed from the configuration keeps its history.
    let stored = store.tokens()?.iter().any(|t| t.account == name)
        || !store.polls(Some(name), 1)?.is_empty()
        || !store.events(Some(name), 1)?.is_empty();
    if configured || stored {
        return Ok(());
    }
    let err = match config {
        Some(c) => InputError::new(
            c.path.display().to_string(),
            format!("no account named `{name}` (nor any history of one in {db})"),
        )
        .key("account.name"),
        None => InputError::new(
            db.to_string(),
            format!("no account named `{name}` in this store"),
        ),
    };
    Err(err.into())
}

/// Rows written before the event name was left out of the detail read "seeded: seeded: ...";
/// the name is shown once either way.
fn event_detail(event: &str, detail: Option<&str>) -> Option<String> {
    let detail = detail?;
    let trimmed = detail
        .strip_prefix(event)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(detail);
    Some(trimmed.to_string())
}

fn line(v: &serde_json::Value) -> String {
    let at = fmt_time(v["at"].as_i64().unwrap_or(0));
    let acct = v["account"].as_str().unwrap_or("");
    if v["kind"] != "poll" {
        let event = v["event"].as_str().unwrap_or("");
        return match v["detail"].as_str().filter(|d| !d.is_empty()) {
            Some(d) => format!("{at}  event  {acct} {event}: {d}"),
            None => format!("{at}  event  {acct} {event}"),
        };
    }
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
    // A collection of one page (or a row from before pagination) says nothing of pages.
    if let Some(n) = v["pages"].as_i64().filter(|&n| n > 1) {
        line.push_str(&format!(" pages={n}"));
    }
    if v["partial"].as_bool() == Some(true) {
        line.push_str(" partial (max_pages reached)");
    }
    if let Some(c) = v["changed"].as_bool() {
        line.push_str(&format!(" changed={c}"));
    }
    if let Some(e) = v["error"].as_str() {
        line.push_str(&format!(" error: {e}"));
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_event_name_is_not_repeated_in_its_detail() {
        let d = super::event_detail("seeded", Some("seeded: access token present"));
        assert_eq!(d.as_deref(), Some("access token present"));
        let d = super::event_detail("seeded", Some("access token present"));
        assert_eq!(d.as_deref(), Some("access token present"));
        let d = super::event_detail("refreshed", Some("seeded: x"));
        assert_eq!(d.as_deref(), Some("seeded: x"));
    }
}
