package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"example.com/events-api/internal/config"
	"example.com/events-api/internal/redact"
	"example.com/events-api/internal/server"
)

// serve runs the HTTP server until SIGTERM/SIGINT and returns the exit status:
// 0 after a clean graceful shutdown, 1 on bad configuration, on a failure to
// listen, or when in-flight requests outlive SHUTDOWN_TIMEOUT.
func serve(stderr io.Writer) int {
	started := time.Now()
	log := slog.New(redact.NewHandler(slog.NewJSONHandler(stderr, nil)))
	slog.SetDefault(log)

	// A .env file is read only through ENV_FILE, except that in development a
	// ./.env is picked up if present (Togather's behaviour). Real environment
	// variables always win over the file.
	if f := os.Getenv("ENV_FILE"); f != "" {
		if err := config.LoadEnvFile(f); err != nil {
			log.Error("config error: " + err.Error())
			return 1
		}
	} else if e := os.Getenv("ENVIRONMENT"); e == "" || e == "development" {
		if _, err := os.Stat(".env"); err == nil {
			if err := config.LoadEnvFile(".env"); err != nil {
				log.Error("config error: " + err.Error())
				return 1
			}
		}
	}

	if config.Truthy(os.Getenv("TEST_FAIL_STARTUP")) {
		log.Error("TEST_FAIL_STARTUP set: refusing to start")
		return 1
	}

	cfg, problems := config.Load(os.Getenv)
	if len(problems) > 0 {
		for _, p := range problems {
			log.Error("config error: " + p.Error())
		}
		log.Error(fmt.Sprintf("refusing to start: %d configuration problem(s)", len(problems)))
		return 1
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	if d := cfg.TestStartupDelay; d > 0 {
		log.Warn("TEST_STARTUP_DELAY set: sleeping before listening", "delay", d.String())
		select {
		case <-time.After(d):
		case sig := <-sigs:
			log.Info("signal received during startup delay: exiting", "signal", sig.String())
			return 0
		}
	}

	// pgxpool connects lazily: the server starts (and /healthz answers) even
	// while the database is down; /health then reports database "fail".
	poolCfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		log.Error("config error: DATABASE_URL cannot be used: " + err.Error())
		return 1
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), poolCfg)
	if err != nil {
		log.Error("cannot create database pool", "err", err)
		return 1
	}

	app := server.New(cfg, server.Build{Version: Version, GitCommit: GitCommit, BuildDate: BuildDate}, pool, log, started)
	srv := &http.Server{
		Handler:           app.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	addr := net.JoinHostPort("0.0.0.0", strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("cannot listen", "addr", addr, "err", err)
		pool.Close()
		return 1
	}
	log.Info("events-api listening",
		"version", Version, "git_commit", GitCommit, "build_date", BuildDate,
		"slot", cfg.Slot, "port", cfg.Port, "environment", cfg.Environment,
		"database", redact.URL(cfg.DatabaseURL), "contexts_dir", cfg.ContextsDir,
		"shutdown_timeout", cfg.ShutdownTimeout.String())
	if cfg.TestUnhealthy || cfg.TestUnhealthyAfter > 0 {
		log.Warn("test-only switch set: this process will report unhealthy on purpose",
			"TEST_UNHEALTHY", cfg.TestUnhealthy, "TEST_UNHEALTHY_AFTER", cfg.TestUnhealthyAfter.String())
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		// Serve only returns early on a listener failure.
		log.Error("http server stopped unexpectedly", "err", err)
		pool.Close()
		return 1
	case sig := <-sigs:
		// A second signal gets the default action (immediate termination).
		signal.Stop(sigs)
		log.Info("shutdown signal received: draining", "signal", sig.String(), "timeout", cfg.ShutdownTimeout.String())
	}

	app.SetShuttingDown()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	status := 0
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("graceful shutdown timed out: closing remaining connections", "timeout", cfg.ShutdownTimeout.String(), "err", err)
		_ = srv.Close()
		status = 1
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("http server error", "err", err)
	}
	closePool(pool, log)
	log.Info("server stopped", "exit_code", status, "uptime", time.Since(started).Round(time.Millisecond).String())
	return status
}

// closePool closes the pool, waiting at most 5 s for connections still held
// by handlers that were cut off by a shutdown timeout.
func closePool(pool *pgxpool.Pool, log *slog.Logger) {
	done := make(chan struct{})
	go func() { pool.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		log.Warn("database pool did not close within 5s")
	}
}
