-- Delivery rows of endpoints that no longer exist. An attempt recorded
-- after its endpoint was deleted used to write its delivery row again;
-- nothing would send such a row, and its message could never be pruned.
-- Attempts at a deleted endpoint now write nothing; this removes the rows
-- left before.
DELETE FROM webhook_deliveries
WHERE NOT EXISTS (
    SELECT 1 FROM webhook_endpoints e
    WHERE e.agent_id = webhook_deliveries.agent_id AND e.id = webhook_deliveries.endpoint_id
);
