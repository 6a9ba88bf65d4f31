-- SQLite's due-mark triggers now skip marks that would not move an endpoint's due time
-- earlier. PostgreSQL keeps writing every mark: its claim settles endpoint_work with a
-- compare-and-set on the version, and a skipped bump could let a concurrent ingest's new
-- pending delivery go unmarked. Nothing changes here; the version keeps both dialects alike.
SELECT 1;
