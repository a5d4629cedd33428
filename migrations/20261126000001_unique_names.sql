-- Names are unique, ignoring ASCII case (issue 5). The index checks this among live records in
-- the writer's transaction (clearing the names of expired records first); this index is the
-- backstop that makes two holders of one name impossible whatever writes the database.
--
-- Rows stored before this rule may share a name: the most recently seen holder keeps it (ties
-- go to the greater UUID), the others lose their name.
UPDATE peers SET name = NULL
WHERE name IS NOT NULL AND EXISTS (
    SELECT 1 FROM peers AS newer
    WHERE newer.name = peers.name COLLATE NOCASE
      AND (newer.last_seen > peers.last_seen
           OR (newer.last_seen = peers.last_seen AND newer.uuid > peers.uuid))
);

CREATE UNIQUE INDEX peers_name ON peers (name COLLATE NOCASE);
