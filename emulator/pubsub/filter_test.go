package pubsub

import "testing"

// TestFilter: the filter language as Google documents it, on the
// attributes of a completion.
func TestFilter(t *testing.T) {
	attrs := map[string]string{"session_id": "tenant1-42", "op": "exec", "status": "ok"}
	for src, want := range map[string]bool{
		``:                                                        true,
		`attributes.session_id = "tenant1-42"`:                    true,
		`attributes.session_id = "tenant1-4"`:                     false,
		`attributes.session_id != "x"`:                            true,
		`attributes.missing != "x"`:                               true,
		`attributes:op`:                                           true,
		`NOT attributes:missing`:                                  true,
		`hasPrefix(attributes.session_id, "tenant1-")`:            true,
		`hasPrefix(attributes.missing, "")`:                       false,
		`attributes.op = "exec" AND attributes.status = "ok"`:     true,
		`attributes.op = "file.read" OR attributes.status = "ok"`: true,
		`(attributes.op = "x" OR attributes.op = "exec") AND NOT attributes:e`: true,
		`attributes.op = "a\"b"`: false,
	} {
		f, err := parseFilter(src)
		if err != nil {
			t.Errorf("parse %s: %v", src, err)
			continue
		}
		if got := f == nil || f.match(attrs); got != want {
			t.Errorf("%s matched %v, want %v", src, got, want)
		}
	}
	for _, bad := range []string{
		`attributes.a = "x" AND attributes.b = "y" OR attributes.c = "z"`, // mixed without parentheses
		`attributes.a = x`, `attributes.a == "x"`, `attributes.a = "x`, `hasPrefix(attributes.a "x")`,
		`(attributes:a`, `data = "x"`, `attributes:a attributes:b`,
	} {
		if _, err := parseFilter(bad); err == nil {
			t.Errorf("parse %s: no error", bad)
		}
	}
}
