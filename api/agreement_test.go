package api

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// Values that requests generated below draw from: edge values of every
// rule, and values of other JSON types.
var (
	genStrings = []string{
		`""`, `"x"`, `"a.txt"`, `"/etc/hosts"`, `"a\u0000b"`, `"**/*.py"`, `"*.go"`, `"src/**"`, `"/x"`, `"a//b"`, `"["`, `"("`,
		`"(?i)todo"`, `"0644"`, `"755"`, `"07777"`, `"17777"`, `"999"`, `"TERM"`, `"SIGKILL"`, `"term"`, `"utf-8"`, `"base64"`,
		`"AP8="`, `"A"`, `"QUJD\nREVG"`, `"` + stagedObject + `"`, `"gs://sandrun-local/sessions/s2/transfers/x"`,
		`"gs://sandrun-local/sessions/s1/transfers/../x"`, `"gs://ab/sessions/s1/transfers/x"`, `"echo hi"`,
	}
	genNumbers = []string{"0", "1", "-1", "0.5", "1.5", "42", "4.2e1", "1e-3", "4096", "4097", "10000", "10001", "86400", "86401",
		"196608", "196609", "2147483647", "2147483648", "9223372036854775807", "9223372036854775808", "1e300", "-0"}
	genOthers = []string{"true", "false", "null", "{}", `{"A":"1"}`, `{"1A":"x"}`, `["x"]`}
)

// genValue is a JSON value for a field: mostly of its kind, sometimes not.
func genValue(rng *rand.Rand, f requestField) string {
	pick := func(list []string) string { return list[rng.IntN(len(list))] }
	if rng.IntN(10) == 0 {
		return pick(append(append(append([]string{}, genStrings...), genNumbers...), genOthers...))
	}
	switch f.kind {
	case kindString:
		return pick(genStrings)
	case kindNumber, kindInteger:
		return pick(genNumbers)
	case kindBool:
		return pick([]string{"true", "false"})
	}
	return pick([]string{"{}", `{"A":"1"}`, `{"1A":"x"}`, `{"__sandrun_x":"1"}`})
}

// ParseRequest and the request schema agree on many generated requests:
// each op with a random choice of its own fields (and now and then one of
// another op), drawn from values at the edges of the rules.
func TestRequestSchemaAgreesOnGeneratedRequests(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	rng := rand.New(rand.NewPCG(1, 2))
	ops := append(append([]Op{}, servedOps...), "browser.open", "file.frobnicate")
	accepted := map[Op]int{}
	for i := range n {
		op := ops[rng.IntN(len(ops))]
		fields := []string{rid, sid, q("op", string(op))}
		for _, name := range opFields[op] {
			if rng.IntN(3) == 0 {
				fields = append(fields, fmt.Sprintf("%q:%s", name, genValue(rng, fieldsByName[name])))
			}
		}
		if rng.IntN(8) == 0 {
			f := requestFields[3+rng.IntN(len(requestFields)-3)]
			if !takesField(op, f.name) {
				fields = append(fields, fmt.Sprintf("%q:%s", f.name, genValue(rng, f)))
			}
		}
		rng.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
		data := "{" + strings.Join(fields, ",") + "}"

		_, err := ParseRequest([]byte(data))
		schemaErr := schemaCheck(t, "request", []byte(data))
		var rerr *RequestError
		switch {
		case err == nil && schemaErr != nil:
			t.Fatalf("case %d: ParseRequest accepts %s; the schema rejects it: %v", i, data, schemaErr)
		case err != nil && !errors.As(err, &rerr):
			t.Fatalf("case %d: %s: error %v is not a *RequestError", i, data, err)
		case err != nil && schemaErr == nil && !schemaBlind(rerr):
			t.Fatalf("case %d: ParseRequest rejects %s (%s: %s); the schema accepts it", i, data, rerr.Reason, rerr.Message)
		case err == nil:
			accepted[op]++
		}
		if rerr != nil {
			checkErrorBounds(t, rerr)
		}
	}
	t.Logf("valid requests by op: %v", accepted)
	// The generator reaches valid requests of every op.
	for _, op := range servedOps {
		if accepted[op] == 0 {
			t.Errorf("no generated %s request was valid", op)
		}
	}
}
