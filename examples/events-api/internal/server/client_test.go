package server

import (
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"testing"

	"example.com/events-api/internal/config"
)

func clientAnswer(t *testing.T, s *Server, remote string, headers map[string]string) map[string]any {
	t.Helper()
	req := httptest.NewRequest("GET", "/client", nil)
	req.RemoteAddr = remote
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("/client: %d %s", rec.Code, rec.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestClientIPTrustsForwardedForFromTrustedProxiesOnly(t *testing.T) {
	s := newTestServer(t, func(c *config.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.201.7.0/24")}
	})
	// Through the proxy: the first X-Forwarded-For entry is the client.
	m := clientAnswer(t, s, "10.201.7.3:41000", map[string]string{
		"X-Forwarded-For": "198.51.100.20", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "events.example",
	})
	if m["client_ip"] != "198.51.100.20" || m["remote_addr"] != "10.201.7.3" || m["trusted_proxy"] != true ||
		m["x_forwarded_proto"] != "https" || m["x_forwarded_host"] != "events.example" {
		t.Fatalf("through a trusted proxy: %v", m)
	}
	// Straight from a client that claims another address: its own address counts.
	m = clientAnswer(t, s, "203.0.113.9:5000", map[string]string{"X-Forwarded-For": "198.51.100.20"})
	if m["client_ip"] != "203.0.113.9" || m["trusted_proxy"] != false {
		t.Fatalf("from an untrusted peer: %v", m)
	}
	// A trusted proxy that sent no header: the proxy itself.
	m = clientAnswer(t, s, "10.201.7.3:41000", nil)
	if m["client_ip"] != "10.201.7.3" {
		t.Fatalf("no header: %v", m)
	}
}

func TestClientIPWithoutTrustedProxiesIsThePeer(t *testing.T) {
	s := newTestServer(t, nil)
	m := clientAnswer(t, s, "10.201.7.3:41000", map[string]string{"X-Forwarded-For": "198.51.100.20"})
	if m["client_ip"] != "10.201.7.3" || m["trusted_proxy"] != false {
		t.Fatalf("no trusted proxies: %v", m)
	}
}
