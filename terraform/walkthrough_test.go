package terraform

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestWalkthrough checks docs/deploy.md's step-by-step against this
// configuration: the APIs are enabled by an apply of their own and waited
// for before anything else is applied; every -target names a resource that
// exists; every step says what to expect; the walk ends at
// `sandrun exec --project P -- echo hello`; and what is unverified on
// Google Cloud is named.
func TestWalkthrough(t *testing.T) {
	src, err := os.ReadFile("../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(src)
	start := strings.Index(doc, "## Step by step")
	end := strings.Index(doc, "## What Terraform creates")
	if start < 0 || end < start {
		t.Fatal("docs/deploy.md has no Step by step section before What Terraform creates")
	}
	walk := doc[start:end]

	var applies []string // each terraform apply command, with its continuation lines
	var blocks []string
	for i, part := range strings.Split(walk, "```") {
		if i%2 == 1 && strings.HasPrefix(part, "sh\n") {
			blocks = append(blocks, part)
		}
	}
	for _, b := range blocks {
		cmd := ""
		for _, line := range strings.Split(b, "\n") {
			switch {
			case cmd != "":
				cmd += " " + strings.TrimSpace(strings.TrimSuffix(line, "\\"))
				if !strings.HasSuffix(line, "\\") {
					applies, cmd = append(applies, cmd), ""
				}
			case strings.HasPrefix(strings.TrimSpace(line), "terraform apply"):
				cmd = strings.TrimSpace(strings.TrimSuffix(line, "\\"))
				if !strings.HasSuffix(line, "\\") {
					applies, cmd = append(applies, cmd), ""
				}
			}
		}
	}
	if len(applies) < 3 {
		t.Fatalf("the walkthrough applies %d times, want the APIs, the build's resources, then everything: %q", len(applies), applies)
	}
	if applies[0] != "terraform apply -target=google_project_service.apis" {
		t.Errorf("the first apply is %q, want the APIs alone (terraform apply -target=google_project_service.apis)", applies[0])
	}
	first := strings.Index(walk, applies[0])
	second := strings.Index(walk[first+len(applies[0]):], "terraform apply")
	if wait := strings.Index(walk[first:], "until "); wait < 0 || wait > second+len(applies[0]) {
		t.Error("no wait (an until loop) for the APIs between their apply and the next one")
	}

	c := parse(t)
	target := regexp.MustCompile(`-target=([a-z0-9_]+)\.([a-z0-9_]+)`)
	for _, a := range applies {
		for _, m := range target.FindAllStringSubmatch(a, -1) {
			if len(c.all("resource", m[1], m[2])) != 1 {
				t.Errorf("%q targets %s.%s, which the configuration does not declare", a, m[1], m[2])
			}
		}
	}

	steps := regexp.MustCompile(`(?m)^\*\*(\d+)\. `).FindAllStringIndex(walk, -1)
	if len(steps) < 6 {
		t.Fatalf("found %d numbered steps", len(steps))
	}
	for i, s := range steps {
		next := len(walk)
		if i+1 < len(steps) {
			next = steps[i+1][0]
		}
		if !strings.Contains(walk[s[0]:next], "\nExpect: ") {
			t.Errorf("step %s says nothing to expect (no paragraph starting \"Expect: \")", strings.TrimSpace(walk[s[0]+2:s[1]]))
		}
	}
	if !strings.Contains(walk, `sandrun exec --project "$PROJECT" -- echo hello`) {
		t.Error("the walkthrough does not reach sandrun exec --project P -- echo hello")
	}
	if !strings.Contains(walk, "### Not yet verified on Google Cloud") {
		t.Error("the walkthrough does not name what is unverified on Google Cloud")
	}
}
