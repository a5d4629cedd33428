-- Start-up must not take longer as the index grows: the backfill looks for named rows without a
-- name key (stored before keys existed, or by another program) through this partial index,
-- which is empty otherwise, instead of reading every row. Rows without an origin are found
-- through `peers_origin`, whose first column is `subnet`.
CREATE INDEX peers_unkeyed_names ON peers (uuid) WHERE name IS NOT NULL AND name_key IS NULL;
