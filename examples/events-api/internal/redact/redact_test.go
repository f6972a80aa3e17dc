package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://app:s3cret@db:5432/events?sslmode=disable", "postgres://app:xxxxx@db:5432/events?sslmode=disable"},
		{"postgresql://app:p%40ss:w0rd@db/events", "postgresql://app:xxxxx@db/events"},
		{"dial postgres://u:pw@h/db failed; retry postgres://v:pw2@h2/db", "dial postgres://u:xxxxx@h/db failed; retry postgres://v:xxxxx@h2/db"},
		{"POSTGRES://U:PW@H/DB", "POSTGRES://U:xxxxx@H/DB"},
		{"postgres://app:p@ss@db/events", "postgres://app:xxxxx@db/events"},
		{`{"url":"postgres://a:b@h/d","x":"y@z"}`, `{"url":"postgres://a:xxxxx@h/d","x":"y@z"}`},
		{"postgres://app@db/events", "postgres://app@db/events"},
		{"postgres://db:5432/events", "postgres://db:5432/events"},
		{"host=db user=app password=s3cret dbname=events", "host=db user=app password=xxxxx dbname=events"},
		{"password='with space' host=db", "password=xxxxx host=db"},
		{"no secrets here", "no secrets here"},
	}
	for _, c := range cases {
		if got := String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestURL(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://app:s3cret@db:5432/events?sslmode=disable", "postgres://app:xxxxx@db:5432/events?sslmode=disable"},
		{"postgres://app@db/events", "postgres://app@db/events"},
		{"postgres://db/events?password=s3cret&sslmode=disable", "postgres://db/events?password=xxxxx&sslmode=disable"},
		{"postgres://app:s3%cret@db/x", "postgres://app:xxxxx@db/x"}, // unparseable: regex path
	}
	for _, c := range cases {
		got := URL(c.in)
		if got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
		if strings.Contains(got, "s3cret") || strings.Contains(got, "s3%cret") {
			t.Errorf("URL(%q) leaked the password: %q", c.in, got)
		}
	}
}

func TestHandlerRedactsLogLines(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil)))
	log = log.With("dsn", "postgres://app:topsecret@db/events")
	log.Error("connect postgres://app:topsecret@db/events failed",
		"err", errors.New("cannot parse `postgres://app:topsecret@db/x`"),
		slog.Group("db", "url", "postgres://app:topsecret@db/events"))
	if strings.Contains(buf.String(), "topsecret") {
		t.Fatalf("password leaked into log line: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "app:xxxxx@db") {
		t.Fatalf("expected masked URL in log line: %s", buf.String())
	}
}
