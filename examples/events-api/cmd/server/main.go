// Command server is the events-api HTTP server, the reference app that
// shipyard deploys. See cmd/server/cmd for the subcommands.
package main

import "example.com/events-api/cmd/server/cmd"

func main() {
	cmd.Execute()
}
