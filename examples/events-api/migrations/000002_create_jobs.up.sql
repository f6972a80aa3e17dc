-- A minimal job table standing in for Togather's River queue (river_job).
-- The /health job_queue check passes when public.jobs exists.
CREATE TABLE IF NOT EXISTS jobs (
    id         bigserial PRIMARY KEY,
    kind       text NOT NULL,
    payload    jsonb NOT NULL DEFAULT '{}',
    state      text NOT NULL DEFAULT 'available',
    created_at timestamptz DEFAULT now()
);

CREATE INDEX IF NOT EXISTS jobs_state_created_at ON jobs (state, created_at);
