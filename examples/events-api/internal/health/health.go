// Package health implements the checks behind /health and /readyz, with the
// same JSON shape and status rules as the Togather server:
//
//   - any check "fail"  -> "unhealthy" (HTTP 503)
//   - else any "warn"   -> "degraded"  (HTTP 200)
//   - else              -> "healthy"   (HTTP 200)
package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"example.com/events-api/internal/redact"
)

// Check statuses.
const (
	Pass = "pass"
	Warn = "warn"
	Fail = "fail"
)

// Overall statuses.
const (
	Healthy      = "healthy"
	Degraded     = "degraded"
	Unhealthy    = "unhealthy"
	ShuttingDown = "shutting_down"
)

// Names of the checks, as they appear under "checks".
const (
	CheckDatabase       = "database"
	CheckMigrations     = "migrations"
	CheckJobQueue       = "job_queue"
	CheckJSONLDContexts = "jsonld_contexts"
	CheckHTTPEndpoint   = "http_endpoint"
)

// CheckTimeout bounds every database check.
const CheckTimeout = 2 * time.Second

// Check is one entry of the "checks" object. All four keys are always
// present; Details is a JSON object or null.
type Check struct {
	Status    string         `json:"status"`
	Message   string         `json:"message"`
	LatencyMS int64          `json:"latency_ms"`
	Details   map[string]any `json:"details"`
}

// Report is the /health response body.
type Report struct {
	Status    string           `json:"status"`
	Version   string           `json:"version"`
	GitCommit string           `json:"git_commit"`
	Slot      string           `json:"slot"`
	DocsURL   string           `json:"docs_url"`
	Checks    map[string]Check `json:"checks"`
	Timestamp string           `json:"timestamp"`
}

// Overall folds check statuses into healthy, degraded or unhealthy. An
// unknown check status counts as a failure.
func Overall(checks map[string]Check) string {
	overall := Healthy
	for _, c := range checks {
		switch c.Status {
		case Pass:
		case Warn:
			overall = Degraded
		default:
			return Unhealthy
		}
	}
	return overall
}

// HTTPStatus maps an overall status to the HTTP status code of /health.
func HTTPStatus(overall string) int {
	switch overall {
	case Healthy, Degraded:
		return http.StatusOK
	default:
		return http.StatusServiceUnavailable
	}
}

// Checker runs the checks. Pool may be nil (reported as a database failure).
// Unhealthy, when non-nil, forces the http_endpoint check to fail while it
// returns true (the TEST_UNHEALTHY* switches).
type Checker struct {
	Pool        *pgxpool.Pool
	ContextsDir string
	Unhealthy   func() (bool, string)
}

// Run executes all five checks concurrently.
func (c *Checker) Run(ctx context.Context) map[string]Check {
	fns := map[string]func(context.Context) Check{
		CheckDatabase:       c.Database,
		CheckMigrations:     c.Migrations,
		CheckJobQueue:       c.JobQueue,
		CheckJSONLDContexts: func(context.Context) Check { return c.JSONLDContexts() },
		CheckHTTPEndpoint:   func(context.Context) Check { return c.HTTPEndpoint() },
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out = make(map[string]Check, len(fns))
	)
	for name, fn := range fns {
		wg.Go(func() {
			r := fn(ctx)
			mu.Lock()
			out[name] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// Ready reports whether the process should receive traffic: the database
// answers, migrations are applied and clean, and no test switch forces
// unhealthiness. reason is empty when ready.
func (c *Checker) Ready(ctx context.Context) (ready bool, reason string) {
	if h := c.HTTPEndpoint(); h.Status == Fail {
		return false, CheckHTTPEndpoint + ": " + h.Message
	}
	if d := c.Database(ctx); d.Status == Fail {
		return false, CheckDatabase + ": " + d.Message
	}
	if m := c.Migrations(ctx); m.Status == Fail {
		return false, CheckMigrations + ": " + m.Message
	}
	return true, ""
}

// timed runs a database query bounded by CheckTimeout and returns its latency in
// milliseconds; an error of a query that ran out of time is a DeadlineExceeded.
func timed(ctx context.Context, query func(context.Context) error) (latencyMS int64, err error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	err = query(ctx)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return time.Since(start).Milliseconds(), err
}

// Database pings PostgreSQL with a 2 s timeout.
func (c *Checker) Database(ctx context.Context) Check {
	if c.Pool == nil {
		return Check{Status: Fail, Message: "database pool not initialized"}
	}
	lat, err := timed(ctx, c.Pool.Ping)
	if err != nil {
		msg := "database unreachable"
		if errors.Is(err, context.DeadlineExceeded) {
			msg = fmt.Sprintf("database ping timed out after %s", CheckTimeout)
		}
		return Check{Status: Fail, Message: msg, LatencyMS: lat, Details: map[string]any{"error": errText(err)}}
	}
	s := c.Pool.Stat()
	return Check{Status: Pass, Message: "PostgreSQL connection successful", LatencyMS: lat, Details: map[string]any{
		"max_connections":      s.MaxConns(),
		"total_connections":    s.TotalConns(),
		"idle_connections":     s.IdleConns(),
		"acquired_connections": s.AcquiredConns(),
	}}
}

// Migrations reads golang-migrate's schema_migrations table: fail when the
// table is missing, empty or dirty.
func (c *Checker) Migrations(ctx context.Context) Check {
	if c.Pool == nil {
		return Check{Status: Fail, Message: "database pool not initialized"}
	}
	var (
		version int64
		dirty   bool
	)
	lat, err := timed(ctx, func(ctx context.Context) error {
		return c.Pool.QueryRow(ctx, `SELECT version, dirty FROM schema_migrations ORDER BY version DESC LIMIT 1`).Scan(&version, &dirty)
	})
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		return Check{Status: Fail, Message: "schema_migrations table not found: migrations have not been applied", LatencyMS: lat}
	case errors.Is(err, pgx.ErrNoRows):
		return Check{Status: Fail, Message: "schema_migrations is empty: no migration applied", LatencyMS: lat}
	case err != nil:
		return Check{Status: Fail, Message: "cannot read migration state", LatencyMS: lat, Details: map[string]any{"error": errText(err)}}
	case dirty:
		return Check{Status: Fail, Message: fmt.Sprintf("migration %d is dirty: a migration failed part-way, manual repair required", version), LatencyMS: lat,
			Details: map[string]any{"version": version, "dirty": true}}
	}
	return Check{Status: Pass, Message: fmt.Sprintf("migrations applied (version %d)", version), LatencyMS: lat,
		Details: map[string]any{"version": version, "dirty": false}}
}

// JobQueue passes when the jobs table (this app's stand-in for River's
// river_job) exists and warns otherwise.
func (c *Checker) JobQueue(ctx context.Context) Check {
	if c.Pool == nil {
		return Check{Status: Warn, Message: "job queue not initialized: no database pool"}
	}
	var exists bool
	lat, err := timed(ctx, func(ctx context.Context) error {
		return c.Pool.QueryRow(ctx, `SELECT to_regclass('public.jobs') IS NOT NULL`).Scan(&exists)
	})
	switch {
	case err != nil:
		return Check{Status: Warn, Message: "cannot check the job queue table", LatencyMS: lat, Details: map[string]any{"error": errText(err)}}
	case !exists:
		return Check{Status: Warn, Message: "job queue table public.jobs not found", LatencyMS: lat}
	}
	return Check{Status: Pass, Message: "job queue table present", LatencyMS: lat, Details: map[string]any{"table": "public.jobs"}}
}

// JSONLDContexts passes when ContextsDir holds at least one .jsonld file and
// warns otherwise (the server still works, without its JSON-LD contexts).
func (c *Checker) JSONLDContexts() Check {
	start := time.Now()
	files, err := filepath.Glob(filepath.Join(c.ContextsDir, "*.jsonld"))
	if err == nil && len(files) == 0 {
		if _, statErr := os.Stat(c.ContextsDir); statErr != nil {
			err = statErr
		}
	}
	lat := time.Since(start).Milliseconds()
	details := map[string]any{"dir": c.ContextsDir, "files": len(files)}
	switch {
	case err != nil:
		details["error"] = err.Error()
		return Check{Status: Warn, Message: "JSON-LD contexts directory not readable", LatencyMS: lat, Details: details}
	case len(files) == 0:
		return Check{Status: Warn, Message: "no .jsonld files in the contexts directory", LatencyMS: lat, Details: details}
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = filepath.Base(f)
	}
	details["names"] = names
	return Check{Status: Pass, Message: fmt.Sprintf("%d JSON-LD context file(s) found", len(files)), LatencyMS: lat, Details: details}
}

// HTTPEndpoint passes while the HTTP layer is serving, unless a test switch
// forces it to fail.
func (c *Checker) HTTPEndpoint() Check {
	if c.Unhealthy != nil {
		if bad, why := c.Unhealthy(); bad {
			return Check{Status: Fail, Message: why, Details: map[string]any{"test_switch": true}}
		}
	}
	return Check{Status: Pass, Message: "HTTP endpoint operational"}
}

func errText(err error) string { return redact.String(err.Error()) }
