// Package redact removes secrets (database passwords) from strings and log
// records before they leave the process.
package redact

import (
	"context"
	"log/slog"
	"net/url"
	"regexp"
)

// Mask replaces every redacted secret.
const Mask = "xxxxx"

var (
	// scheme://user:password@host — the user part stops at ':' '/' '@'; the
	// password runs (greedily, so an unescaped '@' inside it is covered) to
	// the last '@' before the end of the authority.
	urlUserinfo = regexp.MustCompile("(?i)\\b([a-z][a-z0-9+.-]*://[^:/@\\s]*):[^\\s/?#\"'`]*@")
	// libpq key/value form: password=secret or password='se cret'.
	kvPassword = regexp.MustCompile(`(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]+)`)
)

// String masks passwords inside any URL (postgres://user:pass@host/db ->
// postgres://user:xxxxx@host/db) and libpq "password=..." pairs in s.
func String(s string) string {
	s = urlUserinfo.ReplaceAllString(s, "${1}:"+Mask+"@")
	return kvPassword.ReplaceAllString(s, "${1}"+Mask)
}

// URL returns raw with the password masked. Unparseable input is masked by
// String's patterns instead, never returned verbatim.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return String(raw)
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), Mask)
	}
	// Query parameters may carry a password too (?password=...).
	if q := u.Query(); q.Has("password") {
		q.Set("password", Mask)
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// Handler wraps a slog.Handler and passes every message and string/error
// attribute through String, so a connection string that slips into a log
// line (for example inside a driver error) is never printed with its password.
type Handler struct{ inner slog.Handler }

// NewHandler returns a redacting wrapper around inner.
func NewHandler(inner slog.Handler) *Handler { return &Handler{inner: inner} }

func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(attr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = attr(a)
	}
	return &Handler{inner: h.inner.WithAttrs(red)}
}

func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name)}
}

func attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		red := make([]any, len(g))
		for i, ga := range g {
			red[i] = attr(ga)
		}
		return slog.Group(a.Key, red...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, String(err.Error()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
