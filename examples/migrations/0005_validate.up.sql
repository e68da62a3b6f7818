-- VALIDATE takes SHARE UPDATE EXCLUSIVE: reads and writes go on during the scan.
ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_id_not_null;
ALTER TABLE orders VALIDATE CONSTRAINT orders_total_non_negative;
