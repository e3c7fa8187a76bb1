-- Per-agent rate-limit overrides (policy text such as 100/s,1000/m or off);
-- NULL uses the configured default.
ALTER TABLE agents ADD COLUMN rate_limit_end_user TEXT;
ALTER TABLE agents ADD COLUMN rate_limit_global TEXT;
