-- Events: exercises PostGIS (location), pgvector (embedding), pg_trgm (title
-- search) and pgcrypto (gen_random_uuid). The deploy tool creates these
-- extensions as superuser before migrating; IF NOT EXISTS makes the lines
-- below no-ops then, and lets the file also run on a database where the
-- migrating role may create them itself.
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE IF NOT EXISTS events (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title       text NOT NULL,
    description text NOT NULL DEFAULT '',
    starts_at   timestamptz NOT NULL,
    location    geometry(Point, 4326),
    embedding   vector(8),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS events_location_gist ON events USING gist (location);
CREATE INDEX IF NOT EXISTS events_title_trgm ON events USING gin (title gin_trgm_ops);
CREATE INDEX IF NOT EXISTS events_starts_at ON events (starts_at);
