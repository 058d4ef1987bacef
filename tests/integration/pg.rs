//! A real PostgreSQL for the tests: Debian's server binaries, a cluster made with `initdb` in
//! a temporary directory, started, restarted and killed by the test itself, and removed with
//! it. Nothing depends on a system cluster (`.ci/run` installs the package without one).
//!
//! The daemon's role reaches it over TCP on 127.0.0.1 with a password (SCRAM), and with TLS
//! against a throwaway CA when started with [`PgServer::start_tls`]; the tests inspect it as
//! the superuser over the unix socket ([`PgServer::psql`]). The server keeps PostgreSQL's
//! durability defaults (fsync, synchronous_commit, full_page_writes): the tests kill it.
//! The benchmark (benches/daemon.rs) includes this file and util.rs for its PostgreSQL.

#![allow(dead_code)]

use crate::util::*;
use rand::distr::{Alphanumeric, SampleString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The daemon's role, and the database it owns.
pub const USER: &str = "oauth_poller";
pub const DATABASE: &str = "oauth_poller";
/// The cluster's superuser (initdb's bootstrap role), used by [`PgServer::psql`].
const SUPERUSER: &str = "postgres";
/// The system user Debian's package creates; the server runs as it when the tests run as root.
const SYSTEM_USER: &str = "postgres";

/// Where Debian installs each major version's server binaries (not on PATH).
const DEBIAN_LIB: &str = "/usr/lib/postgresql";
const PROGRAMS: [&str; 4] = ["initdb", "pg_ctl", "postgres", "psql"];

/// The newest `/usr/lib/postgresql/<N>/bin` holding every program the harness runs, or else
/// the directory on PATH that holds `initdb` (other systems put the server there).
pub fn bindir() -> Option<PathBuf> {
    let complete = |dir: &Path| PROGRAMS.iter().all(|p| dir.join(p).is_file());
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_LIB)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .or_else(|| std::env::split_paths(&std::env::var_os("PATH")?).find(|dir| complete(dir)))
}

/// Who runs initdb and the server: PostgreSQL refuses root, so as root the package's
/// system user, else the current user.
#[derive(Debug, Clone, Copy)]
enum RunAs {
    CurrentUser,
    System { uid: u32, gid: u32 },
}

impl RunAs {
    fn detect() -> Result<RunAs, String> {
        if !rustix::process::geteuid().is_root() {
            return Ok(RunAs::CurrentUser);
        }
        let id = |flag: &str| {
            Command::new("id")
                .args([flag, SYSTEM_USER])
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        };
        let (Some(uid), Some(gid)) = (id("-u"), id("-g")) else {
            return Err(format!(
                "the tests run as root, which PostgreSQL refuses, and there is no `{SYSTEM_USER}` \
                 user to run it as (apt-get install postgresql creates it)"
            ));
        };
        let setpriv = Command::new("setpriv")
            .arg("--version")
            .stdout(Stdio::null())
            .status();
        if !setpriv.is_ok_and(|s| s.success()) {
            return Err("no setpriv (util-linux) to run PostgreSQL as its own user".into());
        }
        Ok(RunAs::System { uid, gid })
    }

    /// `program` run as this user.
    fn command(self, program: &Path) -> Command {
        match self {
            RunAs::CurrentUser => Command::new(program),
            RunAs::System { uid, gid } => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                cmd
            }
        }
    }

    /// Hands a file the harness created to the server's user.
    fn own(self, path: &Path) {
        if let RunAs::System { uid, gid } = self {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }
}

/// Why this machine cannot start a [`PgServer`], for [`Need::Postgres`].
pub fn missing() -> Option<String> {
    if bindir().is_none() {
        return Some(format!(
            "no PostgreSQL server ({}) in {DEBIAN_LIB}/<version>/bin or on PATH \
             (apt-get install postgresql)",
            PROGRAMS.join(", ")
        ));
    }
    RunAs::detect().err()
}

/// Plain TCP, or TLS required on TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Plain,
    Tls,
}

/// A running (or stopped) PostgreSQL cluster of the test's own; see the module's comment.
/// Dropping it stops the server and removes its files.
pub struct PgServer {
    bin: PathBuf,
    run_as: RunAs,
    port: u16,
    password: String,
    /// The CA that signed the server's certificate (TLS only).
    ca: Option<PathBuf>,
    running: bool,
    /// Last: removed after `Drop::drop` has stopped the server.
    dir: tempfile::TempDir,
}

impl PgServer {
    /// A new cluster reached over plain TCP (with a password). Callers check
    /// `require(Need::Postgres)` first.
    pub fn start() -> PgServer {
        PgServer::start_with(Transport::Plain)
    }

    /// A new cluster that accepts TCP connections only over TLS, with a certificate for
    /// `localhost` and 127.0.0.1 signed by a CA of its own ([`PgServer::ca_file`]).
    pub fn start_tls() -> PgServer {
        PgServer::start_with(Transport::Tls)
    }

    fn start_with(transport: Transport) -> PgServer {
        let bin = bindir().expect("PostgreSQL's binaries (check require(Need::Postgres) first)");
        let run_as = RunAs::detect().unwrap_or_else(|why| panic!("{why}"));
        let dir = tempdir();
        // The server's user owns the directory; others may only pass through it to the CA
        // file. The data and the socket sit in subdirectories only that user can enter.
        run_as.own(dir.path());
        chmod(dir.path(), 0o711);
        let socket = dir.path().join("socket");
        std::fs::create_dir(&socket).unwrap();
        chmod(&socket, 0o700);
        run_as.own(&socket);

        let mut server = PgServer {
            bin,
            run_as,
            port: 0,
            password: Alphanumeric.sample_string(&mut rand::rng(), 32),
            ca: None,
            running: false,
            dir,
        };
        server.initdb();
        if transport == Transport::Tls {
            server.ca = Some(server.write_certificates());
        }
        server.write_hba(transport);
        // Another test may take the port between free_port and the server's bind: then
        // another port.
        for attempt in 1.. {
            server.port = free_port();
            server.write_settings();
            match server.pg_ctl_start() {
                Ok(()) => break,
                Err(log) if attempt < 5 && log.contains("could not bind") => continue,
                Err(log) => panic!("PostgreSQL did not start:\n{log}"),
            }
        }
        server.running = true;
        server.psql_in(
            "postgres",
            &format!(
                "CREATE ROLE {USER} LOGIN PASSWORD '{}';\n\
                 CREATE DATABASE {DATABASE} OWNER {USER};",
                server.password
            ),
        );
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// A server program run as the server's user, from the temporary directory (the test's
    /// working directory may be closed to that user).
    fn program(&self, name: &str) -> Command {
        let mut cmd = self.run_as.command(&self.bin.join(name));
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        cmd
    }

    fn initdb(&self) {
        let out = self
            .program("initdb")
            .arg("--pgdata")
            .arg(self.data())
            .args(["--username", SUPERUSER, "--encoding=UTF8", "--no-locale"])
            .arg("--no-instructions")
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed:\n{}", text(&out));
    }

    /// `include`d from postgresql.conf, rewritten when the port changes.
    fn write_settings(&self) {
        let conf = self.data().join("oauth-poller-test.conf");
        let mut settings = format!(
            "listen_addresses = '127.0.0.1'\n\
             port = {}\n\
             unix_socket_directories = '{}'\n\
             password_encryption = 'scram-sha-256'\n\
             # Small: clusters of several tests run side by side on a small machine.\n\
             shared_buffers = '16MB'\n",
            self.port,
            self.socket().display()
        );
        if let Some(ca) = &self.ca {
            let dir = ca.parent().unwrap();
            settings.push_str(&format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                dir.join("server.pem").display(),
                dir.join("server.key").display()
            ));
        }
        std::fs::write(&conf, settings).unwrap();
        self.run_as.own(&conf);
        let main = self.data().join("postgresql.conf");
        let text = std::fs::read_to_string(&main).unwrap();
        let include = "include = 'oauth-poller-test.conf'\n";
        if !text.contains(include) {
            std::fs::write(&main, text + include).unwrap();
        }
    }

    /// The superuser over the socket without a password (only the server's user and root
    /// can enter the socket's directory); everyone else over TCP with a password, and with
    /// TLS when the server has it.
    fn write_hba(&self, transport: Transport) {
        let tcp = match transport {
            Transport::Plain => "host",
            Transport::Tls => "hostssl",
        };
        let hba = format!(
            "local all {SUPERUSER} trust\n\
             {tcp} all all 127.0.0.1/32 scram-sha-256\n"
        );
        std::fs::write(self.data().join("pg_hba.conf"), hba).unwrap();
    }

    /// A CA of this server's own and a certificate for `localhost` and 127.0.0.1 signed by
    /// it; returns the CA's file.
    fn write_certificates(&self) -> PathBuf {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // A name of its own: two servers' CAs are two issuers, not one name with two keys.
        ca_params.distinguished_name.push(
            DnType::CommonName,
            format!("oauth-poller test CA {}", self.dir.path().display()),
        );
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer).unwrap();

        let ca = self.dir.path().join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        chmod(&ca, 0o644);
        let server_pem = self.dir.path().join("server.pem");
        std::fs::write(&server_pem, cert.pem()).unwrap();
        self.run_as.own(&server_pem);
        // PostgreSQL refuses a key others can read.
        let server_key = self.dir.path().join("server.key");
        write_file(&server_key, &key.serialize_pem());
        self.run_as.own(&server_key);
        ca
    }

    /// `pg_ctl start`, waiting until the server accepts connections; the server's log when
    /// it does not.
    fn pg_ctl_start(&self) -> Result<(), String> {
        let out = self
            .program("pg_ctl")
            .arg("--pgdata")
            .arg(self.data())
            .arg("--log")
            .arg(self.log_file())
            .args(["--wait", "--timeout=60", "--silent", "start"])
            .output()
            .expect("run pg_ctl");
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "pg_ctl: {}\nserver log:\n{}",
            text(&out),
            std::fs::read_to_string(self.log_file()).unwrap_or_default()
        ))
    }

    fn pg_ctl_stop(&mut self, mode: &str) {
        let out = self
            .program("pg_ctl")
            .arg("--pgdata")
            .arg(self.data())
            .args(["--wait", "--timeout=60", "--silent", "--mode", mode, "stop"])
            .output()
            .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl stop --mode {mode}: {}\nserver log:\n{}",
            text(&out),
            self.log()
        );
        self.running = false;
    }

    /// A clean shutdown (`fast`: sessions are ended, then a checkpoint).
    pub fn stop(&mut self) {
        self.pg_ctl_stop("fast");
    }

    /// A crash: `immediate` mode, every server process quits at once without a checkpoint,
    /// so the next start recovers from the write-ahead log.
    pub fn kill(&mut self) {
        self.pg_ctl_stop("immediate");
    }

    /// Starts the stopped (or killed) server again: same port, same data.
    pub fn start_again(&mut self) {
        assert!(!self.running, "PostgreSQL is already running");
        if let Err(log) = self.pg_ctl_start() {
            panic!(
                "PostgreSQL did not start again on port {}:\n{log}",
                self.port
            );
        }
        self.running = true;
    }

    /// The postmaster's process id, from `postmaster.pid` (None while stopped): the
    /// benchmark sums the CPU of the cluster's processes from it.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://oauth_poller@127.0.0.1:PORT/oauth_poller`: the daemon's role and database,
    /// without the password ([`PgServer::password`]).
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// [`PgServer::url`] with the password inline, for tests that need it there.
    pub fn url_with_password(&self) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{DATABASE}",
            self.password, self.port
        )
    }

    /// The daemon role's password (random, alphanumeric).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The PEM of the CA that signed the server's certificate, to point a client at
    /// (`SSL_CERT_FILE`, `PGSSLROOTCERT`). Only for [`PgServer::start_tls`].
    pub fn ca_file(&self) -> &Path {
        self.ca
            .as_deref()
            .expect("ca_file: start the server with start_tls")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// Runs `sql` as the superuser in the daemon's database over the socket; its output,
    /// unaligned and without headers (one row a line, columns separated by `|`). Panics when
    /// a statement fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(DATABASE, sql)
    }

    /// [`PgServer::psql`] in another database of the cluster.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        let out = self.try_psql_in(database, sql);
        assert!(
            out.status.success(),
            "psql failed on {sql:?}:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// `psql` over the socket, the SQL on standard input (not on a command line).
    fn try_psql_in(&self, database: &str, sql: &str) -> Output {
        let mut child = Command::new(self.bin.join("psql"))
            .args(["--no-psqlrc", "--quiet", "--no-align", "--tuples-only"])
            .args(["--set", "ON_ERROR_STOP=1"])
            .arg("--host")
            .arg(self.socket())
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--username", SUPERUSER, "--dbname", database, "--file", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run psql");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        child.wait_with_output().expect("psql")
    }
}

impl Drop for PgServer {
    /// Stops the server before the temporary directory goes: nothing may still write there.
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let _ = self
                .program("pg_ctl")
                .arg("--pgdata")
                .arg(self.data())
                .args(["--wait", "--silent", "--mode", "immediate", "stop"])
                .output();
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `psql` as a client over TCP: `SELECT current_user` with `url` and the `env` (PGPASSWORD,
/// PGSSL*). HOME is the server's directory: nothing of the user's own (~/.postgresql's
/// certificates, ~/.pgpass) takes part.
fn client(pg: &PgServer, url: &str, env: &[(&str, &OsStrRef)]) -> Output {
    let mut cmd = Command::new(pg.bin.join("psql"));
    cmd.args(["--no-psqlrc", "--no-align", "--tuples-only", "--command"])
        .arg("SELECT current_user")
        .arg(url)
        .env("HOME", pg.dir.path())
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run psql")
}

type OsStrRef = std::ffi::OsStr;

/// A TLS handshake as the daemon's own client (rustls, webpki) makes one, trusting only `ca`:
/// PostgreSQL's SSLRequest, then TLS for the name `host`. Err with rustls's reason.
fn rustls_handshake(port: u16, host: &str, ca: &Path) -> Result<(), String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    use std::io::Read;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).expect("the CA's PEM"))
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).unwrap();
    let mut tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // SSLRequest: length 8, then the code 1234 5679; a server that speaks TLS answers 'S'.
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .unwrap();
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"S", "the server does not offer TLS");
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[test]
fn a_real_postgres_starts_restarts_and_verifies_tls() {
    if !require(Need::Postgres) {
        return;
    }
    let started = std::time::Instant::now();
    let mut pg = PgServer::start();
    pg.psql("CREATE TABLE kept (n integer); INSERT INTO kept VALUES (42);");

    // A clean restart on the same port, then a crash: the committed row survives both.
    pg.stop();
    let refused = pg.try_psql_in(DATABASE, "SELECT 1");
    assert!(!refused.status.success(), "stopped, yet psql got through");
    pg.start_again();
    assert_eq!(pg.psql("SELECT n FROM kept"), "42");
    pg.psql("INSERT INTO kept VALUES (43);");
    pg.kill();
    pg.start_again();
    assert_eq!(pg.psql("SELECT n FROM kept ORDER BY n"), "42\n43");

    // The daemon's role over TCP: its password works, another is refused, none is refused.
    let right = client(&pg, &pg.url(), &[("PGPASSWORD", pg.password().as_ref())]);
    assert!(right.status.success(), "{}", text(&right));
    assert_eq!(String::from_utf8_lossy(&right.stdout).trim(), USER);
    let wrong = client(
        &pg,
        &pg.url(),
        &[("PGPASSWORD", "not-the-password".as_ref())],
    );
    assert!(!wrong.status.success(), "a wrong password was accepted");
    assert!(
        text(&wrong).contains("password authentication failed"),
        "{}",
        text(&wrong)
    );
    drop(pg);

    // TLS: verify-full against the server's CA connects (to the name and to the address);
    // a client trusting another CA refuses the server; plain TCP is refused by the server.
    let pg = PgServer::start_tls();
    let password: &OsStrRef = pg.password().as_ref();
    for host in ["localhost", "127.0.0.1"] {
        let url = format!(
            "postgres://{USER}@{host}:{}/{DATABASE}?sslmode=verify-full",
            pg.port()
        );
        let trusted = client(
            &pg,
            &url,
            &[
                ("PGPASSWORD", password),
                ("PGSSLROOTCERT", pg.ca_file().as_ref()),
            ],
        );
        assert!(
            trusted.status.success(),
            "{host}: {}\n{}",
            text(&trusted),
            pg.log()
        );
    }
    // The same with the daemon's TLS stack, which is stricter than libpq's.
    for host in ["localhost", "127.0.0.1"] {
        if let Err(e) = rustls_handshake(pg.port(), host, pg.ca_file()) {
            panic!("rustls refused the server as {host}: {e}");
        }
    }
    let other = PgServer::start_tls();
    let refused = rustls_handshake(pg.port(), "localhost", other.ca_file())
        .expect_err("rustls trusted a server signed by an unknown CA");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    let untrusted = client(
        &pg,
        &format!("{}?sslmode=verify-full", pg.url()),
        &[
            ("PGPASSWORD", password),
            ("PGSSLROOTCERT", other.ca_file().as_ref()),
        ],
    );
    assert!(
        !untrusted.status.success(),
        "a server signed by an unknown CA was trusted"
    );
    assert!(
        text(&untrusted).contains("certificate verify failed"),
        "{}",
        text(&untrusted)
    );
    let plain = client(
        &pg,
        &format!("{}?sslmode=disable", pg.url()),
        &[("PGPASSWORD", password)],
    );
    assert!(!plain.status.success(), "plain TCP was accepted");
    assert!(text(&plain).contains("no encryption"), "{}", text(&plain));
    eprintln!("pg harness: {:?}", started.elapsed());
}
