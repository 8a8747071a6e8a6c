package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// python measures what the Python SDK (python/) adds to a warm request:
// the same exec of `true` in the same session, through the SDK (a Python
// process running `python -m sandrun._bench`) and through the Go client,
// in alternating rounds, so that both see the same load.
func (r *runner) python(ctx context.Context) error {
	const s = "bench-python"
	rounds, per := 10, 20
	if r.cfg.Quick {
		rounds = 3
	}
	cmd := exec.CommandContext(ctx, r.cfg.Python, "-m", "sandrun._bench", s)
	cmd.Env = append(os.Environ(), "SANDRUN_PROJECT="+r.sys.Project, "SANDRUN_BUCKET="+r.sys.Bucket)
	if r.cfg.PythonPath != "" {
		cmd.Env = append(cmd.Env, "PYTHONPATH="+r.cfg.PythonPath)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		r.skip("python SDK", fmt.Sprintf("not measured: start %s: %v", r.cfg.Python, err))
		return nil
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	next := func() (string, error) {
		got := make(chan bool, 1)
		go func() { got <- lines.Scan() }()
		select {
		case ok := <-got:
			if !ok {
				return "", fmt.Errorf("the Python process ended: %v: %s", lines.Err(), strings.TrimSpace(stderr.String()))
			}
			return lines.Text(), nil
		case <-time.After(5 * time.Minute):
			return "", fmt.Errorf("no answer from the Python process in 5 minutes: %s", strings.TrimSpace(stderr.String()))
		}
	}
	if line, err := next(); err != nil || line != "ready" {
		r.skip("python SDK", fmt.Sprintf("not measured (is the SDK installed? `make test-python` makes .venv-python): %v %s", err, line))
		return nil
	}
	var viaGo, viaPython []time.Duration
	for range rounds {
		for range per {
			d, _, err := r.exec(ctx, s, "true")
			if err != nil {
				return err
			}
			viaGo = append(viaGo, d)
		}
		if _, err := io.WriteString(stdin, fmt.Sprintf("%d\n", per)); err != nil {
			return fmt.Errorf("ask the Python process: %w", err)
		}
		line, err := next()
		if err != nil {
			return err
		}
		var msList []float64
		if err := json.Unmarshal([]byte(line), &msList); err != nil {
			return fmt.Errorf("read the Python process's latencies %q: %w", line, err)
		}
		for _, ms := range msList {
			viaPython = append(viaPython, time.Duration(ms*float64(time.Millisecond)))
		}
	}
	goP50, goP99 := percentiles(viaGo)
	r.add(Result{Name: "warm request: true, Go client", Unit: "ms", P50: goP50, P99: goP99, Samples: len(viaGo)})
	pyP50, pyP99 := percentiles(viaPython)
	r.add(Result{Name: "warm request: true, Python SDK", Unit: "ms", P50: pyP50, P99: pyP99, Samples: len(viaPython),
		Floor: goP50, FloorName: "the same through the Go client",
		Note: fmt.Sprintf("the Python SDK adds %.2f ms per call at p50 (%.2f at p99) over the Go client; budget: under 5 ms at p50", pyP50-goP50, pyP99-goP99)})
	return nil
}

// skip records a measurement that could not be made, and why.
func (r *runner) skip(name, why string) {
	r.report.Results = append(r.report.Results, Result{Name: name, Note: why})
	fmt.Fprintf(r.out, "  %s: %s\n", name, why)
}
