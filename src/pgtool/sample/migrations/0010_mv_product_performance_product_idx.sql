-- REFRESH MATERIALIZED VIEW CONCURRENTLY needs a unique index on plain columns.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS mv_product_performance_product_idx
    ON mv_product_performance (product_id);
