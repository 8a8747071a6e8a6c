package shell

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestParseState(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    string
		want    State
		wantErr error // nil, errIncomplete or ErrMalformedState
	}{
		{
			name: "typical",
			data: "sandrun-state-v1\x00/home/u\x00A=1\x00OLDPWD=/tmp\x00end\x00",
			want: State{Cwd: "/home/u", Env: map[string]string{"A": "1", "OLDPWD": "/tmp"}},
		},
		{
			name: "values with newlines, '=', quotes, unicode, empty",
			data: "sandrun-state-v1\x00/a b/\nc\x00NL=x\ny\x00EQ=a=b=\x00Q='\"\\\x00U=世界\x00E=\x00end\x00",
			want: State{Cwd: "/a b/\nc", Env: map[string]string{"NL": "x\ny", "EQ": "a=b=", "Q": `'"\`, "U": "世界", "E": ""}},
		},
		{
			name: "bash bookkeeping and reserved names dropped",
			data: "sandrun-state-v1\x00/\x00PWD=/\x00SHLVL=1\x00_=/usr/bin/env\x00__sandrun_x=1\x00K=v\x00end\x00",
			want: State{Cwd: "/", Env: map[string]string{"K": "v"}},
		},
		{name: "value that looks like the trailer", data: "sandrun-state-v1\x00/\x00X=end\x00end\x00",
			want: State{Cwd: "/", Env: map[string]string{"X": "end"}}},
		{name: "empty env", data: "sandrun-state-v1\x00/\x00end\x00", want: State{Cwd: "/", Env: map[string]string{}}},
		{name: "empty file", data: "", wantErr: errIncomplete},
		{name: "cut before trailer", data: "sandrun-state-v1\x00/\x00A=1\x00", wantErr: errIncomplete},
		{name: "cut inside trailer", data: "sandrun-state-v1\x00/\x00A=1\x00en", wantErr: errIncomplete},
		{name: "trailer only", data: "\x00end\x00", wantErr: ErrMalformedState},
		{name: "bad magic", data: "sandrun-state-v2\x00/\x00end\x00", wantErr: ErrMalformedState},
		{name: "no cwd", data: "sandrun-state-v1\x00end\x00", wantErr: ErrMalformedState},
		{name: "relative cwd", data: "sandrun-state-v1\x00home\x00end\x00", wantErr: ErrMalformedState},
		{name: "empty cwd", data: "sandrun-state-v1\x00\x00end\x00", wantErr: ErrMalformedState},
		{name: "record without =", data: "sandrun-state-v1\x00/\x00A\x00end\x00", wantErr: ErrMalformedState},
		// The save writes variables only: a function bash exports is
		// not one.
		{name: "exported function", data: "sandrun-state-v1\x00/\x00BASH_FUNC_f%%=() { :\n}\x00end\x00", wantErr: ErrMalformedState},
		{name: "bad name", data: "sandrun-state-v1\x00/\x001A=x\x00end\x00", wantErr: ErrMalformedState},
		{name: "empty name", data: "sandrun-state-v1\x00/\x00=x\x00end\x00", wantErr: ErrMalformedState},
		{name: "duplicate", data: "sandrun-state-v1\x00/\x00A=1\x00A=2\x00end\x00", wantErr: ErrMalformedState},
		{name: "data after trailer", data: "sandrun-state-v1\x00/\x00end\x00A=1\x00end\x00", wantErr: ErrMalformedState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseState([]byte(tt.data))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Cwd != tt.want.Cwd || !maps.Equal(got.Env, tt.want.Env) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzStateParse(f *testing.F) {
	f.Add([]byte("sandrun-state-v1\x00/home/u\x00A=1\x00OLDPWD=/tmp\x00end\x00"))
	f.Add([]byte("sandrun-state-v1\x00/\x00NL=x\ny\x00BASH_FUNC_f%%=() { :\n}\x00end\x00"))
	f.Add([]byte("sandrun-state-v1\x00/\x00A=1\x00"))
	f.Add([]byte("\x00end\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseState(data)
		if err != nil {
			if !errors.Is(err, errIncomplete) && !errors.Is(err, ErrMalformedState) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		// What parses is a valid State for Start...
		if !strings.HasPrefix(st.Cwd, "/") {
			t.Fatalf("cwd %q not absolute", st.Cwd)
		}
		if err := validateEnv("parsed", st.Env); err != nil {
			t.Fatal(err)
		}
		for name := range st.Env {
			if dropped[name] {
				t.Fatalf("%s not dropped", name)
			}
		}
		// ...and encodes back to itself.
		again, err := parseState(appendState(nil, st))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if again.Cwd != st.Cwd || !maps.Equal(again.Env, st.Env) {
			t.Fatalf("round trip: %+v != %+v", again, st)
		}
	})
}
