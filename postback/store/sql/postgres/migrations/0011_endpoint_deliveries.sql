-- SQLite only (see its 0011): PostgreSQL keeps deliveries_by_endpoint. A change of state there
-- is a new row version with new entries in every index anyway, and the fleet's many writers
-- would need a catch-up that is safe across concurrent commits (a sequence is not commit
-- order). Kept as a file so both dialects count the same versions.
SELECT 1;
