package config

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestEnvFallbacks: a flag's own environment variable sets its default,
// else the first of its fallbacks that is set; an argument wins over both;
// a bad value is a usage error that names the variable.
func TestEnvFallbacks(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"nothing set", nil, nil, "default"},
		{"own variable", map[string]string{"OWN": "own", "FIRST": "first"}, nil, "own"},
		{"first fallback", map[string]string{"FIRST": "first", "SECOND": "second"}, nil, "first"},
		{"second fallback", map[string]string{"SECOND": "second"}, nil, "second"},
		{"argument", map[string]string{"OWN": "own"}, []string{"-x", "arg"}, "arg"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := New("test", "test", &bytes.Buffer{})
			x := fs.String("x", "default", "a setting")
			fs.Env("x", "OWN", "FIRST", "SECOND")
			if err := fs.Parse(func(k string) string { return c.env[k] }, c.args); err != nil {
				t.Fatal(err)
			}
			if *x != c.want {
				t.Errorf("x = %q, want %q", *x, c.want)
			}
		})
	}
	var stderr bytes.Buffer
	fs := New("test", "test", &stderr)
	fs.Int("n", 1, "a number")
	fs.Env("n", "OWN", "FIRST")
	err := fs.Parse(func(k string) string { return map[string]string{"FIRST": "many"}[k] }, nil)
	if !errors.Is(err, ErrUsage) || !strings.Contains(stderr.String(), "FIRST") {
		t.Errorf("bad value from a fallback: %v, %q; want ErrUsage naming FIRST", err, stderr.String())
	}
	fs.Usage()
	if !strings.Contains(stderr.String(), "[OWN, else FIRST]") {
		t.Errorf("usage does not name both variables: %q", stderr.String())
	}
}
