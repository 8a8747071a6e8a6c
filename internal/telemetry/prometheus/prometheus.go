// Package prometheus serves a program's metrics in Prometheus's text
// format: the dispatcher's and the reaper's /metrics, and `sandrun dev`'s.
// It is a package of its own so that the programs that serve no metrics
// (the executor) link none of Prometheus.
package prometheus

import (
	"fmt"
	"net/http"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// New returns a metrics reader for export.Options.Readers and the
// handler that serves what it reads, with the Go runtime's and the
// process's own figures (goroutines, memory, open files), for a soak to
// watch.
func New() (sdkmetric.Reader, http.Handler, error) {
	reg := promclient.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("Prometheus exporter: %w", err)
	}
	return exp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}
