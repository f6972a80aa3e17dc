-- Extensions are shared database-level objects owned by the deploy tool:
-- they are left in place.
DROP TABLE IF EXISTS events;
