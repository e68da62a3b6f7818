-- A user's reserved items (and expiring reservations), one range scan.
CREATE INDEX CONCURRENTLY IF NOT EXISTS cart_items_user_reserved_idx ON cart_items (user_id, reserved_until);
