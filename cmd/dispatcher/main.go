// Command dispatcher runs sandrun's dispatcher; `dispatcher --help` lists its flags and
// environment variables. It is `sandrun dispatcher` in a binary of its own, for its
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
	code := cli.Main(ctx, cli.OSEnv(), append([]string{"dispatcher"}, os.Args[1:]...))
	stop()
	os.Exit(code)
}
