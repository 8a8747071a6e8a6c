// Command sandrun is the command line for people: it starts sandrun on the
// local cloud and talks to it as a backend would. Run `sandrun --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sandrun/sandrun/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, cli.OSEnv(), os.Args[1:])
	stop()
	os.Exit(code)
}
