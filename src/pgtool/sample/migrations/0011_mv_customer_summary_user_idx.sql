-- REFRESH MATERIALIZED VIEW CONCURRENTLY needs a unique index on plain columns.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS mv_customer_summary_user_idx ON mv_customer_summary (user_id);
