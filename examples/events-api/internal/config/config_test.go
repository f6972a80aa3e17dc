package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	goodURL    = "postgres://app:s3cretpass@db:5432/events?sslmode=disable"
	goodSecret = "0123456789abcdef0123456789abcdef" // 32 chars
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func base(over map[string]string) map[string]string {
	m := map[string]string{"DATABASE_URL": goodURL, "JWT_SECRET": goodSecret}
	for k, v := range over {
		m[k] = v
	}
	return m
}

func TestLoadDefaults(t *testing.T) {
	c, errs := Load(env(base(nil)))
	if len(errs) != 0 {
		t.Fatalf("unexpected errors: %v", errs)
	}
	if c.Environment != "development" || c.Port != 8080 || c.ShutdownTimeout != 10*time.Second ||
		c.ContextsDir != "/app/contexts" || c.Slot != "" || c.TestUnhealthy || c.TestStartupDelay != 0 {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestLoadValues(t *testing.T) {
	c, errs := Load(env(base(map[string]string{
		"ENVIRONMENT":          "Production",
		"CORS_ALLOWED_ORIGINS": "https://a.example.org, http://localhost:3000/",
		"CSRF_KEY":             goodSecret,
		"PORT":                 "9090",
		"SLOT":                 "green",
		"SHUTDOWN_TIMEOUT":     "25s",
		"CONTEXTS_DIR":         "/srv/ctx",
		"TEST_UNHEALTHY_AFTER": "1m",
		"TEST_STARTUP_DELAY":   "0s",
		"TEST_UNHEALTHY":       "true",
	})))
	if len(errs) != 0 {
		t.Fatalf("unexpected errors: %v", errs)
	}
	if c.Environment != "production" || c.Port != 9090 || c.Slot != "green" ||
		c.ShutdownTimeout != 25*time.Second || c.ContextsDir != "/srv/ctx" ||
		c.TestUnhealthyAfter != time.Minute || !c.TestUnhealthy ||
		strings.Join(c.CORSAllowedOrigins, "|") != "https://a.example.org|http://localhost:3000" {
		t.Fatalf("unexpected config: %+v", c)
	}
	// DEPLOYMENT_SLOT wins over SLOT.
	c, _ = Load(env(base(map[string]string{"DEPLOYMENT_SLOT": "blue", "SLOT": "green"})))
	if c.Slot != "blue" {
		t.Fatalf("slot = %q, want blue", c.Slot)
	}
}

func TestLoadProblems(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want []string // one substring per expected problem, in order
	}{
		{"missing DATABASE_URL", map[string]string{"JWT_SECRET": goodSecret}, []string{"DATABASE_URL is required"}},
		{"non-postgres DATABASE_URL", base(map[string]string{"DATABASE_URL": "mysql://u:p@h/db"}), []string{"DATABASE_URL must start with postgres://"}},
		{"DATABASE_URL without host", base(map[string]string{"DATABASE_URL": "postgres:///events"}), []string{"DATABASE_URL has no host"}},
		{"unparseable DATABASE_URL", base(map[string]string{"DATABASE_URL": "postgres://u:p%zz@h/db"}), []string{"DATABASE_URL is not a valid URL"}},
		{"missing JWT_SECRET", base(map[string]string{"JWT_SECRET": ""}), []string{"JWT_SECRET is required"}},
		{"short JWT_SECRET", base(map[string]string{"JWT_SECRET": "short"}), []string{"JWT_SECRET must be at least 32 characters long (got 5)"}},
		{"bad ENVIRONMENT", base(map[string]string{"ENVIRONMENT": "prod"}), []string{`ENVIRONMENT must be one of development, test, staging, production (got "prod")`}},
		{"missing CORS in production", base(map[string]string{"ENVIRONMENT": "production"}), []string{"CORS_ALLOWED_ORIGINS is required when ENVIRONMENT=production"}},
		{"missing CORS in staging", base(map[string]string{"ENVIRONMENT": "staging"}), []string{"CORS_ALLOWED_ORIGINS is required when ENVIRONMENT=staging"}},
		{"bad CORS origin", base(map[string]string{"CORS_ALLOWED_ORIGINS": "events.example.org"}), []string{`CORS_ALLOWED_ORIGINS entry "events.example.org" is not an origin`}},
		{"short CSRF_KEY", base(map[string]string{"CSRF_KEY": "tooshort"}), []string{"CSRF_KEY must be at least 32 characters long when set (got 8)"}},
		{"bad PORT", base(map[string]string{"PORT": "http"}), []string{"PORT must be a TCP port number"}},
		{"PORT out of range", base(map[string]string{"PORT": "70000"}), []string{"PORT must be a TCP port number"}},
		{"bad SHUTDOWN_TIMEOUT", base(map[string]string{"SHUTDOWN_TIMEOUT": "10"}), []string{"SHUTDOWN_TIMEOUT must be a Go duration"}},
		{"zero SHUTDOWN_TIMEOUT", base(map[string]string{"SHUTDOWN_TIMEOUT": "0s"}), []string{"SHUTDOWN_TIMEOUT must be greater than zero"}},
		{"bad TEST_UNHEALTHY_AFTER", base(map[string]string{"TEST_UNHEALTHY_AFTER": "soon"}), []string{"TEST_UNHEALTHY_AFTER must be a Go duration"}},
		{"negative TEST_STARTUP_DELAY", base(map[string]string{"TEST_STARTUP_DELAY": "-1s"}), []string{"TEST_STARTUP_DELAY must not be negative"}},
		{"bad TEST_UNHEALTHY", base(map[string]string{"TEST_UNHEALTHY": "yes please"}), []string{"TEST_UNHEALTHY must be 1/true or 0/false"}},
		{"bad TRUSTED_PROXY_CIDRS", base(map[string]string{"TRUSTED_PROXY_CIDRS": "10.0.0.0/8, proxy"}), []string{`TRUSTED_PROXY_CIDRS entry "proxy" is not a CIDR`}},
		{"everything wrong at once", map[string]string{"JWT_SECRET": "x", "ENVIRONMENT": "production", "CSRF_KEY": "y"}, []string{
			"DATABASE_URL is required", "JWT_SECRET must be at least", "CORS_ALLOWED_ORIGINS is required", "CSRF_KEY must be at least",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := Load(env(tc.env))
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d problems %q, want %d", len(errs), errs, len(tc.want))
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tc.want[i]) {
					t.Errorf("problem %d = %q, want it to contain %q", i, e, tc.want[i])
				}
				if strings.Contains(e.Error(), "\n") {
					t.Errorf("problem %d spans several lines: %q", i, e)
				}
				for _, secret := range []string{"s3cretpass", goodSecret, "p%zz", "tooshort"} {
					if strings.Contains(e.Error(), secret) {
						t.Errorf("problem %d leaks a secret: %q", i, e)
					}
				}
			}
		})
	}
}

func TestCORSOptionalInDevelopmentAndTest(t *testing.T) {
	for _, e := range []string{"development", "test", ""} {
		if _, errs := Load(env(base(map[string]string{"ENVIRONMENT": e}))); len(errs) != 0 {
			t.Errorf("ENVIRONMENT=%q: unexpected errors %v", e, errs)
		}
	}
}

func TestTruthy(t *testing.T) {
	for v, want := range map[string]bool{"1": true, "true": true, "TRUE": true, " 1 ": true, "0": false, "": false, "no": false} {
		if Truthy(v) != want {
			t.Errorf("Truthy(%q) != %v", v, want)
		}
	}
}

func TestLoadEnvFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "app.env")
	content := "# comment\n\nexport EVAPI_T_A=\"quoted value\"\nEVAPI_T_B='x=y'\nEVAPI_T_C=from-file\n"
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("EVAPI_T_C", "from-env")
	for _, k := range []string{"EVAPI_T_A", "EVAPI_T_B"} {
		t.Setenv(k, "") // registers cleanup
		os.Unsetenv(k)
	}
	if err := LoadEnvFile(p); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("EVAPI_T_A") != "quoted value" || os.Getenv("EVAPI_T_B") != "x=y" || os.Getenv("EVAPI_T_C") != "from-env" {
		t.Fatalf("got A=%q B=%q C=%q", os.Getenv("EVAPI_T_A"), os.Getenv("EVAPI_T_B"), os.Getenv("EVAPI_T_C"))
	}
	if err := LoadEnvFile(filepath.Join(t.TempDir(), "missing.env")); err == nil {
		t.Fatal("expected an error for a missing file")
	}
	bad := filepath.Join(t.TempDir(), "bad.env")
	os.WriteFile(bad, []byte("NOT A PAIR\n"), 0o600)
	if err := LoadEnvFile(bad); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("expected a line-numbered error, got %v", err)
	}
}

func TestTrustedProxies(t *testing.T) {
	c, errs := Load(env(base(map[string]string{"TRUSTED_PROXY_CIDRS": " 10.201.7.0/24 ,,172.16.0.5/12"})))
	if len(errs) != 0 {
		t.Fatalf("unexpected errors: %v", errs)
	}
	got := fmt.Sprint(c.TrustedProxies)
	if got != "[10.201.7.0/24 172.16.0.0/12]" {
		t.Fatalf("TrustedProxies = %s", got)
	}
	if c, _ := Load(env(base(nil))); len(c.TrustedProxies) != 0 {
		t.Fatalf("TrustedProxies by default = %v, want none", c.TrustedProxies)
	}
}
