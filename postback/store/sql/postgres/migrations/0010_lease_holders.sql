-- Who holds each lease (a dispatcher's holder id), so that an endpoint's in-flight share can
-- be split among the processes sending to it (core/fanout.py, fleet_room). Before, the store
-- only counted leases: a sole holder's reserve, leased ahead of its share, counted against the
-- share and kept every other process away from the endpoint, so a second process or worker
-- never added throughput on one endpoint. The in-flight index gains the holder so the claim
-- counts holders from the index alone.
ALTER TABLE deliveries ADD COLUMN lease_holder TEXT;
DROP INDEX deliveries_endpoint_in_flight;
CREATE INDEX deliveries_endpoint_in_flight ON deliveries(endpoint_id, lease_holder)
    WHERE state = 'delivering';
