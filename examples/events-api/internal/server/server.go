// Package server wires the HTTP routes of events-api: health endpoints with
// Togather's JSON shapes, Prometheus metrics, and a small events API backed
// by PostgreSQL (PostGIS, pgvector, pg_trgm).
package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"example.com/events-api/internal/config"
	"example.com/events-api/internal/health"
)

// ServiceName is reported by GET /.
const ServiceName = "events-api"

// DocsURL is reported as docs_url by /health.
const DocsURL = "/docs"

// Build describes the running binary (set by ldflags in package cmd).
type Build struct {
	Version   string
	GitCommit string
	BuildDate string
}

// Server holds the state shared by all handlers.
type Server struct {
	cfg     config.Config
	build   Build
	pool    *pgxpool.Pool
	log     *slog.Logger
	checker *health.Checker
	metrics *metrics
	started time.Time
	now     func() time.Time

	shuttingDown atomic.Bool
	degradeOnce  sync.Once
}

// New builds a Server. pool may be nil (every database check then fails).
// started is the moment TEST_UNHEALTHY_AFTER counts from.
func New(cfg config.Config, build Build, pool *pgxpool.Pool, log *slog.Logger, started time.Time) *Server {
	s := &Server{cfg: cfg, build: build, pool: pool, log: log, started: started, now: time.Now}
	s.checker = &health.Checker{Pool: pool, ContextsDir: cfg.ContextsDir, Unhealthy: s.testUnhealthy}
	s.metrics = newMetrics(build, pool, started)
	return s
}

// SetShuttingDown makes /health answer 503 {"status":"shutting_down"} and
// /readyz answer not_ready from now on.
func (s *Server) SetShuttingDown() { s.shuttingDown.Store(true) }

// Handler returns the root HTTP handler with all routes and middleware.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.handleRoot)
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.HandleFunc("GET /version", s.handleVersion)
	mux.HandleFunc("GET /client", s.handleClient)
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("GET /api/v1/events", s.handleListEvents)
	mux.HandleFunc("POST /api/v1/events", s.handleCreateEvent)
	// Order matters: metrics is outermost so it sees the final status code
	// and, after the mux ran, the matched pattern.
	return s.instrument(s.cors(s.testFailures(mux)))
}

// testUnhealthy implements TEST_UNHEALTHY and TEST_UNHEALTHY_AFTER.
func (s *Server) testUnhealthy() (bool, string) {
	if s.cfg.TestUnhealthy {
		return true, "TEST_UNHEALTHY is set: reporting unhealthy on purpose"
	}
	if s.unhealthyAfterElapsed() {
		return true, fmt.Sprintf("TEST_UNHEALTHY_AFTER=%s has elapsed: reporting unhealthy on purpose", s.cfg.TestUnhealthyAfter)
	}
	return false, ""
}

func (s *Server) unhealthyAfterElapsed() bool {
	d := s.cfg.TestUnhealthyAfter
	if d <= 0 || s.now().Sub(s.started) < d {
		return false
	}
	s.degradeOnce.Do(func() {
		s.log.Warn("TEST_UNHEALTHY_AFTER elapsed: now unhealthy, GET / and /api/* answer 500", "after", d.String())
	})
	return true
}

// testFailures makes GET / and /api/* answer 500 once TEST_UNHEALTHY_AFTER
// has elapsed, so a proxy in front sees a 5xx rate, and makes them TEST_LATENCY
// slower, so a proxy in front sees a slower version.
func (s *Server) testFailures(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served := r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/api/")
		if served && s.cfg.TestLatency > 0 {
			select {
			case <-time.After(s.cfg.TestLatency):
			case <-r.Context().Done():
				return
			}
		}
		if served && s.unhealthyAfterElapsed() {
			_, r.Pattern = mux.Handler(r) // label the metrics with the route anyway
			writeError(w, http.StatusInternalServerError, "TEST_UNHEALTHY_AFTER has elapsed: failing on purpose")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// cors answers CORS for the origins in CORS_ALLOWED_ORIGINS ("*" allows any).
func (s *Server) cors(next http.Handler) http.Handler {
	allowAll := slices.Contains(s.cfg.CORSAllowedOrigins, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && (allowAll || slices.Contains(s.cfg.CORSAllowedOrigins, origin)) {
			h := w.Header()
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Allow-Origin", origin)
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, X-CSRF-Token")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"service": ServiceName,
		"version": s.build.Version,
		"slot":    s.cfg.Slot,
	})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if s.shuttingDown.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": health.ShuttingDown})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	checks := s.checker.Run(ctx)
	overall := health.Overall(checks)
	writeJSON(w, health.HTTPStatus(overall), health.Report{
		Status:    overall,
		Version:   s.build.Version,
		GitCommit: s.build.GitCommit,
		Slot:      s.cfg.Slot,
		DocsURL:   DocsURL,
		Checks:    checks,
		Timestamp: s.now().UTC().Format(time.RFC3339),
	})
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if s.shuttingDown.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not_ready", "reason": "shutting down"})
		return
	}
	ready, reason := s.checker.Ready(r.Context())
	if !ready {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not_ready", "reason": reason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"version":    s.build.Version,
		"git_commit": s.build.GitCommit,
		"build_date": s.build.BuildDate,
		"go_version": runtime.Version(),
	})
}

// statusRecorder captures the status code written by a handler.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// instrument records http_requests_total, http_request_duration_seconds and
// http_requests_in_flight,
// labelled by the matched route (not the raw path, to bound cardinality),
// and logs server errors.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		s.metrics.inFlight.Inc()
		next.ServeHTTP(rec, r)
		s.metrics.inFlight.Dec()
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		elapsed := time.Since(start)
		path := routeLabel(r)
		method := methodLabel(r.Method)
		s.metrics.requests.WithLabelValues(method, path, strconv.Itoa(rec.code)).Inc()
		s.metrics.duration.WithLabelValues(method, path).Observe(elapsed.Seconds())
		if rec.code >= 500 && path != "/health" && path != "/readyz" {
			s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "status", rec.code,
				"duration_ms", elapsed.Milliseconds())
		}
	})
}

// routeLabel turns the ServeMux pattern ("GET /api/v1/events") into the
// path label ("/api/v1/events"); unmatched requests share one label.
func routeLabel(r *http.Request) string {
	p := r.Pattern
	if p == "" {
		return "unmatched" // 404, 405, redirects
	}
	if _, after, ok := strings.Cut(p, " "); ok {
		p = after
	}
	return strings.TrimSuffix(p, "{$}")
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string, details ...string) {
	body := map[string]any{"error": msg}
	if len(details) > 0 {
		body["details"] = details
	}
	writeJSON(w, code, body)
}
