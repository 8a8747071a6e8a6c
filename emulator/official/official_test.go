package official

import (
	"regexp"
	"testing"
)

// TestProject: a test's project ID is a valid one (lowercase letters,
// digits and hyphens, at most 30 characters, starting with a letter) and
// differs from every other test's, even for long or odd names.
func TestProject(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	seen := map[string]bool{}
	for _, name := range []string{"A", "Odd/Name with spaces_and#marks", "AVeryLongSubtestNameThatGoesOnAndOnPastThirtyCharacters"} {
		t.Run(name, func(t *testing.T) {
			for range 2 {
				p := Project(t)
				if !valid.MatchString(p) {
					t.Errorf("Project = %q, not a valid project ID", p)
				}
				if seen[p] {
					t.Errorf("Project = %q twice", p)
				}
				seen[p] = true
			}
		})
	}
}

// TestOffSkips: "off" in the environment skips the tests of that emulator
// and never starts one.
func TestOffSkips(t *testing.T) {
	t.Setenv(EnvFirestore, "off")
	e := &emulator{name: "Firestore", env: EnvFirestore}
	skipped := true
	t.Run("uses it", func(t *testing.T) {
		e.addr(t)
		skipped = false
	})
	if !skipped || e.cmd != nil {
		t.Fatalf("with %s=off: skipped=%v, started=%v", EnvFirestore, skipped, e.cmd != nil)
	}
}
