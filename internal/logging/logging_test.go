package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestNewWritesCloudLoggingKeys(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, slog.LevelInfo).Warn("lease lost", "event", "host.lease_lost", "session_id", "s1")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	for k, want := range map[string]string{"severity": "WARNING", "message": "lease lost", "event": "host.lease_lost", "session_id": "s1"} {
		if line[k] != want {
			t.Errorf("%s = %v, want %q", k, line[k], want)
		}
	}
	if _, ok := line["timestamp"]; !ok {
		t.Errorf("no timestamp in %v", line)
	}
}

func TestCommandRedactsAndClips(t *testing.T) {
	tests := []struct{ in, want string }{
		{"echo hello", "echo hello"},
		{"export API_KEY=abc123 && run", "export API_KEY=*** && run"},
		{"GITHUB_TOKEN='x y' git push", "GITHUB_TOKEN=*** git push"},
		{`DB_PASSWORD="p w" psql`, "DB_PASSWORD=*** psql"},
		{"PATH=/usr/bin ls", "PATH=/usr/bin ls"},
	}
	for _, tt := range tests {
		if got := Command(tt.in); got != tt.want {
			t.Errorf("Command(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := strings.Repeat("é", 300)
	got := Command(long)
	if len(got) > maxCommand+len("…") || !strings.HasSuffix(got, "…") || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
		t.Errorf("long command clipped to %d bytes: %q", len(got), got)
	}
}
