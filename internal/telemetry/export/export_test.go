package export

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"cloud.google.com/go/monitoring/apiv3/v2/monitoringpb"
	"cloud.google.com/go/trace/apiv2/tracepb"
	"go.opentelemetry.io/otel"
	otelmetric "go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/api/option"
	"google.golang.org/genproto/googleapis/api/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/sandrun/sandrun/internal/telemetry"
)

func TestExporters(t *testing.T) {
	tests := []struct {
		name            string
		env             map[string]string
		traces, metrics string
		err             string
	}{
		{"nothing set", nil, ExportNone, ExportNone, ""},
		{"OTLP endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4317"}, ExportOTLP, ExportOTLP, ""},
		{"OTLP traces only", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "localhost:4317"}, ExportOTLP, ExportNone, ""},
		{"otlp named without an endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, ExportNone, ExportNone, ""},
		{"OTLP turned off", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4317", "OTEL_METRICS_EXPORTER": "none"}, ExportOTLP, ExportNone, ""},
		{"Google", map[string]string{"OTEL_TRACES_EXPORTER": GoogleTraces, "OTEL_METRICS_EXPORTER": GoogleMetrics}, ExportGoogle, ExportGoogle, ""},
		{"Google over an OTLP endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4317", "OTEL_TRACES_EXPORTER": GoogleTraces}, ExportGoogle, ExportOTLP, ""},
		{"Google's names swapped", map[string]string{"OTEL_TRACES_EXPORTER": GoogleMetrics}, "", "", `OTEL_TRACES_EXPORTER="google_cloud_monitoring"`},
		{"misspelt", map[string]string{"OTEL_METRICS_EXPORTER": "google"}, "", "", `OTEL_METRICS_EXPORTER="google"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			traces, metrics, err := Exporters(func(k string) string { return tt.env[k] })
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one naming %s", err, tt.err)
				}
				return
			}
			if err != nil || traces != tt.traces || metrics != tt.metrics {
				t.Errorf("Exporters = %q, %q, %v; want %q, %q", traces, metrics, err, tt.traces, tt.metrics)
			}
		})
	}
}

// fakeGoogle is a Cloud Trace and Cloud Monitoring gRPC server that keeps
// what it is sent. It reproduces only what the exporters rely on: empty
// answers to writes, NotFound for a metric descriptor never created.
type fakeGoogle struct {
	tracepb.UnimplementedTraceServiceServer
	monitoringpb.UnimplementedMetricServiceServer

	mu          sync.Mutex
	spans       []*tracepb.Span
	descriptors map[string]*metric.MetricDescriptor
	series      []*monitoringpb.TimeSeries
}

func (f *fakeGoogle) BatchWriteSpans(_ context.Context, req *tracepb.BatchWriteSpansRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.spans = append(f.spans, req.Spans...)
	return &emptypb.Empty{}, nil
}

func (f *fakeGoogle) GetMetricDescriptor(_ context.Context, req *monitoringpb.GetMetricDescriptorRequest) (*metric.MetricDescriptor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.descriptors {
		if strings.HasSuffix(req.Name, "/metricDescriptors/"+d.Type) {
			return d, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "no metric descriptor %s", req.Name)
}

func (f *fakeGoogle) CreateMetricDescriptor(_ context.Context, req *monitoringpb.CreateMetricDescriptorRequest) (*metric.MetricDescriptor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.descriptors[req.Name+" "+req.MetricDescriptor.Type] = req.MetricDescriptor
	return req.MetricDescriptor, nil
}

func (f *fakeGoogle) CreateTimeSeries(_ context.Context, req *monitoringpb.CreateTimeSeriesRequest) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ts := range req.TimeSeries {
		ts.Metric.Labels["request_name"] = req.Name
	}
	f.series = append(f.series, req.TimeSeries...)
	return &emptypb.Empty{}, nil
}

// startFakeGoogle serves a fakeGoogle and returns it with the client
// options that point Google's exporters at it.
func startFakeGoogle(t *testing.T) (*fakeGoogle, []option.ClientOption) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeGoogle{descriptors: map[string]*metric.MetricDescriptor{}}
	srv := grpc.NewServer()
	tracepb.RegisterTraceServiceServer(srv, f)
	monitoringpb.RegisterMetricServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return f, []option.ClientOption{
		option.WithEndpoint(lis.Addr().String()),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
	}
}

// record makes one span and adds one to a counter, with whatever providers
// are installed, and returns the span's trace id.
func record(ctx context.Context, t *testing.T) string {
	t.Helper()
	_, span := telemetry.Start(ctx, "sandrun.test", trace.SpanKindInternal)
	span.End()
	c, err := otel.Meter("test").Int64Counter("sandrun.test.count", otelmetric.WithUnit("{request}"))
	if err != nil {
		t.Fatal(err)
	}
	c.Add(ctx, 1)
	return span.SpanContext().TraceID().String()
}

// unsetOTel clears the OTEL_* settings the test's environment may carry.
func unsetOTel(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"} {
		t.Setenv(k, "")
	}
}

// TestGoogleExport: with the two settings, a span reaches Cloud Trace as
// the project's and a counter reaches Cloud Monitoring as a workload
// metric, its descriptor created first; the exporters are Google's own,
// run against a fake of the two gRPC services.
func TestGoogleExport(t *testing.T) {
	unsetOTel(t)
	t.Setenv("OTEL_TRACES_EXPORTER", GoogleTraces)
	t.Setenv("OTEL_METRICS_EXPORTER", GoogleMetrics)
	fake, opts := startFakeGoogle(t)
	ctx := context.Background()
	tel, err := Setup(ctx, Options{Service: "sandrun-test", Project: "p1", GoogleClientOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	traceID := record(ctx, t)
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.spans) != 1 {
		t.Fatalf("Cloud Trace got %d spans, want 1", len(fake.spans))
	}
	if s := fake.spans[0]; !strings.HasPrefix(s.Name, "projects/p1/traces/"+traceID+"/spans/") || s.DisplayName.GetValue() != "sandrun.test" {
		t.Errorf("span %s %q; want projects/p1/traces/%s/spans/... named sandrun.test", s.Name, s.DisplayName.GetValue(), traceID)
	}
	const want = "workload.googleapis.com/sandrun.test.count"
	if d := fake.descriptors["projects/p1 "+want]; d == nil || d.Unit != "{request}" {
		t.Errorf("metric descriptors %v; want %s in projects/p1 with unit {request}", fake.descriptors, want)
	}
	var found bool
	for _, ts := range fake.series {
		// docs/deploy.md tells operators to look for generic_task, job
		// the program's service name.
		if ts.Metric.Type == want && ts.Metric.Labels["request_name"] == "projects/p1" && ts.Points[0].Value.GetInt64Value() == 1 &&
			ts.Resource.Type == "generic_task" && ts.Resource.Labels["job"] == "sandrun-test" {
			found = true
		}
	}
	if !found {
		t.Errorf("Cloud Monitoring got no point 1 of %s in projects/p1: %v", want, fake.series)
	}
}

// TestGoogleNotUsedUnlessSet: with the OTEL_* settings unset, nothing
// reaches Google even when Setup is told where Google is.
func TestGoogleNotUsedUnlessSet(t *testing.T) {
	unsetOTel(t)
	fake, opts := startFakeGoogle(t)
	ctx := context.Background()
	tel, err := Setup(ctx, Options{Service: "sandrun-test", Project: "p1", GoogleClientOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	if len(tel.shutdown) != 0 {
		t.Errorf("Setup installed %d providers; want none", len(tel.shutdown))
	}
	record(ctx, t)
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.spans) != 0 || len(fake.series) != 0 || len(fake.descriptors) != 0 {
		t.Errorf("Google got %d spans, %d series, %d descriptors; want none", len(fake.spans), len(fake.series), len(fake.descriptors))
	}
}
