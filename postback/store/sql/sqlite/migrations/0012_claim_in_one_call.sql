-- PostgreSQL only (see its 0012): its claim became one call of a function. SQLite's claim
-- already runs in its writer thread, one job with no round trips between statements. Kept as
-- a file so both dialects count the same versions.
SELECT 1;
