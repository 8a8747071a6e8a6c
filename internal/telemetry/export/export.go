// Package export sets up a program's traces and metrics: it installs the
// global tracer and meter providers that package telemetry's spans and
// every package's instruments follow, with the exporters the environment
// asks for.
//
// Traces and metrics are exported over OTLP only when the standard
// OTEL_EXPORTER_OTLP_ENDPOINT (or its per-signal variants) is set, or to
// Cloud Trace and Cloud Monitoring with Google's exporters when
// OTEL_TRACES_EXPORTER=google_cloud_trace and
// OTEL_METRICS_EXPORTER=google_cloud_monitoring say so (see Exporters);
// otherwise the global providers stay the no-op ones, and instrumentation
// costs nothing. A program that serves a Prometheus endpoint (the
// dispatcher and the reaper) passes its metrics reader (package
// telemetry/prometheus), which reads either way.
//
// It is a package of its own so that the public client, which makes spans
// with package telemetry, links none of the exporters.
package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	mexporter "github.com/GoogleCloudPlatform/opentelemetry-operations-go/exporter/metric"
	texporter "github.com/GoogleCloudPlatform/opentelemetry-operations-go/exporter/trace"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"google.golang.org/api/option"
)

// Options say what Setup sets up.
type Options struct {
	// Service names the program in its resource (service.name).
	Service string
	// Readers read the program's metrics whatever the environment says
	// (a Prometheus endpoint's).
	Readers []sdkmetric.Reader
	// Project is the Google Cloud project the Google exporters write to.
	Project string
	// GoogleClientOptions are given to the Google exporters' clients: the
	// executor's host token, a test's endpoint. None: Application Default
	// Credentials.
	GoogleClientOptions []option.ClientOption
}

// Telemetry is what Setup set up.
type Telemetry struct {
	shutdown []func(context.Context) error
}

// The exporters Exporters chooses between.
const (
	ExportNone   = ""
	ExportOTLP   = "otlp"
	ExportGoogle = "google"
)

// The values of OTEL_TRACES_EXPORTER and OTEL_METRICS_EXPORTER that select
// Google's exporters. The OpenTelemetry specification leaves names beyond
// otlp, console and none to each distribution; these are the ones Google's
// exporters for other languages answer to (Java's auto-configuration, for
// one), so an operator who knows those knows these.
const (
	GoogleTraces  = "google_cloud_trace"
	GoogleMetrics = "google_cloud_monitoring"
)

// Exporters says where the environment asks traces and metrics to go:
// ExportGoogle when OTEL_TRACES_EXPORTER (OTEL_METRICS_EXPORTER) names
// Google's exporter; ExportOTLP when it is unset or otlp and an OTLP
// endpoint is set; otherwise ExportNone. Any other value is an error, so
// that a misspelt setting does not silently export nothing.
func Exporters(getenv func(string) string) (traces, metrics string, err error) {
	any := getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
	pick := func(setting, google, endpoint string) (string, error) {
		switch v := getenv(setting); v {
		case google:
			return ExportGoogle, nil
		case "", "otlp":
			if any || getenv(endpoint) != "" {
				return ExportOTLP, nil
			}
			return ExportNone, nil
		case "none":
			return ExportNone, nil
		default:
			return "", fmt.Errorf("%s=%q: sandrun exports with otlp, %s or none", setting, v, google)
		}
	}
	if traces, err = pick("OTEL_TRACES_EXPORTER", GoogleTraces, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); err != nil {
		return "", "", err
	}
	if metrics, err = pick("OTEL_METRICS_EXPORTER", GoogleMetrics, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"); err != nil {
		return "", "", err
	}
	return traces, metrics, nil
}

// Setup installs the global tracer and meter providers and the W3C trace
// context propagator. Shutdown flushes and stops them.
func Setup(ctx context.Context, opts Options) (*Telemetry, error) {
	t := &Telemetry{}
	otel.SetTextMapPropagator(propagation.TraceContext{})
	// Each process is an instance of its own, so that the cumulative
	// series of many hosts add up rather than overwrite each other.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(opts.Service), semconv.ServiceInstanceID(uuid.NewString())))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	traces, metrics, err := Exporters(os.Getenv)
	if err != nil {
		return nil, err
	}
	if traces != ExportNone {
		exp, err := traceExporter(ctx, traces, opts)
		if err != nil {
			return nil, err
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)), sdktrace.WithResource(res))
		otel.SetTracerProvider(tp)
		t.shutdown = append(t.shutdown, tp.Shutdown)
	}
	var readers []sdkmetric.Option
	if metrics != ExportNone {
		exp, err := metricExporter(ctx, metrics, opts)
		if err != nil {
			return nil, err
		}
		readers = append(readers, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	for _, r := range opts.Readers {
		readers = append(readers, sdkmetric.WithReader(r))
	}
	if len(readers) > 0 {
		mp := sdkmetric.NewMeterProvider(append(readers, sdkmetric.WithResource(res))...)
		otel.SetMeterProvider(mp)
		t.shutdown = append(t.shutdown, mp.Shutdown)
	}
	return t, nil
}

// traceExporter makes the span exporter that kind names.
func traceExporter(ctx context.Context, kind string, opts Options) (sdktrace.SpanExporter, error) {
	if kind == ExportGoogle {
		exp, err := texporter.New(texporter.WithProjectID(opts.Project), texporter.WithTraceClientOptions(googleClientOptions(opts)))
		if err != nil {
			return nil, fmt.Errorf("Cloud Trace exporter: %w", err)
		}
		return exp, nil
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	return exp, nil
}

// googleClientOptions are the options of the Google exporters' clients.
// Their own calls are not traced: otherwise each export would make spans
// of its RPCs, and the trace exporter's spans would feed themselves.
func googleClientOptions(opts Options) []option.ClientOption {
	return append([]option.ClientOption{option.WithTelemetryDisabled()}, opts.GoogleClientOptions...)
}

// metricExporter makes the metric exporter that kind names. Google's
// writes each instrument as workload.googleapis.com/NAME, first creating
// its metric descriptor (with the instrument's unit and description) where
// Get says there is none.
func metricExporter(ctx context.Context, kind string, opts Options) (sdkmetric.Exporter, error) {
	if kind == ExportGoogle {
		exp, err := mexporter.New(mexporter.WithProjectID(opts.Project), mexporter.WithMonitoringClientOptions(googleClientOptions(opts)...))
		if err != nil {
			return nil, fmt.Errorf("Cloud Monitoring exporter: %w", err)
		}
		return exp, nil
	}
	exp, err := otlpmetricgrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("OTLP metric exporter: %w", err)
	}
	return exp, nil
}

// Shutdown flushes what is buffered and stops the providers Setup
// installed.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, t.shutdown[i](ctx))
	}
	return errors.Join(errs...)
}
