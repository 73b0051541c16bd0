-- journeyman's queue tables churn: every event inserts and deletes an inbox row, every
-- wait a timer row, every send an outbox row that is then updated. The default
-- autovacuum trigger (20% of the table dead) lets dead rows pile up on a large table
-- and claims (ORDER BY ... LIMIT) then walk over them. Vacuum these by row count.
-- Run after the first migration (psql -f queue-tables.sql), and again after an upgrade
-- whose migration rebuilds one of these tables (0004 rebuilt `timers`).
ALTER TABLE inbox SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000,
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE timers SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 5000,
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE outbox SET (
    autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 5000,
    autovacuum_analyze_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0);
