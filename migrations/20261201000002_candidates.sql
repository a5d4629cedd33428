-- Where a peer may be reached besides addr (issue 11): the candidates of its last keyed
-- registration, as the JSON array it signed, e.g.
--   [{"kind":"host","addr":"192.0.2.10:4000"},{"kind":"relay","addr":"203.0.113.5:49160"}]
-- NULL when it registered none (keyless records never have any). A registration replaces the
-- list; PUT and heartbeats keep it. The index validates the list before storing it and reads
-- anything else (a row written by another program) as no candidates.
ALTER TABLE peers ADD COLUMN candidates TEXT;
