-- oauth-poller store on PostgreSQL, version 3: token requests in flight.
-- A row is committed before a token request is sent and removed once its answer is committed
-- (or the request ended without one). The account's refresh gate is a session lock, which a
-- restart or failover of the server releases while the request may still be answered: an
-- instance that then takes the account over finds this row, and waits for the requester's
-- answer instead of presenting a refresh token the provider may already have spent.
CREATE TABLE refresh_requests (
    account    TEXT PRIMARY KEY,
    -- The token generation the request started from.
    generation BIGINT NOT NULL,
    -- The instance that sent it (`instances.id`), or `command:PID` for a command run once.
    requester  TEXT NOT NULL,
    sent_at    TIMESTAMPTZ NOT NULL
);
