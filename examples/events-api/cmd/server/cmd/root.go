// Package cmd holds the server's subcommands and its build metadata.
package cmd

import (
	"fmt"
	"io"
	"os"
	"runtime"
)

// Build metadata, set at link time:
//
//	-ldflags "-X example.com/events-api/cmd/server/cmd.Version=1.2.3
//	          -X example.com/events-api/cmd/server/cmd.GitCommit=abc1234
//	          -X example.com/events-api/cmd/server/cmd.BuildDate=2026-01-02T03:04:05Z"
var (
	Version   = "dev"
	GitCommit = "unknown"
	BuildDate = "unknown"
)

const usage = `events-api server — reference Go + PostgreSQL app for shipyard

Usage:
  server [serve]              run the HTTP server (the default); configured by environment
  server version              print build metadata
  server healthcheck [flags]  GET /health on this host; exit 0 if HTTP 200 (healthy or
                              degraded), 1 otherwise (for a Docker HEALTHCHECK in a
                              shell-less image)
      --url URL               default http://127.0.0.1:$PORT/health (PORT default 8080)
      --timeout DURATION      default 5s
`

// Execute runs the subcommand named in os.Args and exits with its status.
func Execute() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	sub := "serve"
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "serve":
		if len(args) > 0 {
			fmt.Fprintf(stderr, "serve takes no arguments (configure it with environment variables)\n\n%s", usage)
			return 2
		}
		return serve(stderr)
	case "version", "--version", "-version":
		printVersion(stdout)
		return 0
	case "healthcheck":
		return healthcheck(args, stdout, stderr)
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", sub, usage)
	return 2
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "events-api server\nVersion:    %s\nGit commit: %s\nBuild date: %s\nGo version: %s\nPlatform:   %s/%s\n",
		Version, GitCommit, BuildDate, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
