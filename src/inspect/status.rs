//! `status`: per account the token's state and expiry, per endpoint the last poll, and
//! whether a daemon is running on the store.

use super::{fmt_time, Invocation};
use crate::config::{Account, AuthKind, Config, FallbackGrant};
use crate::error::Error;
use crate::running::{self, Daemon};
use crate::store::TokenState;
use crate::store::{now, Database, Handle};
use crate::units::human;
use serde::Serialize;
use serde_json::json;

/// An account's state as `status` shows it (`state` in `--json`, an interface: the names
/// are fixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum AccountState {
    /// A usable grant is stored (or the account needs none: an API key).
    Ok,
    /// The provider refused the grant: a human must re-authorize.
    NeedsReauth,
    /// Nothing is stored for the account yet.
    NoToken,
}

impl From<TokenState> for AccountState {
    fn from(state: TokenState) -> AccountState {
        match state {
            TokenState::Ok => AccountState::Ok,
            TokenState::NeedsReauth => AccountState::NeedsReauth,
        }
    }
}

/// Prints per-account state; returns false when an account has no usable grant (no token,
/// or it needs re-authorization).
pub fn status(
    db: &Database,
    config: Option<&Config>,
    how: &Invocation,
    as_json: bool,
) -> Result<bool, Error> {
    let handle = Handle::new(db, config.and_then(|c| c.store_key.as_ref()));
    let store = handle.open_existing()?;
    // A store several instances share: who holds which account, who is alive.
    let (instances, leases) = match handle.lease_store() {
        Some(l) => (Some(l.instances()?), l.leases()?),
        None => (None, Vec::new()),
    };
    let daemon = match db.file() {
        Some(file) => running::probe(file),
        None => Daemon::Unknown(
            "a PostgreSQL store is shared by instances on many hosts; only a SQLite store's daemon is probed"
                .into(),
        ),
    };
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
        let is_api_key = account_cfg.is_some_and(|a| a.auth == AuthKind::ApiKey);
        let state = match row {
            Some(r) => AccountState::from(r.state),
            None if is_api_key => AccountState::Ok,
            None => AccountState::NoToken,
        };
        if state != AccountState::Ok {
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
        let access_expires_at = row.and_then(|r| r.access_expires_at);
        out.push(json!({
            "account": name,
            "state": state,
            "detail": row.and_then(|r| r.state_detail.clone()),
            "api_refusing": refusing,
            "access_expires_at": access_expires_at,
            "access_expired": access_expires_at.is_some_and(|e| e <= t),
            "refresh_expires_at": row.and_then(|r| r.refresh_expires_at),
            "has_refresh_token": row.is_some_and(|r| r.refresh_token.is_some()),
            "obtained_at": row.map(|r| r.obtained_at),
            "obtained_by": row.map(|r| r.obtained_by.clone()),
            "last_refresh_at": row.and_then(|r| r.last_refresh_at),
            "generation": row.map(|r| r.generation),
            "owner": leases.iter().find(|l| &l.account == name && l.valid).and_then(|l| l.owner.clone()),
            "hint": hint(state, account_cfg, name, how),
            "endpoints": endpoints,
        }));
    }
    if as_json {
        let doc = json!({
            "database": db.to_string(),
            "daemon": daemon.as_str(),
            "instances": instances.as_ref().map(|list| list.iter().map(|i| json!({
                "id": i.id, "host": i.host, "pid": i.pid, "started_at": i.started_at,
                "heartbeat_at": i.heartbeat_at, "alive": i.alive,
            })).collect::<Vec<_>>()),
            "now": t,
            "accounts": out,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(all_ok);
    }
    println!("database: {db}");
    match &daemon {
        Daemon::Running => println!("daemon:   running"),
        Daemon::NotRunning => println!(
            "daemon:   not running (no `oauth-poller run` holds {})",
            db.file()
                .map(running::lock_path)
                .unwrap_or_default()
                .display()
        ),
        Daemon::Unknown(why) => println!("daemon:   unknown ({why})"),
    }
    if let Some(list) = &instances {
        println!(
            "instances: {} alive",
            list.iter().filter(|i| i.alive).count()
        );
        for i in list {
            println!(
                "  {}  heartbeat {} ({}){}",
                i.id,
                fmt_time(i.heartbeat_at),
                if i.alive { "alive" } else { "gone" },
                match leases
                    .iter()
                    .filter(|l| l.valid && l.owner.as_deref() == Some(&i.id))
                    .count()
                {
                    0 => String::new(),
                    n => format!(", {n} account(s)"),
                }
            );
        }
    }
    for a in &out {
        print_account(a, t, &daemon, how);
        if instances.is_some() {
            match a["owner"].as_str() {
                Some(owner) => println!("  polled by: {owner}"),
                None => println!("  polled by: no live instance holds its lease"),
            }
        }
    }
    Ok(all_ok)
}

/// What to do about an account without a usable token, for its grant.
fn hint(
    state: AccountState,
    account: Option<&Account>,
    name: &str,
    how: &Invocation,
) -> Option<String> {
    if state == AccountState::Ok {
        return None;
    }
    let seed = how.command(&format!("seed {name} FILE"));
    let Some(account) = account else {
        return Some(format!(
            "run `{seed}` (the configuration did not load: other ways in are not known)"
        ));
    };
    let oauth2 = account.oauth2.as_ref()?;
    let fallback = match oauth2.grant {
        FallbackGrant::Password => Some("password"),
        FallbackGrant::ClientCredentials => Some("client_credentials"),
        FallbackGrant::RefreshToken => None,
    };
    if let Some(grant) = fallback {
        return Some(format!(
            "the {grant} grant obtains a token by itself: the daemon does at start, or run `{}` now",
            how.command(&format!("token {name}"))
        ));
    }
    let mut ways = Vec::new();
    if oauth2.authorize_url.is_some() {
        ways.push(format!(
            "`{}` (the provider's consent page)",
            how.command(&format!("authorize {name}"))
        ));
    }
    ways.push(format!("`{seed}`"));
    let mut text = format!("run {}", ways.join(" or "));
    if let (Some(file), AccountState::NoToken) = (&account.seed_file, state) {
        text.push_str(&format!(
            "; the daemon imports seed_file {} when it starts",
            file.display()
        ));
    }
    Some(text)
}

fn print_account(a: &serde_json::Value, t: i64, daemon: &Daemon, how: &Invocation) {
    let i = |k: &str| a[k].as_i64();
    let name = a["account"].as_str().unwrap_or("");
    let state = a["state"].as_str().unwrap_or("");
    // A stored "ok" means the grant is good, not that anything keeps the token fresh.
    let stale = state == "ok" && a["access_expired"] == true && *daemon != Daemon::Running;
    println!(
        "\naccount {name}: {}",
        if stale { "expired" } else { state }
    );
    if let Some(d) = a["detail"].as_str() {
        println!("  {d}");
    }
    if let Some(d) = a["api_refusing"].as_str() {
        println!("  api: {d}");
    }
    if state == "no_token" {
        println!("  no token stored");
    }
    if let Some(h) = a["hint"].as_str() {
        println!("  to fix: {h}");
    }
    if stale {
        println!(
            "  no daemon is running to refresh it: start the daemon, or `{}` refreshes it once",
            how.command(&format!("token {name}"))
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
    let endpoints = a["endpoints"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let width = endpoints
        .iter()
        .map(|e| e["name"].as_str().unwrap_or("").chars().count())
        .max()
        .unwrap_or(0);
    for e in endpoints {
        println!(
            "  endpoint {:<width$}  {}",
            e["name"].as_str().unwrap_or(""),
            endpoint_summary(e, t)
        );
    }
}

fn endpoint_summary(e: &serde_json::Value, t: i64) -> String {
    let Some(at) = e["last_poll_at"].as_i64() else {
        return "not polled yet".into();
    };
    let mut line = format!("last poll {} ago, ", human(t - at));
    match e["status"].as_i64() {
        Some(s) => line.push_str(&format!("status {s}")),
        None => line.push_str("no response"),
    }
    if let Some(n) = e["items"].as_i64() {
        line.push_str(&format!(", {n} items"));
    }
    match e["consecutive_failures"].as_i64().unwrap_or(0) {
        0 => {}
        1 => line.push_str(", 1 failure"),
        n => line.push_str(&format!(", {n} consecutive failures")),
    }
    if let Some(err) = e["error"].as_str() {
        line.push_str(&format!(": {err}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::AccountState;

    /// `state` in `status --json` is read by scripts: the names stay as they were.
    #[test]
    fn account_states_keep_their_json_names() {
        for (state, name) in [
            (AccountState::Ok, "\"ok\""),
            (AccountState::NeedsReauth, "\"needs_reauth\""),
            (AccountState::NoToken, "\"no_token\""),
        ] {
            assert_eq!(serde_json::to_string(&state).unwrap(), name);
        }
    }
}
