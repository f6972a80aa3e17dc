package server

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// ClientIP is the address a request is attributed to (for rate limits, audit
// logs): the peer's own address, unless the peer is a trusted proxy
// (TRUSTED_PROXY_CIDRS), in which case the first X-Forwarded-For entry, as
// Togather's rate limiter reads it. A client that sends X-Forwarded-For itself
// is not a trusted proxy, so its header is ignored.
func (s *Server) ClientIP(r *http.Request) string {
	peer := r.RemoteAddr
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	if !s.trusted(peer) {
		return peer
	}
	if forwarded := r.Header.Get("X-Forwarded-For"); forwarded != "" {
		if first := strings.TrimSpace(strings.Split(forwarded, ",")[0]); first != "" {
			return first
		}
	}
	return peer
}

func (s *Server) trusted(peer string) bool {
	addr, err := netip.ParseAddr(peer)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	return slices.ContainsFunc(s.cfg.TrustedProxies, func(p netip.Prefix) bool { return p.Contains(addr) })
}

// handleClient answers what the server knows of the request's client: the
// address it attributes the request to, the peer that connected, whether that
// peer is a trusted proxy, and the forwarding headers as received.
func (s *Server) handleClient(w http.ResponseWriter, r *http.Request) {
	peer := r.RemoteAddr
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"client_ip":         s.ClientIP(r),
		"remote_addr":       peer,
		"trusted_proxy":     s.trusted(peer),
		"x_forwarded_for":   r.Header.Values("X-Forwarded-For"),
		"x_forwarded_proto": r.Header.Get("X-Forwarded-Proto"),
		"x_forwarded_host":  r.Header.Get("X-Forwarded-Host"),
		"x_real_ip":         r.Header.Get("X-Real-IP"),
		"forwarded":         r.Header.Get("Forwarded"),
	})
}
