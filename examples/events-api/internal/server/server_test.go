package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"example.com/events-api/internal/config"
)

func newTestServer(t *testing.T, mod func(*config.Config)) *Server {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "sel.jsonld"), []byte(`{"@context":{}}`), 0o644)
	cfg := config.Config{Environment: "test", Slot: "blue", ContextsDir: dir, CORSAllowedOrigins: []string{"https://ok.example"}}
	if mod != nil {
		mod(&cfg)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	return New(cfg, Build{Version: "1.2.3", GitCommit: "abc", BuildDate: "2026-01-01T00:00:00Z"}, nil, log, time.Now())
}

func do(t *testing.T, h http.Handler, method, target, body string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, rd))
	var m map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &m)
	return rec, m
}

func TestSimpleEndpoints(t *testing.T) {
	h := newTestServer(t, nil).Handler()
	rec, m := do(t, h, "GET", "/healthz", "")
	if rec.Code != 200 || m["status"] != "ok" {
		t.Fatalf("/healthz: %d %v", rec.Code, m)
	}
	rec, m = do(t, h, "GET", "/version", "")
	if rec.Code != 200 || m["version"] != "1.2.3" || m["git_commit"] != "abc" || m["build_date"] == "" || !strings.HasPrefix(m["go_version"].(string), "go") {
		t.Fatalf("/version: %d %v", rec.Code, m)
	}
	rec, m = do(t, h, "GET", "/", "")
	if rec.Code != 200 || m["service"] != "events-api" || m["version"] != "1.2.3" || m["slot"] != "blue" {
		t.Fatalf("/: %d %v", rec.Code, m)
	}
	if rec, _ = do(t, h, "GET", "/nope", ""); rec.Code != 404 {
		t.Fatalf("/nope: %d", rec.Code)
	}
}

func TestHealthWithoutDatabase(t *testing.T) {
	h := newTestServer(t, nil).Handler()
	rec, m := do(t, h, "GET", "/health", "")
	if rec.Code != 503 || m["status"] != "unhealthy" || m["slot"] != "blue" || m["docs_url"] != "/docs" || m["version"] != "1.2.3" {
		t.Fatalf("/health: %d %v", rec.Code, m)
	}
	if _, err := time.Parse(time.RFC3339, m["timestamp"].(string)); err != nil || !strings.HasSuffix(m["timestamp"].(string), "Z") {
		t.Fatalf("timestamp not RFC3339 UTC: %v", m["timestamp"])
	}
	checks := m["checks"].(map[string]any)
	for _, k := range []string{"database", "migrations", "job_queue", "jsonld_contexts", "http_endpoint"} {
		c, ok := checks[k].(map[string]any)
		if !ok {
			t.Fatalf("check %q missing: %v", k, checks)
		}
		for _, f := range []string{"status", "message", "latency_ms", "details"} {
			if _, ok := c[f]; !ok {
				t.Errorf("check %q lacks %q: %v", k, f, c)
			}
		}
	}
	if checks["database"].(map[string]any)["status"] != "fail" || checks["jsonld_contexts"].(map[string]any)["status"] != "pass" {
		t.Fatalf("unexpected checks: %v", checks)
	}
	rec, m = do(t, h, "GET", "/readyz", "")
	if rec.Code != 503 || m["status"] != "not_ready" || !strings.HasPrefix(m["reason"].(string), "database:") {
		t.Fatalf("/readyz: %d %v", rec.Code, m)
	}
}

func TestShuttingDown(t *testing.T) {
	s := newTestServer(t, nil)
	s.SetShuttingDown()
	h := s.Handler()
	rec, _ := do(t, h, "GET", "/health", "")
	if rec.Code != 503 || strings.TrimSpace(rec.Body.String()) != `{"status":"shutting_down"}` {
		t.Fatalf("/health while shutting down: %d %s", rec.Code, rec.Body)
	}
	if rec, m := do(t, h, "GET", "/readyz", ""); rec.Code != 503 || m["status"] != "not_ready" {
		t.Fatalf("/readyz while shutting down: %d %v", rec.Code, m)
	}
	if rec, _ := do(t, h, "GET", "/healthz", ""); rec.Code != 200 {
		t.Fatalf("/healthz while shutting down: %d", rec.Code)
	}
}

func TestTestUnhealthySwitches(t *testing.T) {
	s := newTestServer(t, func(c *config.Config) { c.TestUnhealthy = true })
	h := s.Handler()
	_, m := do(t, h, "GET", "/health", "")
	if hc := m["checks"].(map[string]any)["http_endpoint"].(map[string]any); hc["status"] != "fail" {
		t.Fatalf("TEST_UNHEALTHY: http_endpoint = %v", hc)
	}
	if rec, m := do(t, h, "GET", "/readyz", ""); rec.Code != 503 || !strings.HasPrefix(m["reason"].(string), "http_endpoint:") {
		t.Fatalf("TEST_UNHEALTHY /readyz: %d %v", rec.Code, m)
	}
	if rec, _ := do(t, h, "GET", "/", ""); rec.Code != 200 {
		t.Fatalf("TEST_UNHEALTHY alone must not fail GET /: %d", rec.Code)
	}

	now := time.Now()
	s = newTestServer(t, func(c *config.Config) { c.TestUnhealthyAfter = time.Minute })
	s.now = func() time.Time { return now }
	s.started = now
	h = s.Handler()
	if rec, _ := do(t, h, "GET", "/", ""); rec.Code != 200 {
		t.Fatalf("before TEST_UNHEALTHY_AFTER: GET / = %d", rec.Code)
	}
	now = now.Add(61 * time.Second)
	for _, p := range []string{"/", "/api/v1/events"} {
		if rec, _ := do(t, h, "GET", p, ""); rec.Code != 500 {
			t.Fatalf("after TEST_UNHEALTHY_AFTER: GET %s = %d, want 500", p, rec.Code)
		}
	}
	_, m = do(t, h, "GET", "/health", "")
	if hc := m["checks"].(map[string]any)["http_endpoint"].(map[string]any); hc["status"] != "fail" {
		t.Fatalf("after TEST_UNHEALTHY_AFTER: http_endpoint = %v", hc)
	}
	if rec, _ := do(t, h, "GET", "/healthz", ""); rec.Code != 200 {
		t.Fatalf("/healthz must stay 200: %d", rec.Code)
	}
	rec, _ := do(t, h, "GET", "/metrics", "")
	for _, want := range []string{
		`http_requests_total{method="GET",path="/",status="500"} 1`,
		`http_requests_total{method="GET",path="/api/v1/events",status="500"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestCreateEventValidation(t *testing.T) {
	h := newTestServer(t, nil).Handler()
	cases := map[string]string{
		"empty body":        ``,
		"not json":          `title=x`,
		"unknown field":     `{"title":"a","starts_at":"2026-01-01T00:00:00Z","colour":"red"}`,
		"missing title":     `{"starts_at":"2026-01-01T00:00:00Z"}`,
		"missing starts_at": `{"title":"a"}`,
		"bad starts_at":     `{"title":"a","starts_at":"tomorrow"}`,
		"lon without lat":   `{"title":"a","starts_at":"2026-01-01T00:00:00Z","lon":1}`,
		"lat out of range":  `{"title":"a","starts_at":"2026-01-01T00:00:00Z","lon":1,"lat":91}`,
		"short embedding":   `{"title":"a","starts_at":"2026-01-01T00:00:00Z","embedding":[1,2,3]}`,
		"wrong type":        `{"title":5,"starts_at":"2026-01-01T00:00:00Z"}`,
		"two objects":       `{"title":"a","starts_at":"2026-01-01T00:00:00Z"}{}`,
	}
	for name, body := range cases {
		rec, m := do(t, h, "POST", "/api/v1/events", body)
		if rec.Code != 400 || m["error"] == nil {
			t.Errorf("%s: got %d %s, want 400 with an error", name, rec.Code, rec.Body)
		}
	}
	rec, _ := do(t, h, "POST", "/api/v1/events", `{"title":"`+strings.Repeat("x", 70<<10)+`"}`)
	if rec.Code != 413 {
		t.Errorf("oversized body: got %d, want 413", rec.Code)
	}
	// Valid input reaches the database layer (absent here).
	rec, _ = do(t, h, "POST", "/api/v1/events", `{"title":"Jazz night","description":"","starts_at":"2026-05-01T19:00:00-04:00","lon":-79.38,"lat":43.65,"embedding":[0,0.1,0.2,0.3,0.4,0.5,0.6,0.7]}`)
	if rec.Code != 503 {
		t.Errorf("valid event without database: got %d, want 503", rec.Code)
	}
	if rec, _ := do(t, h, "GET", "/api/v1/events?q="+strings.Repeat("a", 201), ""); rec.Code != 400 {
		t.Errorf("overlong q: got %d, want 400", rec.Code)
	}
}

func TestMetrics(t *testing.T) {
	h := newTestServer(t, nil).Handler()
	do(t, h, "GET", "/healthz", "")
	do(t, h, "GET", "/does/not/exist", "")
	rec, _ := do(t, h, "GET", "/metrics", "")
	body := rec.Body.String()
	for _, want := range []string{
		`http_requests_total{method="GET",path="/healthz",status="200"} 1`,
		`http_requests_total{method="GET",path="unmatched",status="404"} 1`,
		`http_request_duration_seconds_bucket{method="GET",path="/healthz",le="+Inf"} 1`,
		`app_version_info{build_date="2026-01-01T00:00:00Z",commit="abc",version="1.2.3"} 1`,
		`app_uptime_seconds `,
		`http_requests_in_flight 1`, // the /metrics request itself
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestCORS(t *testing.T) {
	h := newTestServer(t, nil).Handler()
	req := httptest.NewRequest("OPTIONS", "/api/v1/events", nil)
	req.Header.Set("Origin", "https://ok.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 204 || rec.Header().Get("Access-Control-Allow-Origin") != "https://ok.example" {
		t.Fatalf("preflight: %d %v", rec.Code, rec.Header())
	}
	req = httptest.NewRequest("GET", "/healthz", nil)
	req.Header.Set("Origin", "https://evil.example")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("disallowed origin got CORS headers: %v", rec.Header())
	}
}

func TestLatencySwitchDelaysServedRoutesOnly(t *testing.T) {
	s := newTestServer(t, func(c *config.Config) { c.TestLatency = 500 * time.Millisecond })
	h := s.Handler()
	for path, delayed := range map[string]bool{"/": true, "/api/v1/events": true, "/healthz": false, "/version": false} {
		start := time.Now()
		do(t, h, "GET", path, "")
		took := time.Since(start)
		if delayed && took < 500*time.Millisecond {
			t.Errorf("GET %s took %s: TEST_LATENCY=500ms must delay it", path, took)
		}
		if !delayed && took >= 500*time.Millisecond {
			t.Errorf("GET %s took %s: TEST_LATENCY must not delay it", path, took)
		}
	}
}
