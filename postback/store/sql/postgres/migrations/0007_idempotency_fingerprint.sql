-- A fingerprint of the request an idempotency key was first used for (core/idempotency.py),
-- so the key reused with a different request is refused instead of answered with the first
-- message. NULL for keys stored before: those are not compared.
ALTER TABLE idempotency_keys ADD COLUMN fingerprint text;
