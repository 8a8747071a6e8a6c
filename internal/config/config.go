// Package config reads a program's configuration from flags whose defaults
// the environment may set, so that every setting is both a flag (for
// people) and an environment variable (for Cloud Run), and `--help` lists
// both with their defaults.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// ErrUsage reports bad arguments or environment; the flag set has already
// said what was wrong.
var ErrUsage = errors.New("usage")

// FlagSet is a program's flags, each of which may take its default from an
// environment variable.
type FlagSet struct {
	*flag.FlagSet
	stderr  io.Writer
	fromEnv []fromEnv
}

// fromEnv is a flag whose default the environment may set: the first of
// keys that is set wins.
type fromEnv struct {
	flag string
	keys []string
}

// New returns a flag set that prints its usage, headed by synopsis, to
// stderr.
func New(name, synopsis string, stderr io.Writer) *FlagSet {
	fs := &FlagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), stderr: stderr}
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nFlags (an environment variable named in brackets sets the default):\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// Env makes the environment variable key set the default of flag name;
// when key is unset, the first of fallbacks that is set does.
func (fs *FlagSet) Env(name, key string, fallbacks ...string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("config: no flag " + name)
	}
	keys := append([]string{key}, fallbacks...)
	f.Usage += " [" + strings.Join(keys, ", else ") + "]"
	fs.fromEnv = append(fs.fromEnv, fromEnv{name, keys})
}

// Parse applies the environment (read with getenv), then the arguments. A
// bad value in either is ErrUsage after a message that names it;
// flag.ErrHelp is returned for -h.
func (fs *FlagSet) Parse(getenv func(string) string, args []string) error {
	for _, e := range fs.fromEnv {
		for _, key := range e.keys {
			v := getenv(key)
			if v == "" {
				continue
			}
			if err := fs.Set(e.flag, v); err != nil {
				fmt.Fprintf(fs.stderr, "invalid value %q of %s: %v\n", v, key, err)
				return ErrUsage
			}
			break
		}
	}
	if err := fs.FlagSet.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return ErrUsage
	}
	return nil
}

// List is a repeatable string flag.
type List []string

func (l *List) String() string     { return strings.Join(*l, ",") }
func (l *List) Set(v string) error { *l = append(*l, v); return nil }
