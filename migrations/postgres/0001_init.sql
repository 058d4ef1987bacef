-- oauth-poller store on PostgreSQL, version 1: the SQLite store's tables (migrations/sqlite/,
-- versions 1 to 5) with PostgreSQL's types, and the refresh journal as a table. Times are Unix
-- seconds.
CREATE TABLE tokens (
    account            TEXT PRIMARY KEY,
    access_token       TEXT,
    token_type         TEXT,
    refresh_token      TEXT,
    scope              TEXT,
    access_expires_at  BIGINT,
    refresh_expires_at BIGINT,
    obtained_at        BIGINT NOT NULL,
    obtained_by        TEXT NOT NULL CHECK (obtained_by IN
                           ('seed', 'refresh_token', 'password', 'client_credentials', 'authorization_code')),
    generation         BIGINT NOT NULL DEFAULT 1,
    state              TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'needs_reauth')),
    -- why the account needs re-authorization, and the command that fixes it (never a secret)
    state_detail       TEXT,
    last_refresh_at    BIGINT,
    refresh_warned_at  BIGINT
);

CREATE TABLE token_events (
    id      BIGSERIAL PRIMARY KEY,
    account TEXT NOT NULL,
    at      BIGINT NOT NULL,
    event   TEXT NOT NULL CHECK (event IN
                ('seeded', 'refreshed', 'refresh_failed', 'obtained', 'needs_reauth', 'rejected')),
    detail  TEXT
);
CREATE INDEX token_events_by_time ON token_events (at);

CREATE TABLE polls (
    id          BIGSERIAL PRIMARY KEY,
    account     TEXT NOT NULL,
    endpoint    TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    status      BIGINT,
    bytes       BIGINT,
    items       BIGINT,
    changed     BOOLEAN,
    error       TEXT,
    body        BYTEA,
    -- SHA-256 of the body, for change detection across restarts when bodies are not stored
    body_hash   TEXT,
    -- pages fetched in full; partial: stopped at max_pages with more announced
    pages       BIGINT,
    partial     BOOLEAN
);
CREATE INDEX polls_by_endpoint ON polls (account, endpoint, id);
CREATE INDEX polls_by_time ON polls (started_at);

-- Pending `authorize` requests: state and PKCE verifier, deleted when used, expired after an hour.
CREATE TABLE authorizations (
    account       TEXT NOT NULL,
    state         TEXT NOT NULL PRIMARY KEY,
    code_verifier TEXT,
    redirect_uri  TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX authorizations_by_account ON authorizations (account, created_at);

-- The encryption key's check value: one row once the store is encrypted.
CREATE TABLE store_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    check_value TEXT NOT NULL
);

-- The refresh journal: a provider's answer, sealed like the tokens, written the moment it
-- arrives and deleted once committed (the SQLite store keeps it in a file beside the database).
CREATE TABLE refresh_journal (
    account    TEXT PRIMARY KEY,
    generation BIGINT NOT NULL,
    started    BIGINT NOT NULL,
    grant_kind TEXT NOT NULL,
    body       TEXT NOT NULL
);
