-- oauth-poller store on PostgreSQL, version 2: instances and leases, so that several instances
-- share the accounts. Times are the database's clock (one clock for every host).
-- Every running instance heartbeats its row; a row whose `expires_at` passed is a dead instance.
CREATE TABLE instances (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL
);

-- One row per account: which instance polls and refreshes it, until when. `generation` grows
-- by one whenever the lease changes hands: the fencing token a commit is checked against.
CREATE TABLE leases (
    account    TEXT PRIMARY KEY,
    owner      TEXT,
    generation BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL,
    taken_at   TIMESTAMPTZ
);

-- Which instance made each poll (NULL: before leases, or a one-off command).
ALTER TABLE polls ADD COLUMN instance TEXT;
