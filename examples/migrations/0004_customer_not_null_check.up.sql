SET lock_timeout = '2s';
-- NOT VALID: only new rows are checked now; the scan comes later under a weaker lock.
ALTER TABLE orders ADD CONSTRAINT orders_customer_id_not_null CHECK (customer_id IS NOT NULL) NOT VALID;
ALTER TABLE orders ADD CONSTRAINT orders_total_non_negative CHECK (total >= 0) NOT VALID;
