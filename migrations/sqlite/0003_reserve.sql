-- oauth-poller store, version 3: room kept in reserve for token commits.
-- One row holding a zero-filled blob. A refresh frees it inside its own transaction before
-- asking the provider, so that committing the provider's answer never needs a page the
-- database cannot get (on a full disk SQLite would roll the whole transaction back and the
-- rotated refresh token would be lost). The commit puts back what room is left.
CREATE TABLE reserve (
    id     INTEGER PRIMARY KEY,
    filler BLOB NOT NULL
);
