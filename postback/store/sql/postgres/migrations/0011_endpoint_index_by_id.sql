-- SQLite only (see its 0011): on PostgreSQL a change of state is a new row version with new
-- entries in every index anyway (no HOT update: state is in the partial indexes), so keeping
-- deliveries_by_endpoint (endpoint_id, state) costs no extra page per change there. Kept as a
-- file so both dialects count the same versions.
SELECT 1;
