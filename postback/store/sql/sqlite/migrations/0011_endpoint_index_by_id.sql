-- deliveries_by_endpoint (endpoint_id, state) moved an entry at every change of state: lease,
-- settle, retry. With a thousand customers each entry sits on another page of the index, so
-- every delivery dirtied several pages the commit then wrote to the WAL: dropping it made the
-- many-customers bench ~10 % faster (docs/deployment.md, session 16). The live states have
-- partial indexes of their own (deliveries_endpoint_due, _in_flight, deliveries_dead); what
-- lists an endpoint's deliveries walks this one, whose entry never moves.
DROP INDEX deliveries_by_endpoint;
CREATE INDEX deliveries_by_endpoint ON deliveries(endpoint_id, id);
