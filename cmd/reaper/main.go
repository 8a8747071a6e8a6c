// Command reaper runs sandrun's reaper; `reaper --help` lists its flags and
// environment variables. It is `sandrun reaper` in a binary of its own, for its
// container image.
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
	code := cli.Main(ctx, cli.OSEnv(), append([]string{"reaper"}, os.Args[1:]...))
	stop()
	os.Exit(code)
}
