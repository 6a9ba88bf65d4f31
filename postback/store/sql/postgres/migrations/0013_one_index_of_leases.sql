-- One index of the deliveries in flight, not two. deliveries_leased indexed the same rows as
-- deliveries_endpoint_in_flight (those in state 'delivering'), by lease_until, for the sweep of
-- expired leases alone: each process runs it every few seconds, and it reads at most what the
-- fleet has in flight, which the in-flight index finds as well. The second index cost an entry
-- written at every lease and removed at every settle; on PostgreSQL it also made every lease
-- renewal (lease_until changes) a new entry in every index, where without it a renewal can be
-- a heap-only (HOT) update.
DROP INDEX deliveries_leased;
