package cmd

import (
	"bytes"
	"strings"
	"testing"
)

func TestVersionAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Version:    dev") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errb.String())
	}
}

// serve must refuse to start, with exit status 1 and one JSON log line per
// problem, before it listens.
func TestServeRefusesBadConfig(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"TEST_FAIL_STARTUP", map[string]string{"TEST_FAIL_STARTUP": "1"}, []string{"TEST_FAIL_STARTUP set: refusing to start"}},
		{"short JWT_SECRET", map[string]string{"DATABASE_URL": "postgres://app:hunter2hunter2@db/events", "JWT_SECRET": "short"},
			[]string{"config error: JWT_SECRET must be at least 32 characters long (got 5)", "refusing to start: 1 configuration problem(s)"}},
		{"nothing set", map[string]string{}, []string{"config error: DATABASE_URL is required", "config error: JWT_SECRET is required"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"ENV_FILE", "TEST_FAIL_STARTUP", "DATABASE_URL", "JWT_SECRET", "ENVIRONMENT", "CORS_ALLOWED_ORIGINS", "CSRF_KEY", "PORT"} {
				t.Setenv(k, tc.env[k])
			}
			t.Chdir(t.TempDir()) // no stray ./.env
			var out, errb bytes.Buffer
			if code := run(nil, &out, &errb); code != 1 {
				t.Fatalf("exit %d, want 1; stderr: %s", code, errb.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errb.String())
				}
			}
			if strings.Contains(errb.String(), "hunter2") {
				t.Errorf("stderr leaks the database password:\n%s", errb.String())
			}
		})
	}
}
