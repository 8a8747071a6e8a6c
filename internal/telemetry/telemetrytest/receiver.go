// Package telemetrytest is an OTLP receiver for tests: it collects the
// spans and metrics that sandrun's programs export, from any process, so a
// test can assert a whole trace across the dispatcher and its hosts.
package telemetrytest

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	collmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	colltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// Span is a received span, with the service that sent it.
type Span struct {
	Service      string
	Name         string
	TraceID      string
	SpanID       string
	ParentSpanID string
	Attributes   map[string]string
}

// Receiver serves OTLP over gRPC on a loopback port.
type Receiver struct {
	// Endpoint is what OTEL_EXPORTER_OTLP_ENDPOINT should be.
	Endpoint string

	mu      sync.Mutex
	spans   []Span
	metrics []*metricspb.ResourceMetrics
	changed chan struct{}
}

// Start serves a receiver until the test ends.
func Start(t testing.TB) *Receiver {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{Endpoint: "http://" + l.Addr().String(), changed: make(chan struct{})}
	g := grpc.NewServer()
	colltrace.RegisterTraceServiceServer(g, traceService{r: r})
	collmetrics.RegisterMetricsServiceServer(g, metricsService{r: r})
	done := make(chan struct{})
	go func() { defer close(done); g.Serve(l) }()
	t.Cleanup(func() { g.Stop(); <-done })
	return r
}

type traceService struct {
	colltrace.UnimplementedTraceServiceServer
	r *Receiver
}

// Export receives spans.
func (s traceService) Export(ctx context.Context, req *colltrace.ExportTraceServiceRequest) (*colltrace.ExportTraceServiceResponse, error) {
	r := s.r
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := resourceAttr(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, convert(service, s))
			}
		}
	}
	r.notifyLocked()
	return &colltrace.ExportTraceServiceResponse{}, nil
}

func convert(service string, s *tracepb.Span) Span {
	out := Span{Service: service, Name: s.GetName(), TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
		Attributes: map[string]string{}}
	if len(s.GetParentSpanId()) > 0 {
		out.ParentSpanID = hex.EncodeToString(s.GetParentSpanId())
	}
	for _, kv := range s.GetAttributes() {
		out.Attributes[kv.GetKey()] = value(kv.GetValue())
	}
	return out
}

type metricsService struct {
	collmetrics.UnimplementedMetricsServiceServer
	r *Receiver
}

// Export receives metrics.
func (s metricsService) Export(ctx context.Context, req *collmetrics.ExportMetricsServiceRequest) (*collmetrics.ExportMetricsServiceResponse, error) {
	r := s.r
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics = append(r.metrics, req.GetResourceMetrics()...)
	r.notifyLocked()
	return &collmetrics.ExportMetricsServiceResponse{}, nil
}

// Points returns the latest value of every series of the named metric
// (sums, gauges: the value; histograms: the count), per exporting process
// (its service.instance.id) and attribute set, added up across processes
// for each attribute set, keyed by its attributes ("k=v,k=v", sorted).
func (r *Receiver) Points(name string) map[string]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	latest := map[[2]string]float64{} // {instance, attributes} -> value
	for _, rm := range r.metrics {
		instance := resourceAttr(rm.GetResource().GetAttributes(), "service.instance.id")
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				if m.GetName() != name {
					continue
				}
				for _, p := range m.GetSum().GetDataPoints() {
					latest[[2]string{instance, attrs(p.GetAttributes())}] = number(p)
				}
				for _, p := range m.GetGauge().GetDataPoints() {
					latest[[2]string{instance, attrs(p.GetAttributes())}] = number(p)
				}
				for _, p := range m.GetHistogram().GetDataPoints() {
					latest[[2]string{instance, attrs(p.GetAttributes())}] = float64(p.GetCount())
				}
			}
		}
	}
	out := map[string]float64{}
	for k, v := range latest {
		out[k[1]] += v
	}
	return out
}

func number(p *metricspb.NumberDataPoint) float64 {
	if _, ok := p.GetValue().(*metricspb.NumberDataPoint_AsInt); ok {
		return float64(p.GetAsInt())
	}
	return p.GetAsDouble()
}

func attrs(kvs []*commonpb.KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, kv.GetKey()+"="+value(kv.GetValue()))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func value(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	}
	return v.String()
}

// Spans returns what was received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Changed is closed at the next export received.
func (r *Receiver) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *Receiver) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// resourceAttr returns the string value of a resource's attribute key.
func resourceAttr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}
