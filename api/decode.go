package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ParseRequest decodes and validates a request from message data. It returns
// a *RequestError for anything that is not a valid request.
//
// It is stricter than encoding/json: the data must be exactly one JSON
// object whose field names match the schema's exactly (not ignoring case),
// each at most once, none of them null, each of its JSON type (an integer
// field takes any number with an integer value, such as 5, 5.0 or 5e0).
// And each operation takes only its own fields: a field of another
// operation is rejected even when it holds its zero value.
func ParseRequest(data []byte) (Request, error) {
	var req Request
	if len(data) > MaxRequestBytes {
		return req, newDecodeError(data, ReasonTooLarge, fmt.Sprintf("request is %d bytes; the limit is %d", len(data), MaxRequestBytes))
	}
	if !utf8.Valid(data) {
		return req, newDecodeError(data, ReasonInvalidUTF8, "request is not valid UTF-8")
	}
	if at := loneSurrogate(data); at >= 0 {
		// encoding/json would read it as U+FFFD and run another command
		// than the one sent.
		return req, newDecodeError(data, ReasonInvalidUTF8, fmt.Sprintf("request is not valid UTF-8 once decoded: the escape %s at byte %d is half of a UTF-16 surrogate pair, which stands for no character", data[at:at+6], at))
	}
	present, problem := decodeRequest(data, &req)
	if problem != "" {
		e := newDecodeError(data, ReasonNotARequest, "request is not a JSON object of the request schema: "+problem)
		if e.RequestID != "" && strings.HasPrefix(string(e.Op), "browser.") {
			// The browser ops' fields (url, selector, ...) are not in the
			// schema, and no field would make the op possible: it is
			// answered as any browser op is, once its ids are valid.
			ids := Request{RequestID: e.RequestID, SessionID: e.SessionID, Op: e.Op}
			return Request{}, ids.validate(func(string) bool { return false })
		}
		return Request{}, e
	}
	if err := req.validate(func(field string) bool { return present[field] }); err != nil {
		return req, err
	}
	return req, nil
}

// loneSurrogate returns the offset of the first \uXXXX escape in data
// that is a UTF-16 surrogate (D800-DFFF) not paired as high then low, or
// -1. A backslash only begins an escape inside a JSON string, and data
// that is not JSON fails later anyway, so strings need not be tracked.
func loneSurrogate(data []byte) int {
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		r, ok := escapedRune(data, i)
		switch {
		case !ok:
			i++ // \n, \\, ... : skip the escaped byte
		case r >= 0xDC00 && r <= 0xDFFF:
			return i
		case r >= 0xD800 && r <= 0xDBFF:
			if lo, ok := escapedRune(data, i+6); !ok || lo < 0xDC00 || lo > 0xDFFF {
				return i
			}
			i += 11
		default:
			i += 5
		}
	}
	return -1
}

// escapedRune reads the \uXXXX escape at data[i:], if there is one.
func escapedRune(data []byte, i int) (rune, bool) {
	if i+6 > len(data) || data[i] != '\\' || data[i+1] != 'u' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(data[i+2:i+6]), 16, 16)
	return rune(n), err == nil
}

// newDecodeError is the error of data that is not a request, with what
// can be read of its ids.
func newDecodeError(data []byte, reason, message string) *RequestError {
	e := &RequestError{Reason: reason, Code: CodeInvalidArgument, Message: message}
	e.fillIDs(data)
	return e
}

// JSON types of the request's fields.
type fieldKind int

const (
	kindString fieldKind = iota
	kindNumber
	kindInteger
	kindBool
	kindStringMap
)

// requestField is a field of Request: its JSON name, its index in the
// struct and its JSON type.
type requestField struct {
	name  string
	index int
	kind  fieldKind
}

// requestFields are Request's fields in the struct's order, and
// fieldsByName the same by JSON name. Both are read only.
var requestFields, fieldsByName = requestFieldTable()

func requestFieldTable() ([]requestField, map[string]requestField) {
	typ := reflect.TypeFor[Request]()
	var list []requestField
	byName := map[string]requestField{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		var kind fieldKind
		switch f.Type.Kind() {
		case reflect.String:
			kind = kindString
		case reflect.Float64:
			kind = kindNumber
		case reflect.Int, reflect.Int64:
			kind = kindInteger
		case reflect.Bool:
			kind = kindBool
		case reflect.Map:
			kind = kindStringMap
		default:
			panic("api: Request field " + f.Name + " has a type the decoder does not know")
		}
		rf := requestField{name: name, index: i, kind: kind}
		list = append(list, rf)
		byName[name] = rf
	}
	return list, byName
}

// nonZero reports whether the Go value r has the field: its value is not
// the zero value (an empty, non-nil env counts as present).
func (r *Request) nonZero(field string) bool {
	f, ok := fieldsByName[field]
	return ok && !reflect.ValueOf(r).Elem().Field(f.index).IsZero()
}

// decodeRequest reads data as JSON tokens into req, checking what
// encoding/json lets pass: one object, no data after it, field names
// exactly as in the schema and each once, values of the field's JSON type
// (null is none), env an object of strings with each name once. It returns
// the fields present, or a problem that quotes at most a clipped prefix of
// the data.
func decodeRequest(data []byte, req *Request) (present map[string]bool, problem string) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, tokenProblem(err)
	}
	if tok != json.Delim('{') {
		return nil, "it is " + describeToken(tok) + ", not an object"
	}
	rv := reflect.ValueOf(req).Elem()
	present = make(map[string]bool, 8)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, tokenProblem(err)
		}
		name := tok.(string) // a key inside an object is always a string
		f, known := fieldsByName[name]
		switch {
		case !known:
			return nil, fmt.Sprintf("unknown field %q", clip(name, maxQuoted))
		case present[name]:
			return nil, fmt.Sprintf("field %q appears more than once", name)
		}
		present[name] = true
		if tok, err = dec.Token(); err != nil {
			return nil, tokenProblem(err)
		}
		v := rv.Field(f.index)
		switch f.kind {
		case kindString:
			s, ok := tok.(string)
			if !ok {
				return nil, fmt.Sprintf("field %q must be a string, not %s", name, describeToken(tok))
			}
			v.SetString(s)
		case kindBool:
			b, ok := tok.(bool)
			if !ok {
				return nil, fmt.Sprintf("field %q must be a boolean, not %s", name, describeToken(tok))
			}
			v.SetBool(b)
		case kindNumber:
			n, ok := tok.(json.Number)
			if !ok {
				return nil, fmt.Sprintf("field %q must be a number, not %s", name, describeToken(tok))
			}
			x, err := strconv.ParseFloat(string(n), 64)
			if err != nil {
				return nil, fmt.Sprintf("field %q: number %s is out of range", name, clip(string(n), maxQuoted))
			}
			v.SetFloat(x)
		case kindInteger:
			n, ok := tok.(json.Number)
			if !ok {
				return nil, fmt.Sprintf("field %q must be an integer, not %s", name, describeToken(tok))
			}
			x, isInt, inRange := parseInteger(string(n))
			switch {
			case !isInt:
				return nil, fmt.Sprintf("field %q must be an integer, not %s", name, clip(string(n), maxQuoted))
			case !inRange || v.OverflowInt(x):
				return nil, fmt.Sprintf("field %q: number %s is out of range", name, clip(string(n), maxQuoted))
			}
			v.SetInt(x)
		case kindStringMap:
			if tok != json.Delim('{') {
				return nil, fmt.Sprintf("field %q must be an object of strings, not %s", name, describeToken(tok))
			}
			m, p := readStringMap(dec, name)
			if p != "" {
				return nil, p
			}
			v.Set(reflect.ValueOf(m))
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, tokenProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, "it has data after its JSON object"
	}
	return present, ""
}

// readStringMap reads the members of the object field (its opening brace
// read already) up to and including its closing brace.
func readStringMap(dec *json.Decoder, field string) (map[string]string, string) {
	m := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, tokenProblem(err)
		}
		key := tok.(string)
		if _, seen := m[key]; seen {
			return nil, fmt.Sprintf("%s name %q appears more than once", field, clip(key, maxQuoted))
		}
		if tok, err = dec.Token(); err != nil {
			return nil, tokenProblem(err)
		}
		s, ok := tok.(string)
		if !ok {
			return nil, fmt.Sprintf("%s value of %q must be a string, not %s", field, clip(key, maxQuoted), describeToken(tok))
		}
		m[key] = s
	}
	if _, err := dec.Token(); err != nil {
		return nil, tokenProblem(err)
	}
	return m, ""
}

// parseInteger reads a JSON number literal exactly, as JSON Schema's
// "integer" does: isInt when its value is a whole number (5, 5.0, 5e0,
// 50e-1), inRange when that number fits an int64. It never builds a
// number from a huge exponent.
func parseInteger(lit string) (n int64, isInt, inRange bool) {
	neg := strings.HasPrefix(lit, "-")
	lit = strings.TrimPrefix(lit, "-")
	mant, expText := lit, ""
	if i := strings.IndexAny(lit, "eE"); i >= 0 {
		mant, expText = lit[:i], lit[i+1:]
	}
	whole, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(whole+frac, "0")
	if digits == "" {
		return 0, true, true // zero, whatever its exponent
	}
	// The value is digits × 10^exp.
	exp := int64(0)
	if expText != "" {
		expNeg := strings.HasPrefix(expText, "-")
		expDigits := strings.TrimLeft(strings.TrimLeft(expText, "+-"), "0")
		if len(expDigits) > 9 {
			// Beyond ±10^9: no whole number in range has such an exponent
			// with digits shorter than the message limit.
			return 0, !expNeg, false
		}
		if expDigits != "" {
			exp, _ = strconv.ParseInt(expDigits, 10, 64)
		}
		if expNeg {
			exp = -exp
		}
	}
	exp -= int64(len(frac))
	trimmed := strings.TrimRight(digits, "0")
	exp += int64(len(digits) - len(trimmed))
	digits = trimmed
	if exp < 0 {
		return 0, false, false
	}
	if int64(len(digits))+exp > 19 {
		return 0, true, false
	}
	u, err := strconv.ParseUint(digits+strings.Repeat("0", int(exp)), 10, 64)
	switch {
	case err != nil:
		return 0, true, false
	case neg && u <= 1<<63:
		return int64(-u), true, true // -(1<<63) wraps to MinInt64, as wanted
	case !neg && u <= 1<<63-1:
		return int64(u), true, true
	}
	return 0, true, false
}

// describeToken names the JSON type of the value a token begins.
func describeToken(tok json.Token) string {
	switch tok := tok.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case json.Delim:
		if tok == '[' {
			return "an array"
		}
		return "an object"
	}
	return "a JSON value"
}

// tokenProblem words a tokenizer error without echoing the payload.
func tokenProblem(err error) string {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return "the JSON ends early"
	}
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		return fmt.Sprintf("%s at byte %d", clip(syntax.Error(), 2*maxQuoted), syntax.Offset)
	}
	return clip(err.Error(), 2*maxQuoted)
}

// fillIDs reads what it can of the ids of a message that failed to decode,
// so that the caller may still be answered. It reads the first JSON value
// of data, which must be an object; only fields named exactly request_id,
// session_id and op count.
func (e *RequestError) fillIDs(data []byte) {
	var fields map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // a number out of float64's range is no reason to give up
	if dec.Decode(&fields) != nil {
		return
	}
	if s, ok := fields["request_id"].(string); ok && ValidRequestID(s) {
		e.RequestID = s
	}
	if s, ok := fields["session_id"].(string); ok {
		e.SessionID = clip(s, maxErrSessionID)
	}
	if s, ok := fields["op"].(string); ok {
		e.Op = Op(clip(s, maxErrOp))
	}
}

// clip cuts s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
