// Package cmd holds sandrun's programs, one directory each; this test keeps
// each deployed program, and the public Go client, from linking what it
// does not run.
package cmd

import (
	"bufio"
	"bytes"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/sandrun/sandrun"

// localOnly are what only the people's command line runs: the local cloud
// (with the Pub/Sub and Cloud Storage fakes it serves), the bench and the
// people's commands. No deployed program may link them.
var localOnly = []string{
	module + "/emulator",
	module + "/internal/bench",
	module + "/internal/cli",
	"cloud.google.com/go/pubsub/v2/pstest",
	"github.com/fsouza/fake-gcs-server",
}

// exporters are the telemetry exporters a program chooses. The Cloud
// Monitoring exporter is not among them: cloud.google.com/go/storage links
// it for its own gRPC client metrics, which sandrun does not use.
var exporters = []string{
	"go.opentelemetry.io/otel/exporters", // OTLP, Prometheus
	"github.com/prometheus",
	"github.com/GoogleCloudPlatform/opentelemetry-operations-go/exporter/trace",
	module + "/internal/telemetry/export",
	module + "/internal/telemetry/prometheus",
}

// prometheus is what serves metrics for Prometheus, which only the
// dispatcher and the reaper do.
var prometheus = []string{
	"github.com/prometheus",
	"go.opentelemetry.io/otel/exporters/prometheus",
	module + "/internal/telemetry/prometheus",
}

// TestProgramsLinkOnlyWhatTheyRun: the executor (in every sandbox), the
// dispatcher and the reaper link none of the local cloud, the bench or the
// people's commands; the executor links no Prometheus; the public client
// links no exporter (the program that embeds it chooses its own).
func TestProgramsLinkOnlyWhatTheyRun(t *testing.T) {
	forbidden := map[string][]string{
		module + "/cmd/executor":   slices.Concat(localOnly, prometheus),
		module + "/cmd/dispatcher": localOnly,
		module + "/cmd/reaper":     localOnly,
		module + "/client":         slices.Concat(localOnly, exporters),
	}
	imports := importGraph(t, slices.Sorted(maps.Keys(forbidden))...)
	for root, banned := range forbidden {
		linked := reachable(imports, root)
		for _, b := range banned {
			// The shortest chain to any package of b says where to cut.
			var chain []string
			for pkg, path := range linked {
				if (pkg == b || strings.HasPrefix(pkg, b+"/")) && (chain == nil || len(path) < len(chain)) {
					chain = path
				}
			}
			if chain != nil {
				t.Errorf("%s links %s: %s", root, b, strings.Join(chain, " -> "))
			}
		}
	}
}

// importGraph is the imports of every package that roots depend on, as go
// list reports them.
func importGraph(t *testing.T, roots ...string) map[string][]string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go tool on PATH:", err)
	}
	cmd := exec.Command("go", append([]string{"list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}"}, roots...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	imports := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			imports[f[0]] = f[1:]
		}
	}
	return imports
}

// reachable is every package root links, each with a chain of imports
// that leads to it from root.
func reachable(imports map[string][]string, root string) map[string][]string {
	paths := map[string][]string{root: {root}}
	queue := []string{root}
	for len(queue) > 0 {
		pkg := queue[0]
		queue = queue[1:]
		for _, imp := range imports[pkg] {
			if _, seen := paths[imp]; !seen {
				paths[imp] = append(slices.Clone(paths[pkg]), imp)
				queue = append(queue, imp)
			}
		}
	}
	return paths
}
