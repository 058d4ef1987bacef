-- oauth-poller store, version 1. Times are Unix seconds.
CREATE TABLE tokens (
    account            TEXT PRIMARY KEY,
    access_token       TEXT,
    token_type         TEXT,
    refresh_token      TEXT,
    scope              TEXT,
    access_expires_at  INTEGER,
    refresh_expires_at INTEGER,
    obtained_at        INTEGER NOT NULL,
    obtained_by        TEXT NOT NULL CHECK (obtained_by IN
                           ('seed', 'refresh_token', 'password', 'client_credentials', 'authorization_code')),
    generation         INTEGER NOT NULL DEFAULT 1,
    state              TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'needs_reauth')),
    -- why the account needs re-authorization, and the command that fixes it (never a secret)
    state_detail       TEXT,
    last_refresh_at    INTEGER,
    refresh_warned_at  INTEGER
);

CREATE TABLE token_events (
    id      INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    at      INTEGER NOT NULL,
    event   TEXT NOT NULL CHECK (event IN
                ('seeded', 'refreshed', 'refresh_failed', 'obtained', 'needs_reauth', 'rejected')),
    detail  TEXT
);
CREATE INDEX token_events_by_time ON token_events (at);

CREATE TABLE polls (
    id          INTEGER PRIMARY KEY,
    account     TEXT NOT NULL,
    endpoint    TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status      INTEGER,
    bytes       INTEGER,
    items       INTEGER,
    changed     INTEGER,
    error       TEXT,
    body        BLOB,
    -- SHA-256 of the body, for change detection across restarts when bodies are not stored
    body_hash   TEXT
);
CREATE INDEX polls_by_endpoint ON polls (account, endpoint, id);
CREATE INDEX polls_by_time ON polls (started_at);
