// Command reaper runs sandrun's reaper; `reaper --help` lists its flags and
// environment variables. It is `sandrun reaper` in a binary of its own, for its
// container image, which links only what it runs (none of the local cloud,
// the bench or the people's commands).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sandrun/sandrun/internal/programs"
	"github.com/sandrun/sandrun/internal/programs/control"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := programs.Main(ctx, programs.OSEnv(), "reaper", control.Reaper, os.Args[1:])
	stop()
	os.Exit(code)
}
