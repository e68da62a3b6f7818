-- Restocking looks for the few products running low: a small partial index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS products_low_stock_idx ON products (stock) WHERE stock < 10;
