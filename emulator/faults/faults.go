// Package faults injects failures into the local cloud: for each service, a
// rate of a chosen gRPC or HTTP error and added latency, switched on and off
// while the services run. The reliability tests use it to prove that sandrun
// loses nothing when its dependencies misbehave.
//
// The package only decides and applies faults at the edge of a server (a gRPC
// interceptor or an HTTP middleware); it never changes what a service stores.
package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The services of the local cloud, as named in rules.
const (
	PubSub    = "pubsub"
	Storage   = "storage"
	Firestore = "firestore"
	CloudRun  = "cloudrun"
)

var services = []string{PubSub, Storage, Firestore, CloudRun}

// Rule is one fault: calls to Service (and Method, when set) fail with Code or
// HTTPStatus at Rate, and wait Latency first.
type Rule struct {
	// Service is one of pubsub, storage, firestore, cloudrun.
	Service string `json:"service"`
	// Method narrows the rule. For gRPC services it is a method name
	// ("Commit") or a full method ("/google.firestore.v1.Firestore/Commit").
	// For storage it is an HTTP method ("PUT") or a part of the URL path
	// ("/upload/"). Empty matches every call.
	Method string `json:"method,omitempty"`
	// Rate is the probability, from 0 to 1, that a matching call fails.
	Rate float64 `json:"rate,omitempty"`
	// Code names the gRPC status a failing gRPC call answers, as in
	// "ABORTED" (default UNAVAILABLE).
	Code string `json:"code,omitempty"`
	// HTTPStatus is the status a failing storage call answers (default 503).
	HTTPStatus int `json:"http_status,omitempty"`
	// Latency is added before every matching call, failing or not.
	Latency Duration `json:"latency,omitempty"`
	// Times caps how many errors the rule injects; 0 means no cap.
	Times int `json:"times,omitempty"`
	// MidStream makes a rule for a gRPC stream (Pub/Sub's StreamingPull,
	// Firestore's Listen) also end streams already open: each message the
	// server sends fails the stream at Rate, as Google's Pub/Sub ends a
	// StreamingPull with UNKNOWN or UNAVAILABLE.
	MidStream bool `json:"mid_stream,omitempty"`
}

// Duration is a time.Duration that reads and writes JSON as "250ms".
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string ("250ms") or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("duration must be a string like \"250ms\": %s", b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("parse duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Validate reports what is wrong with the rule, if anything.
func (r Rule) Validate() error {
	known := false
	for _, s := range services {
		known = known || r.Service == s
	}
	switch {
	case !known:
		return fmt.Errorf("fault rule: unknown service %q (want one of %s)", r.Service, strings.Join(services, ", "))
	case r.Rate < 0 || r.Rate > 1:
		return fmt.Errorf("fault rule: rate %v is outside 0..1", r.Rate)
	case r.Latency < 0:
		return fmt.Errorf("fault rule: negative latency %v", time.Duration(r.Latency))
	case r.Times < 0:
		return fmt.Errorf("fault rule: negative times %d", r.Times)
	case r.Code != "" && r.Service == Storage:
		return fmt.Errorf("fault rule: storage speaks HTTP; set http_status, not code")
	case r.HTTPStatus != 0 && r.Service != Storage:
		return fmt.Errorf("fault rule: %s speaks gRPC; set code, not http_status", r.Service)
	case r.HTTPStatus != 0 && (r.HTTPStatus < 400 || r.HTTPStatus > 599):
		return fmt.Errorf("fault rule: http_status %d is not an error status", r.HTTPStatus)
	case r.Rate == 0 && r.Latency == 0:
		return fmt.Errorf("fault rule: neither rate nor latency is set, so it would do nothing")
	case r.MidStream && (r.Service == Storage || r.Rate == 0):
		return fmt.Errorf("fault rule: mid_stream needs a gRPC service and a rate")
	}
	if _, err := r.grpcCode(); err != nil {
		return err
	}
	return nil
}

// grpcCode is the status code the rule injects into gRPC calls.
func (r Rule) grpcCode() (codes.Code, error) {
	if r.Code == "" {
		return codes.Unavailable, nil
	}
	var c codes.Code
	if err := c.UnmarshalJSON([]byte(`"` + strings.ToUpper(r.Code) + `"`)); err != nil || c == codes.OK {
		return 0, fmt.Errorf("fault rule: %q is not a gRPC error code (want one like ABORTED or UNAVAILABLE)", r.Code)
	}
	return c, nil
}

// RuleStats counts what one rule did.
type RuleStats struct {
	Rule     Rule  `json:"rule"`
	Matched  int64 `json:"matched"`
	Injected int64 `json:"injected"`
}

// Injector holds the active rules. The zero value is not usable; call New.
// It is safe for concurrent use.
type Injector struct {
	mu    sync.Mutex
	rules []*RuleStats
	// chance returns a number in [0, 1); tests of the injector replace it.
	chance func() float64
}

// New returns an injector with no rules: every call passes untouched.
func New() *Injector {
	return &Injector{chance: rand.Float64}
}

// Add activates a rule.
func (in *Injector) Add(r Rule) error {
	if err := r.Validate(); err != nil {
		return err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.rules = append(in.rules, &RuleStats{Rule: r})
	return nil
}

// Clear removes every rule of the service, or every rule when service is "".
func (in *Injector) Clear(service string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	kept := in.rules[:0]
	for _, r := range in.rules {
		if service != "" && r.Rule.Service != service {
			kept = append(kept, r)
		}
	}
	clear(in.rules[len(kept):])
	in.rules = kept
}

// Rules returns the active rules with what each has done so far.
func (in *Injector) Rules() []RuleStats {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]RuleStats, len(in.rules))
	for i, r := range in.rules {
		out[i] = *r
	}
	return out
}

// Decision is what happens to one call.
type Decision struct {
	Delay time.Duration
	// Fail is the rule whose error the call answers, or nil.
	Fail *Rule
}

// decide matches a call against the rules. Latency adds up across matching
// rules; the first rule whose dice roll fails the call decides the error.
func (in *Injector) decide(service string, matches func(method string) bool) Decision {
	return in.decideAt(service, matches, false)
}

// decideAt is decide for the opening of a call, or, when midStream, for a
// message of an open stream, which only MidStream rules may fail.
func (in *Injector) decideAt(service string, matches func(method string) bool, midStream bool) Decision {
	in.mu.Lock()
	defer in.mu.Unlock()
	var d Decision
	for _, r := range in.rules {
		if r.Rule.Service != service || (r.Rule.Method != "" && !matches(r.Rule.Method)) || (midStream && !r.Rule.MidStream) {
			continue
		}
		r.Matched++
		d.Delay += time.Duration(r.Rule.Latency)
		if d.Fail != nil || r.Rule.Rate == 0 || (r.Rule.Times > 0 && r.Injected >= int64(r.Rule.Times)) {
			continue
		}
		if in.chance() < r.Rule.Rate {
			r.Injected++
			rule := r.Rule
			d.Fail = &rule
		}
	}
	return d
}

// wait sleeps for the decision's delay unless ctx ends first.
func (d Decision) wait(ctx context.Context) error {
	if d.Delay <= 0 {
		return nil
	}
	t := time.NewTimer(d.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func (d Decision) grpcError(fullMethod string) error {
	code, _ := d.Fail.grpcCode() // validated when the rule was added
	return status.Errorf(code, "injected fault: %s on %s", code, fullMethod)
}

func grpcMatcher(fullMethod string) func(string) bool {
	return func(m string) bool {
		return m == fullMethod || strings.HasSuffix(fullMethod, "/"+m)
	}
}

// UnaryInterceptor applies the service's rules to unary gRPC calls.
func (in *Injector) UnaryInterceptor(service string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		d := in.decide(service, grpcMatcher(info.FullMethod))
		if err := d.wait(ctx); err != nil {
			return nil, err
		}
		if d.Fail != nil {
			return nil, d.grpcError(info.FullMethod)
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor applies the service's rules when a gRPC stream opens.
func (in *Injector) StreamInterceptor(service string) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		d := in.decide(service, grpcMatcher(info.FullMethod))
		if err := d.wait(ss.Context()); err != nil {
			return err
		}
		if d.Fail != nil {
			return d.grpcError(info.FullMethod)
		}
		return handler(srv, &faultStream{ServerStream: ss, in: in, service: service, method: info.FullMethod})
	}
}

// faultStream ends an open stream when a MidStream rule fails one of the
// messages the server sends.
type faultStream struct {
	grpc.ServerStream
	in              *Injector
	service, method string
}

func (s *faultStream) SendMsg(m any) error {
	if d := s.in.decideAt(s.service, grpcMatcher(s.method), true); d.Fail != nil {
		return d.grpcError(s.method)
	}
	return s.ServerStream.SendMsg(m)
}

// HTTPMiddleware applies the service's rules to HTTP requests.
func (in *Injector) HTTPMiddleware(service string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := in.decide(service, func(m string) bool {
			return strings.EqualFold(m, r.Method) || strings.Contains(r.URL.Path, m)
		})
		if err := d.wait(r.Context()); err != nil {
			return
		}
		if d.Fail != nil {
			code := d.Fail.HTTPStatus
			if code == 0 {
				code = http.StatusServiceUnavailable
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error":{"code":%d,"message":"injected fault: %s %s"}}`, code, r.Method, r.URL.Path)
			return
		}
		next.ServeHTTP(w, r)
	})
}
