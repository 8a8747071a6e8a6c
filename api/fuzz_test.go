package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// FuzzParseRequest checks what ParseRequest promises for any bytes: it never
// panics; a request it accepts is valid, survives re-marshalling, and the
// request schema accepts it; an error is a *RequestError whose message
// quotes a bounded amount of input and which is answerable only with a
// valid request id; and the schema rejects what ParseRequest rejects,
// except for the rules JSON Schema cannot state.
//
//	go test -run='^$' -fuzz=FuzzParseRequest -fuzztime=60s ./api
//
// With Go 1.26, a bare "context deadline exceeded" at the end of -fuzztime,
// with no failing input written, is the fuzz coordinator's own race
// (go.dev/issue/75804, fixed in Go 1.27), not a finding.
func FuzzParseRequest(f *testing.F) {
	for _, tc := range parseCases() {
		if len(tc.data) <= 1024 {
			f.Add([]byte(tc.data))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ParseRequest(data)
		// The schema is judged by a validator that computes numbers exactly,
		// which takes long for a huge exponent and fails beyond one (see
		// errValidatorPanicked). ParseRequest reads such numbers as float64
		// and is tested on them in TestParseRequest; here they are left out
		// of the comparison with the schema.
		var schemaErr error
		judged := !hugeExponent.Match(data)
		if judged {
			schemaErr = schemaCheck(t, "request", data)
			judged = schemaErr != errValidatorPanicked
		}
		if err != nil {
			var rerr *RequestError
			if !errors.As(err, &rerr) {
				t.Fatalf("error %v is a %T, not a *RequestError", err, err)
			}
			checkErrorBounds(t, rerr)
			if judged && schemaErr == nil && !schemaBlind(rerr) {
				t.Fatalf("ParseRequest rejects %q (%s: %s); the schema accepts it", data, rerr.Reason, rerr.Message)
			}
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("ParseRequest accepted %q, Validate says %v", data, err)
		}
		again, err := json.Marshal(&req)
		if err != nil {
			t.Fatal(err)
		}
		if err := schemaCheck(t, "request", again); err != nil {
			t.Fatalf("the schema rejects the accepted request %s: %v", again, err)
		}
		if judged && schemaErr != nil && !onlyRounding(t, data, &req) {
			t.Fatalf("ParseRequest accepts %q; the schema rejects it: %v", data, schemaErr)
		}
		// json.Marshal escapes <, > and & as six bytes each, so a request
		// near the size limit may not fit once re-marshalled.
		if len(again) > MaxRequestBytes {
			return
		}
		req2, err := ParseRequest(again)
		if err != nil {
			t.Fatalf("re-marshalled request %s does not parse: %v", again, err)
		}
		if len(req.Env) == 0 {
			req.Env = nil // an empty env is left out when marshalled
		}
		if !reflect.DeepEqual(req, req2) {
			t.Fatalf("re-parsed %+v, want %+v", req2, req)
		}
	})
}

// hugeExponent finds a JSON number whose exponent has five digits or more.
var hugeExponent = regexp.MustCompile(`[0-9][eE][+-]?0*[1-9][0-9]{4,}`)

// schemaBlind reports whether e is about a rule the request schema cannot
// state: a size in bytes, invalid UTF-8 (a JSON reader replaces it), a
// name given twice in one object (a JSON reader keeps the last), a regular
// expression that RE2 does not compile, a malformed glob, or an object in
// another session's transfers.
func schemaBlind(e *RequestError) bool {
	switch {
	case e.Reason == ReasonTooLarge || e.Reason == ReasonInvalidUTF8:
		return true
	case e.Reason == ReasonNotARequest:
		return strings.Contains(e.Message, "appears more than once")
	case e.Reason == ReasonInvalidField:
		return strings.Contains(e.Message, "is not an RE2 regular expression") ||
			strings.Contains(e.Message, "is not a well-formed glob") ||
			strings.Contains(e.Message, "it must be in this session's")
	}
	return false
}

// onlyRounding reports whether the schema's verdict on data differs from
// ParseRequest's only by the rounding of timeout_seconds or grace_seconds
// to a float64 (a literal just below 0 or above 86400 that rounds to 0 or
// 86400): data with the rounded values in their place passes the schema.
func onlyRounding(t *testing.T, data []byte, r *Request) bool {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if dec.Decode(&m) != nil {
		return false
	}
	rounded := false
	for name, v := range map[string]float64{"timeout_seconds": r.TimeoutSeconds, "grace_seconds": r.GraceSeconds} {
		if _, ok := m[name].(json.Number); ok {
			m[name], rounded = v, true
		}
	}
	if !rounded {
		return false
	}
	again, err := json.Marshal(m)
	return err == nil && schemaCheck(t, "request", again) == nil
}
