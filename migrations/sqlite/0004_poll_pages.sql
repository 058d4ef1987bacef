-- oauth-poller store, version 4: paginated collections.
-- `pages`: how many pages the poll fetched in full (1 for an endpoint that does not page;
-- NULL on rows written before this version). `partial`: 1 when the poll stopped at the
-- endpoint's `max_pages` with more pages announced, so the stored body is not the whole
-- collection.
ALTER TABLE polls ADD COLUMN pages INTEGER;
ALTER TABLE polls ADD COLUMN partial INTEGER;
