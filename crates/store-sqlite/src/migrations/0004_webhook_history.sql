-- Pruning old history finds a message's deliveries by message id.
CREATE INDEX webhook_deliveries_by_message ON webhook_deliveries (message_id);
