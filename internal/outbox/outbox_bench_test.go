package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sandrun/sandrun/api"
	"github.com/sandrun/sandrun/emulator"
	"github.com/sandrun/sandrun/emulator/emulatortest"
	"github.com/sandrun/sandrun/internal/gcp"
	"github.com/sandrun/sandrun/internal/procfs"
)

// BenchmarkPublishCompletion publishes completions one after another, as a
// host does, to the local cloud's Pub/Sub in this process: with the
// publisher's settings (at-once) and with the batching it had before, a
// bundle sent after a 1 ms delay (batched-1ms). Each op is one publish
// awaited; cpu-ms counts this process, the local Pub/Sub included.
func BenchmarkPublishCompletion(b *testing.B) {
	suite := emulatortest.Start(b, emulator.Config{})
	ctx := context.Background()
	clients, err := gcp.Connect(ctx, suite.Project, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { clients.Close() })
	names := DefaultNames()
	if err := Provision(ctx, clients.PubSub, names); err != nil {
		b.Fatal(err)
	}
	data, err := json.Marshal(api.Completion{RequestID: "r", SessionID: "s", Status: api.StatusOK})
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name    string
		batched bool
	}{{"at-once", false}, {"batched-1ms", true}} {
		b.Run(v.name, func(b *testing.B) {
			q := NewPublisher(clients.PubSub, names, slog.New(slog.NewTextHandler(io.Discard, nil)))
			defer q.Stop()
			if v.batched {
				q.completions.PublishSettings.CountThreshold = 100
				q.completions.PublishSettings.DelayThreshold = time.Millisecond
			}
			if err := q.PublishCompletion(ctx, data, ""); err != nil { // the stream opens
				b.Fatal(err)
			}
			before := procfs.OwnCPU(false)
			for i := 0; b.Loop(); i++ {
				if err := q.PublishCompletion(ctx, data, fmt.Sprint(i)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(procfs.OwnCPU(false)-before)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		})
	}
}
