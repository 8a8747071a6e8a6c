package emulator

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/sandrun/sandrun/emulator/faults"
)

// The admin endpoint controls a running suite over plain HTTP on loopback:
//
//	GET    /faults                 active fault rules with what each has done
//	POST   /faults                 add a rule (JSON faults.Rule)
//	DELETE /faults[?service=S]     remove the rules of S, or all
//	GET    /executions             running Cloud Run executions
//	POST   /executions/kill        SIGKILL an execution ({"name": N}, full or its id, or a random running one)
//	POST   /executions/migrate     a maintenance event ({"name": N, "notice": "10s", "pause": "5s"}); answers once it runs again
//	GET    /health                 200 while the suite serves
func (s *Suite) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Faults.Rules())
	})
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var rule faults.Rule
		if err := decodeJSON(r, &rule); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if err := s.Faults.Add(rule); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		s.logger.Info("fault rule added", "event", "emulator.fault_added", "service", rule.Service, "method", rule.Method,
			"rate", rule.Rate, "code", rule.Code, "http_status", rule.HTTPStatus, "latency", time.Duration(rule.Latency).String())
		writeJSON(w, http.StatusCreated, rule)
	})
	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, r *http.Request) {
		s.Faults.Clear(r.URL.Query().Get("service"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /executions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.CloudRun.RunningExecutions())
	})
	mux.HandleFunc("POST /executions/kill", func(w http.ResponseWriter, r *http.Request) {
		var req killRequest
		if err := decodeJSON(r, &req); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		name, err := s.KillExecution(req.Name)
		if err != nil {
			writeError(w, http.StatusNotFound, err)
			return
		}
		writeJSON(w, http.StatusOK, killRequest{Name: name})
	})
	mux.HandleFunc("POST /executions/migrate", func(w http.ResponseWriter, r *http.Request) {
		var req migrateRequest
		if err := decodeJSON(r, &req); err != nil && !errors.Is(err, io.EOF) {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		notice, err := time.ParseDuration(cmp.Or(req.Notice, DefaultMigrationNotice.String()))
		if err != nil || notice < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("notice %q: want a duration such as 10s", req.Notice))
			return
		}
		pause, err := time.ParseDuration(cmp.Or(req.Pause, DefaultMigrationPause.String()))
		if err != nil || pause < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("pause %q: want a duration such as 5s", req.Pause))
			return
		}
		name, err := s.MigrateExecution(r.Context(), req.Name, notice, pause)
		if err != nil {
			writeError(w, http.StatusNotFound, err)
			return
		}
		writeJSON(w, http.StatusOK, migrateRequest{Name: name, Notice: notice.String(), Pause: pause.String()})
	})
	return mux
}

// KillExecution kills the named execution's tasks as a crash would, or, when
// name is empty, those of a running execution picked at random. name is
// the execution's full resource name or its last segment (the execution
// id that sandrun's completions and `session get` show). It returns the
// full name of the execution it killed.
func (s *Suite) KillExecution(name string) (string, error) {
	name, err := s.runningExecution(name)
	if err != nil {
		return "", fmt.Errorf("kill execution: %w", err)
	}
	if err := s.CloudRun.KillExecution(name); err != nil {
		return "", fmt.Errorf("kill execution %s: %w", name, err)
	}
	s.logger.Info("execution killed", "event", "emulator.execution_killed", "execution", name)
	return name, nil
}

// MigrateExecution puts the named execution (as KillExecution names it)
// through a maintenance event (cloudrun.Server.MigrateExecution): SIGTSTP,
// notice later a pause of every process for pause, then SIGCONT. It
// returns the execution's full name once it runs again.
func (s *Suite) MigrateExecution(ctx context.Context, name string, notice, pause time.Duration) (string, error) {
	name, err := s.runningExecution(name)
	if err != nil {
		return "", fmt.Errorf("migrate execution: %w", err)
	}
	if err := s.CloudRun.MigrateExecution(ctx, name, notice, pause); err != nil {
		return "", fmt.Errorf("migrate execution %s: %w", name, err)
	}
	return name, nil
}

// runningExecution is the full name of the running execution name names:
// its full name, its last segment, or, when empty, one picked at random.
func (s *Suite) runningExecution(name string) (string, error) {
	running := s.CloudRun.RunningExecutions()
	switch {
	case name == "":
		if len(running) == 0 {
			return "", errors.New("no execution is running")
		}
		return running[rand.IntN(len(running))], nil
	case !strings.Contains(name, "/"):
		var found []string
		for _, full := range running {
			if path.Base(full) == name {
				found = append(found, full)
			}
		}
		if len(found) != 1 {
			return "", fmt.Errorf("%d running executions have the id %s", len(found), name)
		}
		return found[0], nil
	}
	return name, nil
}

// Cloud Run warns of a maintenance event 10 s ahead; the pause, which it
// calls brief, is not documented: 5 s stands for it unless asked.
const (
	DefaultMigrationNotice = 10 * time.Second
	DefaultMigrationPause  = 5 * time.Second
)

type killRequest struct {
	Name string `json:"name,omitempty"`
}

// migrateRequest asks for a maintenance event; the durations are Go
// durations ("10s").
type migrateRequest struct {
	Name   string `json:"name,omitempty"`
	Notice string `json:"notice,omitempty"`
	Pause  string `json:"pause,omitempty"`
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode request body: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// AdminClient controls a running suite through its admin endpoint.
type AdminClient struct {
	// Addr is host:port of the admin endpoint (SANDRUN_EMULATOR_ADMIN).
	Addr string
	HTTP *http.Client
}

// AddFault activates a fault rule in the suite.
func (c *AdminClient) AddFault(ctx context.Context, r faults.Rule) error {
	return c.do(ctx, http.MethodPost, "/faults", r, nil)
}

// Faults lists the active rules with what each has done.
func (c *AdminClient) Faults(ctx context.Context) ([]faults.RuleStats, error) {
	var out []faults.RuleStats
	err := c.do(ctx, http.MethodGet, "/faults", nil, &out)
	return out, err
}

// ClearFaults removes the rules of service, or every rule when it is "".
func (c *AdminClient) ClearFaults(ctx context.Context, service string) error {
	path := "/faults"
	if service != "" {
		path += "?service=" + url.QueryEscape(service)
	}
	return c.do(ctx, http.MethodDelete, path, nil, nil)
}

// KillExecution kills the named execution, or a random running one when name
// is "", and returns the name of the one it killed.
func (c *AdminClient) KillExecution(ctx context.Context, name string) (string, error) {
	var out killRequest
	err := c.do(ctx, http.MethodPost, "/executions/kill", killRequest{Name: name}, &out)
	return out.Name, err
}

// MigrateExecution puts the named execution, or a random running one when
// name is empty, through a maintenance event (Suite.MigrateExecution); it
// returns the execution's full name once it runs again.
func (c *AdminClient) MigrateExecution(ctx context.Context, name string, notice, pause time.Duration) (string, error) {
	var out migrateRequest
	err := c.do(ctx, http.MethodPost, "/executions/migrate", migrateRequest{Name: name, Notice: notice.String(), Pause: pause.String()}, &out)
	return out.Name, err
}

func (c *AdminClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr+path, body)
	if err != nil {
		return fmt.Errorf("emulator admin %s %s: %w", method, path, err)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("emulator admin %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		return fmt.Errorf("emulator admin %s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("emulator admin %s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}
