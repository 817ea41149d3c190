-- finxd: compatible_from 7
--
-- Indexes for GET /v1/connections and GET /v1/links: pages newest first,
-- ordered by (created_at DESC, id DESC), each page seeking its cursor in
-- the index, across everyone or of one user.  Indexes only: binaries of
-- schema 7 and 8 read and write these tables as before and run beside this
-- schema (rolling deploy); their user lookups use the wider user
-- indexes that replace the old ones.  The builds run inside migrate's
-- transaction (no CONCURRENTLY): writes to links and connections wait
-- for them, milliseconds for tens of thousands of rows.

CREATE INDEX connections_list_idx ON connections (created_at, id);
CREATE INDEX connections_user_list_idx
	ON connections (user_id, created_at, id);
DROP INDEX connections_user_idx;
CREATE INDEX links_list_idx ON links (created_at, id);
CREATE INDEX links_user_list_idx ON links (user_id, created_at, id);
DROP INDEX links_user_idx;
