package server

import (
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

// newMetrics builds a private registry (so tests can create many servers)
// with the Go and process collectors plus the application metrics, named as
// shipyard's dashboards and alert rules read them. pool may be nil (no
// database metrics then).
func newMetrics(b Build, pool *pgxpool.Pool, started time.Time) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests served, by method, route and status code.",
		}, []string{"method", "path", "status"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight",
			Help: "HTTP requests being served now.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "HTTP request latency, by method and route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "path"}),
	}
	versionInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "app_version_info",
		Help: "Always 1; labels identify the running build.",
	}, []string{"version", "commit", "build_date"})
	versionInfo.WithLabelValues(b.Version, b.GitCommit, b.BuildDate).Set(1)
	uptime := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "app_uptime_seconds",
		Help: "Seconds since the process started.",
	}, func() float64 { return time.Since(started).Seconds() })
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.duration, m.inFlight, versionInfo, uptime,
	)
	if pool != nil {
		m.reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "db_connections_open",
				Help: "Database connections the pool holds open.",
			}, func() float64 { return float64(pool.Stat().TotalConns()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "db_connections_in_use",
				Help: "Database connections in use by a request now.",
			}, func() float64 { return float64(pool.Stat().AcquiredConns()) }),
		)
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
