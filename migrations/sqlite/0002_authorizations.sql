-- oauth-poller store, version 2: pending authorization requests of `authorize`.
-- Between `authorize ACCOUNT` (prints the URL) and `authorize ACCOUNT --code CODE` (a later
-- process) the state and the PKCE verifier must survive. Entries are deleted when used and
-- expire after an hour.
CREATE TABLE authorizations (
    account       TEXT NOT NULL,
    state         TEXT NOT NULL PRIMARY KEY,
    code_verifier TEXT,
    redirect_uri  TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX authorizations_by_account ON authorizations (account, created_at);
