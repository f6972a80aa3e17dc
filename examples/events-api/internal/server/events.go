package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	listLimit      = 20
	maxQueryLen    = 200
	maxTitleLen    = 300
	maxDescLen     = 10000
	maxBodyBytes   = 64 << 10
	embeddingDims  = 8
	requestTimeout = 5 * time.Second
)

// eventSummary is one element of GET /api/v1/events.
type eventSummary struct {
	ID       string    `json:"id"`
	Title    string    `json:"title"`
	StartsAt time.Time `json:"starts_at"`
	Lon      *float64  `json:"lon"`
	Lat      *float64  `json:"lat"`
}

// createEventRequest is the body of POST /api/v1/events.
type createEventRequest struct {
	Title       string     `json:"title"`
	Description string     `json:"description"`
	StartsAt    *time.Time `json:"starts_at"`
	Lon         *float64   `json:"lon"`
	Lat         *float64   `json:"lat"`
	Embedding   []float64  `json:"embedding"`
}

// createdEvent is the 201 response of POST /api/v1/events.
type createdEvent struct {
	ID          string    `json:"id"`
	Title       string    `json:"title"`
	Description string    `json:"description"`
	StartsAt    time.Time `json:"starts_at"`
	Lon         *float64  `json:"lon"`
	Lat         *float64  `json:"lat"`
	Embedding   []float64 `json:"embedding"`
	CreatedAt   time.Time `json:"created_at"`
}

// handleListEvents serves GET /api/v1/events[?q=text]: up to 20 events; with
// q, matched by trigram similarity or substring (both use the GIN index
// events_title_trgm) and ordered by similarity.
func (s *Server) handleListEvents(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if utf8.RuneCountInString(q) > maxQueryLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("q must be at most %d characters", maxQueryLen))
		return
	}
	ctx, cancel, ok := s.databaseRequest(w, r)
	if !ok {
		return
	}
	defer cancel()

	const cols = `id::text, title, starts_at, ST_X(location), ST_Y(location)`
	sql := `SELECT ` + cols + ` FROM events ORDER BY starts_at, id LIMIT $1`
	args := []any{listLimit}
	if q != "" {
		sql = `SELECT ` + cols + ` FROM events
			WHERE title % $2 OR title ILIKE '%' || $3 || '%'
			ORDER BY similarity(title, $2) DESC, starts_at, id LIMIT $1`
		args = append(args, q, escapeLike(q))
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		s.dbError(w, "list events", err)
		return
	}
	defer rows.Close()
	out := make([]eventSummary, 0, listLimit)
	for rows.Next() {
		var e eventSummary
		if err := rows.Scan(&e.ID, &e.Title, &e.StartsAt, &e.Lon, &e.Lat); err != nil {
			s.dbError(w, "scan event", err)
			return
		}
		e.StartsAt = e.StartsAt.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		s.dbError(w, "list events", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// databaseRequest is the context of a request that queries the database, bounded by
// requestTimeout; without a database it answers 503 and ok is false.
func (s *Server) databaseRequest(w http.ResponseWriter, r *http.Request) (ctx context.Context, cancel context.CancelFunc, ok bool) {
	if s.pool == nil {
		writeError(w, http.StatusServiceUnavailable, "database unavailable")
		return nil, nil, false
	}
	ctx, cancel = context.WithTimeout(r.Context(), requestTimeout)
	return ctx, cancel, true
}

// handleCreateEvent serves POST /api/v1/events.
func (s *Server) handleCreateEvent(w http.ResponseWriter, r *http.Request) {
	req, problems, tooLarge := decodeCreateEvent(w, r)
	if tooLarge {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", maxBodyBytes))
		return
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "invalid event", problems...)
		return
	}
	ctx, cancel, ok := s.databaseRequest(w, r)
	if !ok {
		return
	}
	defer cancel()

	var embedding *string
	if req.Embedding != nil {
		parts := make([]string, len(req.Embedding))
		for i, f := range req.Embedding {
			parts[i] = strconv.FormatFloat(f, 'g', -1, 32)
		}
		v := "[" + strings.Join(parts, ",") + "]"
		embedding = &v
	}
	out := createdEvent{
		Title: req.Title, Description: req.Description, StartsAt: req.StartsAt.UTC(),
		Lon: req.Lon, Lat: req.Lat, Embedding: req.Embedding,
	}
	err := s.pool.QueryRow(ctx, `
		INSERT INTO events (title, description, starts_at, location, embedding)
		VALUES ($1, $2, $3,
			CASE WHEN $4::float8 IS NULL THEN NULL
			     ELSE ST_SetSRID(ST_MakePoint($4::float8, $5::float8), 4326) END,
			$6::text::vector)
		RETURNING id::text, created_at`,
		req.Title, req.Description, *req.StartsAt, req.Lon, req.Lat, embedding,
	).Scan(&out.ID, &out.CreatedAt)
	if err != nil {
		s.dbError(w, "insert event", err)
		return
	}
	out.CreatedAt = out.CreatedAt.UTC()
	writeJSON(w, http.StatusCreated, out)
}

// decodeCreateEvent parses and validates the body; it returns every problem
// found so the client can fix them all at once.
func decodeCreateEvent(w http.ResponseWriter, r *http.Request) (req createEventRequest, problems []string, tooLarge bool) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, nil, true
		}
		return req, []string{"body must be one JSON object {title, description, starts_at, lon, lat, embedding}: " + jsonErr(err)}, false
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return req, []string{"body must contain exactly one JSON object"}, false
	}

	req.Title = strings.TrimSpace(req.Title)
	switch n := utf8.RuneCountInString(req.Title); {
	case n == 0:
		problems = append(problems, "title is required")
	case n > maxTitleLen:
		problems = append(problems, fmt.Sprintf("title must be at most %d characters", maxTitleLen))
	}
	if utf8.RuneCountInString(req.Description) > maxDescLen {
		problems = append(problems, fmt.Sprintf("description must be at most %d characters", maxDescLen))
	}
	if req.StartsAt == nil {
		problems = append(problems, "starts_at is required (RFC 3339, e.g. 2026-05-01T19:00:00Z)")
	}
	switch {
	case (req.Lon == nil) != (req.Lat == nil):
		problems = append(problems, "lon and lat must be given together")
	case req.Lon != nil:
		if *req.Lon < -180 || *req.Lon > 180 {
			problems = append(problems, "lon must be between -180 and 180")
		}
		if *req.Lat < -90 || *req.Lat > 90 {
			problems = append(problems, "lat must be between -90 and 90")
		}
	}
	if req.Embedding != nil {
		if len(req.Embedding) != embeddingDims {
			problems = append(problems, fmt.Sprintf("embedding must have exactly %d numbers (got %d)", embeddingDims, len(req.Embedding)))
		}
		for _, f := range req.Embedding {
			if math.IsInf(float64(float32(f)), 0) {
				problems = append(problems, "embedding values must fit in a 32-bit float")
				break
			}
		}
	}
	return req, problems, false
}

func jsonErr(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "empty body"
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type (want %s)", te.Field, te.Type)
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return "starts_at must be RFC 3339, e.g. 2026-05-01T19:00:00Z"
	}
	return err.Error()
}

func (s *Server) dbError(w http.ResponseWriter, op string, err error) {
	s.log.Error("database error", "op", op, "err", err)
	writeError(w, http.StatusInternalServerError, "database error")
}

// escapeLike escapes the ILIKE wildcards so q matches literally.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}
