-- oauth-poller store, version 5: the encryption key's check value.
-- One row once the store is encrypted: a constant sealed with the store's key. From then on
-- every secret in the store is sealed and a plaintext one is refused; a wrong key fails on
-- this row before anything is read or written; `rekey` replaces it with the new key's.
CREATE TABLE store_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    check_value TEXT NOT NULL
);
