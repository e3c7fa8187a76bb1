-- The due index holds pending deliveries only: a delivery that is done
-- leaves it, instead of moving to another part of it, and the index stays
-- as small as the queue.
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE state = 0;
