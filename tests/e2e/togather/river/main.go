// Command river is the test world's stand-in for River's CLI (github.com/riverqueue/river/cmd/river),
// whose module the Go module proxy reachable here does not serve. It does what `river migrate-up`
// does, with River's own migrator (rivermigrate, the same code the CLI calls) at the version the
// Togather server uses, and reads the connection the way the CLI does: --database-url, or else
// libpq's PG* variables.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "river:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 || args[0] != "migrate-up" {
		return fmt.Errorf("usage: river migrate-up [--database-url URL]")
	}
	flags := flag.NewFlagSet("migrate-up", flag.ContinueOnError)
	url := flags.String("database-url", "", "database URL (default: libpq's PG* variables)")
	if err := flags.Parse(args[1:]); err != nil {
		return err
	}
	if *url == "" && os.Getenv("PGDATABASE") == "" {
		return fmt.Errorf("either --database-url or libpq's PG* variables (at least PGDATABASE) must be set")
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, *url) // an empty URL: pgx reads PG* like libpq
	if err != nil {
		return err
	}
	defer pool.Close()
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return err
	}
	result, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return err
	}
	if len(result.Versions) == 0 {
		fmt.Println("no migrations to apply")
	}
	for _, version := range result.Versions {
		fmt.Printf("applied migration %03d [%s] in %s\n", version.Version, version.Name, version.Duration)
	}
	return nil
}
