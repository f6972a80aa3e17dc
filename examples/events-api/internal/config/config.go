// Package config reads and validates the server's environment.
//
// Load never stops at the first problem: it returns every problem it finds,
// each as one self-contained sentence naming the variable, so an operator
// sees the whole list in one failed start. No message ever contains the value
// of a secret (DATABASE_URL, JWT_SECRET, CSRF_KEY).
package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Environments the server accepts in ENVIRONMENT.
var Environments = []string{"development", "test", "staging", "production"}

const (
	DefaultPort            = 8080
	DefaultShutdownTimeout = 10 * time.Second
	DefaultContextsDir     = "/app/contexts"
	MinSecretLen           = 32
)

// Config is the validated configuration of one server process.
type Config struct {
	DatabaseURL        string
	JWTSecret          string
	Environment        string
	CORSAllowedOrigins []string
	CSRFKey            string
	Port               int
	Slot               string
	ShutdownTimeout    time.Duration
	ContextsDir        string
	// TrustedProxies are the networks (TRUSTED_PROXY_CIDRS, comma-separated)
	// whose X-Forwarded-For is believed: a request from anywhere else is its
	// own client.
	TrustedProxies []netip.Prefix

	// Test-only switches: never set in production.
	TestFailStartup    bool
	TestUnhealthy      bool
	TestUnhealthyAfter time.Duration
	TestStartupDelay   time.Duration
	TestLatency        time.Duration
}

// Load reads the configuration through getenv (os.Getenv in production) and
// returns it with every validation problem found. The Config is only usable
// when the returned slice is empty.
func Load(getenv func(string) string) (Config, []error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }

	c := Config{
		DatabaseURL: get("DATABASE_URL"),
		JWTSecret:   getenv("JWT_SECRET"),
		CSRFKey:     getenv("CSRF_KEY"),
		Environment: strings.ToLower(get("ENVIRONMENT")),
		ContextsDir: get("CONTEXTS_DIR"),
	}

	// DATABASE_URL: required postgres URL. Never echo it: it holds a password.
	if c.DatabaseURL == "" {
		bad("DATABASE_URL is required (postgres://user:password@host:5432/dbname)")
	} else if err := checkDatabaseURL(c.DatabaseURL); err != nil {
		errs = append(errs, err)
	}

	// JWT_SECRET: required, >= 32 characters.
	switch n := len(c.JWTSecret); {
	case n == 0:
		bad("JWT_SECRET is required (at least %d characters)", MinSecretLen)
	case n < MinSecretLen:
		bad("JWT_SECRET must be at least %d characters long (got %d)", MinSecretLen, n)
	}

	// ENVIRONMENT: one of the known names, default development.
	if c.Environment == "" {
		c.Environment = "development"
	} else if !contains(Environments, c.Environment) {
		bad("ENVIRONMENT must be one of %s (got %q)", strings.Join(Environments, ", "), c.Environment)
	}

	// CORS_ALLOWED_ORIGINS: comma-separated origins; required outside development/test.
	for _, o := range strings.Split(get("CORS_ALLOWED_ORIGINS"), ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if err := checkOrigin(o); err != nil {
			errs = append(errs, err)
			continue
		}
		c.CORSAllowedOrigins = append(c.CORSAllowedOrigins, strings.TrimRight(o, "/"))
	}
	if len(c.CORSAllowedOrigins) == 0 && !c.IsDevelopmentLike() && contains(Environments, c.Environment) {
		bad("CORS_ALLOWED_ORIGINS is required when ENVIRONMENT=%s (comma-separated origins, e.g. https://events.example.org)", c.Environment)
	}

	// CSRF_KEY: optional, >= 32 characters when set.
	if n := len(c.CSRFKey); n > 0 && n < MinSecretLen {
		bad("CSRF_KEY must be at least %d characters long when set (got %d)", MinSecretLen, n)
	}

	// PORT: 1..65535, default 8080.
	c.Port = DefaultPort
	if p := get("PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			bad("PORT must be a TCP port number between 1 and 65535 (got %q)", p)
		} else {
			c.Port = n
		}
	}

	// DEPLOYMENT_SLOT, falling back to SLOT.
	c.Slot = get("DEPLOYMENT_SLOT")
	if c.Slot == "" {
		c.Slot = get("SLOT")
	}

	// TRUSTED_PROXY_CIDRS: comma-separated networks, e.g. 10.0.0.0/8,172.16.0.0/12.
	for _, p := range strings.Split(get("TRUSTED_PROXY_CIDRS"), ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			bad("TRUSTED_PROXY_CIDRS entry %q is not a CIDR such as 10.0.0.0/8", p)
			continue
		}
		c.TrustedProxies = append(c.TrustedProxies, prefix.Masked())
	}

	c.ShutdownTimeout = duration(get, "SHUTDOWN_TIMEOUT", DefaultShutdownTimeout, true, bad)
	if c.ContextsDir == "" {
		c.ContextsDir = DefaultContextsDir
	}

	c.TestFailStartup = boolean(get, "TEST_FAIL_STARTUP", bad)
	c.TestUnhealthy = boolean(get, "TEST_UNHEALTHY", bad)
	c.TestUnhealthyAfter = duration(get, "TEST_UNHEALTHY_AFTER", 0, true, bad)
	c.TestStartupDelay = duration(get, "TEST_STARTUP_DELAY", 0, false, bad)
	c.TestLatency = duration(get, "TEST_LATENCY", 0, false, bad)

	return c, errs
}

// IsDevelopmentLike reports whether the environment relaxes production-only
// requirements (CORS_ALLOWED_ORIGINS).
func (c Config) IsDevelopmentLike() bool {
	return c.Environment == "development" || c.Environment == "test"
}

// Truthy reports whether a test switch value like TEST_FAIL_STARTUP is on.
func Truthy(v string) bool {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	return err == nil && b
}

func checkDatabaseURL(raw string) error {
	// Deliberately discard url.Parse's error: it quotes the input.
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("DATABASE_URL is not a valid URL (expected postgres://user:password@host:5432/dbname; special characters in the password must be percent-encoded)")
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("DATABASE_URL must start with postgres:// or postgresql:// (got scheme %q)", u.Scheme)
	}
	if u.Hostname() == "" && u.Query().Get("host") == "" {
		return fmt.Errorf("DATABASE_URL has no host (expected postgres://user:password@host:5432/dbname)")
	}
	return nil
}

func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		strings.TrimRight(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("CORS_ALLOWED_ORIGINS entry %q is not an origin (expected scheme://host[:port], e.g. https://events.example.org, or *)", o)
	}
	return nil
}

func duration(get func(string) string, key string, def time.Duration, positive bool, bad func(string, ...any)) time.Duration {
	v := get(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		bad("%s must be a Go duration such as 10s, 500ms or 1m30s (got %q)", key, v)
		return def
	case positive && d <= 0:
		bad("%s must be greater than zero (got %q)", key, v)
		return def
	case d < 0:
		bad("%s must not be negative (got %q)", key, v)
		return def
	}
	return d
}

func boolean(get func(string) string, key string, bad func(string, ...any)) bool {
	v := get(key)
	if v == "" {
		return false
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		bad("%s must be 1/true or 0/false (got %q)", key, v)
		return false
	}
	return b
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
