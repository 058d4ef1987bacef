//! The `oauth-poller-sim` command and the configuration that matches a simulator.

use super::{FaultSpec, Profile, SimOptions, Simulator};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `oauth-poller-sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Which provider to imitate.
    #[arg(long, value_enum, default_value = "inode")]
    pub profile: Profile,
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Access-token lifetime in seconds (0: never expires). Default: the profile's.
    #[arg(long, value_name = "SECS")]
    pub access_ttl: Option<u64>,
    /// Refresh-token lifetime in seconds (0: never expires). Default: the profile's.
    #[arg(long, value_name = "SECS")]
    pub refresh_ttl: Option<u64>,
    /// Keep the refresh token on refresh instead of rotating it.
    #[arg(long, conflicts_with = "rotate")]
    pub no_rotate: bool,
    /// Rotate refresh tokens even if the profile does not by default.
    #[arg(long)]
    pub rotate: bool,
    /// When not rotating, leave `refresh_token` out of refresh responses.
    #[arg(long)]
    pub omit_refresh_token: bool,
    /// Also accept grant_type=client_credentials.
    #[arg(long)]
    pub client_credentials: bool,
    /// Items per list endpoint.
    #[arg(long, default_value_t = 3)]
    pub items: usize,
    /// Items per page of a paginated list (iNode without `no_pagination`, SciNote, `--link-pages`).
    #[arg(long, default_value_t = 10)]
    pub page_size: usize,
    /// Citesphere's and the bare-token site's lists page with an RFC 8288 `Link` header.
    #[arg(long)]
    pub link_pages: bool,
    /// Change the list contents every SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub change_every: Option<u64>,
    /// A fault active from the start, TARGET:KIND[,key=value...], e.g. `token:503,count=3`,
    /// `api:429,retry_after=5`, `api:hang`, `token:reset,process`, `api:trickle,trickle_ms=200`.
    /// Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub fault: Vec<FaultSpec>,
    /// Also write the seed (the initial token response) to this file.
    #[arg(long, value_name = "PATH")]
    pub seed_out: Option<PathBuf>,
    /// Also write the configuration to this file.
    #[arg(long, value_name = "PATH")]
    pub config_out: Option<PathBuf>,
    /// The database path to put in the printed configuration.
    #[arg(long, value_name = "PATH", default_value = "./oauth-poller-sim.db")]
    pub config_database: String,
}

impl SimulateArgs {
    /// The simulator options these arguments describe.
    pub fn options(&self) -> SimOptions {
        let mut o = SimOptions::new(self.profile);
        if let Some(s) = self.access_ttl {
            o.access_ttl = Duration::from_secs(s);
        }
        if let Some(s) = self.refresh_ttl {
            o.refresh_ttl = (s > 0).then(|| Duration::from_secs(s));
        }
        if self.no_rotate {
            o.rotate = false;
        }
        if self.rotate {
            o.rotate = true;
        }
        o.echo_refresh = !self.omit_refresh_token;
        o.allow_client_credentials = self.client_credentials;
        o.items = self.items;
        o.page_size = self.page_size.max(1);
        o.link_pages = self.link_pages;
        o.change_every = self
            .change_every
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        o.faults = self.fault.clone();
        o
    }
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A configuration (TOML text) for the daemon that matches this simulator. `base_url` is the
/// simulator's root, e.g. `http://127.0.0.1:8080` (a trailing slash is fine); the account's
/// `base_url` adds the profile's path. An empty `seed_path` leaves `seed_file` out.
pub fn example_config(
    opts: &SimOptions,
    base_url: &str,
    database: &str,
    seed_path: &str,
) -> String {
    let p = opts.profile;
    let root = base_url.trim_end_matches('/');
    let base = format!("{root}{}", p.base_path());
    let ttl = opts.access_ttl.as_secs();
    let interval = if ttl == 0 { 60 } else { (ttl / 4).clamp(2, 60) };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# oauth-poller configuration for the built-in simulator (profile {p})"
    );
    let _ = writeln!(s, "[daemon]");
    let _ = writeln!(s, "database = {}", toml_str(database));
    let _ = writeln!(s, "interval = \"{interval}s\"");
    let _ = writeln!(s, "timeout = \"10s\"");
    let _ = writeln!(s);
    let _ = writeln!(s, "[[account]]");
    let _ = writeln!(s, "name = {}", toml_str(p.name()));
    let _ = writeln!(s, "base_url = {}", toml_str(&base));
    let _ = writeln!(s, "auth = \"oauth2\"");
    let scheme = if p == Profile::BareToken {
        ""
    } else {
        "Bearer"
    };
    let _ = writeln!(s, "header_scheme = {}", toml_str(scheme));
    if seed_path.is_empty() {
        let _ = writeln!(
            s,
            "# seed_file = \"...\"  # or: oauth-poller seed {} FILE",
            p.name()
        );
    } else {
        let _ = writeln!(s, "seed_file = {}", toml_str(seed_path));
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "[account.oauth2]");
    if let Some(t) = p.token_path() {
        let rel = t.strip_prefix(p.base_path()).unwrap_or(t);
        let _ = writeln!(s, "token_url = {}", toml_str(rel));
    } else {
        let _ = writeln!(s, "# no token endpoint: the token comes in the authorization redirect and never refreshes");
    }
    let _ = writeln!(s, "client_id = {}", toml_str(&opts.client_id));
    if p.has_token_endpoint() {
        let _ = writeln!(s, "client_secret = {}", toml_str(&opts.client_secret));
        let auth = match p {
            Profile::Highq => "basic",
            _ => "body",
        };
        let _ = writeln!(s, "client_auth = \"{auth}\"");
    } else {
        let _ = writeln!(s, "client_auth = \"none\"");
    }
    if p == Profile::Citesphere {
        let _ = writeln!(s, "token_request = \"query\"");
    }
    if !opts.scope.is_empty() {
        let _ = writeln!(s, "scope = {}", toml_str(&opts.scope));
    }
    if p == Profile::Inode {
        let _ = writeln!(s, "grant = \"password\"");
        let _ = writeln!(s, "username = {}", toml_str(&opts.username));
        let _ = writeln!(s, "password = {}", toml_str(&opts.password));
    }
    let authorize = format!("{root}{}", p.authorize_path());
    let _ = writeln!(s, "authorize_url = {}", toml_str(&authorize));
    let redirect = match p {
        Profile::Scinote => "urn:ietf:wg:oauth:2.0:oob",
        _ => opts
            .redirect_uris
            .iter()
            .find(|u| u.starts_with("http"))
            .map(String::as_str)
            .unwrap_or("http://127.0.0.1:8765/callback"),
    };
    let _ = writeln!(s, "redirect_uri = {}", toml_str(redirect));
    if p != Profile::BareToken {
        let _ = writeln!(s, "pkce = true");
    }
    for (name, path, query) in p.endpoints() {
        let _ = writeln!(s);
        let _ = writeln!(s, "[[account.endpoint]]");
        let _ = writeln!(s, "name = {}", toml_str(name));
        let _ = writeln!(s, "path = {}", toml_str(path));
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k} = {}", toml_str(v)))
                .collect();
            let _ = writeln!(s, "query = {{ {} }}", q.join(", "));
        }
    }
    s
}

/// The `oauth-poller-sim` command: runs the simulator, prints the matching configuration and seed to
/// stdout (and writes them to `--config-out`/`--seed-out`), serves until Ctrl-C or SIGTERM.
pub async fn simulate_command(args: SimulateArgs) -> std::io::Result<()> {
    let opts = args.options();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let addr = listener.local_addr()?;
    let sim = Simulator::new(opts.clone());
    let seed = sim.issue_seed();
    // Without --seed-out the configuration names no seed file (it would not exist).
    let seed_path = args
        .seed_out
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let root = format!("http://{addr}");
    let config = example_config(&opts, &root, &args.config_database, &seed_path);
    if let Some(p) = &args.seed_out {
        write_private(p, &format!("{seed}\n"))?;
    }
    if let Some(p) = &args.config_out {
        write_private(p, &config)?;
    }
    println!("# ---- configuration (TOML) ----");
    print!("{config}");
    println!("# ---- seed (JSON token response) ----");
    println!("{seed}");
    eprintln!(
        "simulator ({}) listening on {root}; stats at {root}/_sim/stats; Ctrl-C stops it",
        opts.profile
    );
    tracing::info!(profile = %opts.profile, %addr, "simulator listening");
    sim.serve(listener, shutdown_signal()).await
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(text.as_bytes())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Args;

    /// `oauth-poller-sim --help` explains every option (clap's `[default: ...]` alone does not).
    #[test]
    fn every_argument_has_help_text() {
        let cmd = super::SimulateArgs::augment_args(clap::Command::new("oauth-poller-sim"));
        let missing: Vec<_> = cmd
            .get_arguments()
            .filter(|a| a.get_help().is_none())
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(missing.is_empty(), "without help text: {missing:?}");
    }
}
