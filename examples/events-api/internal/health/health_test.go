package health

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func checks(statuses ...string) map[string]Check {
	names := []string{CheckDatabase, CheckMigrations, CheckJobQueue, CheckJSONLDContexts, CheckHTTPEndpoint}
	m := map[string]Check{}
	for i, s := range statuses {
		m[names[i]] = Check{Status: s}
	}
	return m
}

func TestOverallAndHTTPStatus(t *testing.T) {
	cases := []struct {
		name     string
		checks   map[string]Check
		overall  string
		httpCode int
	}{
		{"all pass", checks(Pass, Pass, Pass, Pass, Pass), Healthy, 200},
		{"one warn", checks(Pass, Pass, Warn, Pass, Pass), Degraded, 200},
		{"two warns", checks(Pass, Pass, Warn, Warn, Pass), Degraded, 200},
		{"one fail", checks(Fail, Pass, Pass, Pass, Pass), Unhealthy, 503},
		{"fail beats warn", checks(Pass, Warn, Pass, Warn, Fail), Unhealthy, 503},
		{"warn then fail", checks(Warn, Fail, Pass, Pass, Pass), Unhealthy, 503},
		{"unknown status counts as fail", checks(Pass, "bogus", Pass, Pass, Pass), Unhealthy, 503},
		{"no checks", map[string]Check{}, Healthy, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Overall(tc.checks)
			if got != tc.overall {
				t.Fatalf("Overall = %q, want %q", got, tc.overall)
			}
			if code := HTTPStatus(got); code != tc.httpCode {
				t.Fatalf("HTTPStatus(%q) = %d, want %d", got, code, tc.httpCode)
			}
		})
	}
	if HTTPStatus(ShuttingDown) != http.StatusServiceUnavailable {
		t.Fatal("shutting_down must map to 503")
	}
}

func TestCheckJSONShape(t *testing.T) {
	b, _ := json.Marshal(Check{Status: Pass})
	if string(b) != `{"status":"pass","message":"","latency_ms":0,"details":null}` {
		t.Fatalf("unexpected check JSON: %s", b)
	}
	b, _ = json.Marshal(Report{Checks: map[string]Check{}})
	for _, k := range []string{"status", "version", "git_commit", "slot", "docs_url", "checks", "timestamp"} {
		if !strings.Contains(string(b), `"`+k+`":`) {
			t.Errorf("report JSON lacks %q: %s", k, b)
		}
	}
}

func TestJSONLDContexts(t *testing.T) {
	dir := t.TempDir()
	c := &Checker{ContextsDir: dir}
	if r := c.JSONLDContexts(); r.Status != Warn {
		t.Fatalf("empty dir: %+v, want warn", r)
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	if r := c.JSONLDContexts(); r.Status != Warn {
		t.Fatalf("dir without .jsonld: %+v, want warn", r)
	}
	os.WriteFile(filepath.Join(dir, "sel.jsonld"), []byte(`{"@context":{}}`), 0o644)
	if r := c.JSONLDContexts(); r.Status != Pass || r.Details["files"] != 1 {
		t.Fatalf("dir with sel.jsonld: %+v, want pass with 1 file", r)
	}
	c.ContextsDir = filepath.Join(dir, "missing")
	if r := c.JSONLDContexts(); r.Status != Warn || r.Details["error"] == nil {
		t.Fatalf("missing dir: %+v, want warn with error", r)
	}
}

func TestNilPoolAndTestSwitch(t *testing.T) {
	bad := false
	c := &Checker{ContextsDir: t.TempDir(), Unhealthy: func() (bool, string) { return bad, "forced" }}
	got := c.Run(context.Background())
	if len(got) != 5 {
		t.Fatalf("want 5 checks, got %v", got)
	}
	if got[CheckDatabase].Status != Fail || got[CheckMigrations].Status != Fail ||
		got[CheckJobQueue].Status != Warn || got[CheckHTTPEndpoint].Status != Pass {
		t.Fatalf("unexpected nil-pool results: %+v", got)
	}
	if ok, reason := c.Ready(context.Background()); ok || !strings.HasPrefix(reason, "database:") {
		t.Fatalf("Ready = %v %q, want not ready because of the database", ok, reason)
	}
	bad = true
	if r := c.HTTPEndpoint(); r.Status != Fail || r.Message != "forced" {
		t.Fatalf("forced unhealthy: %+v", r)
	}
	if ok, reason := c.Ready(context.Background()); ok || !strings.HasPrefix(reason, "http_endpoint:") {
		t.Fatalf("Ready = %v %q, want not ready because of the switch", ok, reason)
	}
}
