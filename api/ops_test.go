package api

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
)

// Helpers for request JSON of any op.
func opReq(op Op, fields ...string) string {
	return obj(append([]string{rid, sid, q("op", string(op))}, fields...)...)
}

// n is a JSON field with a literal value (number, boolean, object).
func n(name string, value any) string { return fmt.Sprintf("%q:%v", name, value) }

// minimalFields are the fields with which each op is valid.
var minimalFields = map[Op][]string{
	OpExec:         {echo},
	OpFileRead:     {q("path", "a.txt")},
	OpFileWrite:    {q("path", "a.txt")},
	OpFileDelete:   {q("path", "a.txt")},
	OpFileExists:   {q("path", "a.txt")},
	OpFileFind:     {q("pattern", "*.go")},
	OpFileSearch:   {q("pattern", "TODO")},
	OpFileReplace:  {q("path", "a.txt"), q("old_string", "a")},
	OpFileUpload:   {q("path", "a.txt"), q("object", stagedObject)},
	OpFileDownload: {q("path", "a.txt")},
	OpProcessKill:  {n("pid", 42)},
	OpProcessLogs:  {n("pid", 42)},
	OpProcessWait:  {n("pid", 42)},
	OpProcessWrite: {n("pid", 42), q("content", "y\n")},
}

const stagedObject = "gs://sandrun-local/sessions/s1/transfers/r1/data.bin"

// zeroField is a field with the zero value of its JSON type, and
// someField one with another value.
func zeroField(f requestField) string {
	switch f.kind {
	case kindString:
		return q(f.name, "")
	case kindNumber, kindInteger:
		return n(f.name, 0)
	case kindBool:
		return n(f.name, false)
	}
	return n(f.name, "{}")
}

func someField(f requestField) string {
	switch f.kind {
	case kindString:
		return q(f.name, "x")
	case kindNumber, kindInteger:
		return n(f.name, 1)
	case kindBool:
		return n(f.name, true)
	}
	return n(f.name, `{"A":"1"}`)
}

// opCases are the table cases of the file, process and shell operations,
// and of exec's background, keep_stdin and tty.
func opCases() []parseCase {
	long := func(c byte, n int) string { return strings.Repeat(string(c), n) }
	ok := func(name, data string, want ...*Request) parseCase {
		c := parseCase{name: name, data: data}
		if len(want) > 0 {
			c.want = want[0]
		}
		return c
	}
	bad := func(name, data, reason, msg string) parseCase {
		return parseCase{name: name, data: data, reason: reason, requestID: "r1", msg: msg}
	}
	blind := func(c parseCase) parseCase { c.schemaBlind = true; return c }
	withCode := func(c parseCase, code ErrorCode) parseCase { c.code = code; return c }
	base := Request{RequestID: "r1", SessionID: "s1"}
	want := func(edit func(r *Request)) *Request { r := base; edit(&r); return &r }
	transfer := func(name string) string { return "gs://sandrun-local/sessions/s1/transfers/" + name }

	cases := []parseCase{
		// exec: background, keep_stdin, tty.
		ok("exec background", opReq(OpExec, q("command", "python3 -m http.server 8000"), n("background", true)),
			want(func(r *Request) { r.Op, r.Command, r.Background = OpExec, "python3 -m http.server 8000", true })),
		ok("exec background with keep_stdin", opReq(OpExec, echo, n("background", true), n("keep_stdin", true), q("cwd", "srv"), n("env", `{"PORT":"8000"}`)),
			want(func(r *Request) {
				r.Op, r.Command, r.Background, r.KeepStdin, r.Cwd, r.Env = OpExec, "echo hi", true, true, "srv", map[string]string{"PORT": "8000"}
			})),
		ok("exec tty false", opReq(OpExec, echo, n("tty", false), n("keep_stdin", false), n("background", false), n("timeout_seconds", 5))),
		withCode(bad("exec tty true", opReq(OpExec, echo, n("tty", true)), ReasonNotSupported, ttyMessage), CodeNotSupported),
		withCode(bad("exec tty true without command", opReq(OpExec, n("tty", true)), ReasonNotSupported, "have no terminal"), CodeNotSupported),
		bad("exec tty a string", opReq(OpExec, echo, q("tty", "true")), ReasonNotARequest, `field "tty" must be a boolean, not a string`),
		bad("exec background null", opReq(OpExec, echo, n("background", "null")), ReasonNotARequest, `field "background" must be a boolean, not null`),
		bad("exec background a number", opReq(OpExec, echo, n("background", 1)), ReasonNotARequest, `field "background" must be a boolean, not a number`),
		bad("exec keep_stdin without background", opReq(OpExec, echo, n("keep_stdin", true)), ReasonInvalidField, "keep_stdin is for background processes: it needs background true"),
		bad("exec keep_stdin with background false", opReq(OpExec, echo, n("keep_stdin", true), n("background", false)), ReasonInvalidField, "needs background true"),
		bad("exec background with a timeout", opReq(OpExec, echo, n("background", true), n("timeout_seconds", 5)), ReasonInvalidField, "a background exec takes no timeout_seconds"),
		bad("exec background with a zero timeout", opReq(OpExec, echo, n("background", true), n("timeout_seconds", 0)), ReasonInvalidField, "takes no timeout_seconds"),

		// file.read
		ok("file.read", opReq(OpFileRead, q("path", "src/main.go")), want(func(r *Request) { r.Op, r.Path = OpFileRead, "src/main.go" })),
		ok("file.read with every field", opReq(OpFileRead, q("path", "/etc/hosts"), n("offset", 10), n("length", MaxInlineFileBytes), q("encoding", "base64")),
			want(func(r *Request) {
				r.Op, r.Path, r.Offset, r.Length, r.Encoding = OpFileRead, "/etc/hosts", 10, MaxInlineFileBytes, EncodingBase64
			})),
		ok("file.read with zero offset and length", opReq(OpFileRead, q("path", "a"), n("offset", 0), n("length", 0), q("encoding", "utf-8"))),
		ok("file.read offset 1.0e1", opReq(OpFileRead, q("path", "a"), n("offset", "1.0e1")), want(func(r *Request) { r.Op, r.Path, r.Offset = OpFileRead, "a", 10 })),
		ok("file.read offset 1500e-2", opReq(OpFileRead, q("path", "a"), n("offset", "1500e-2")), want(func(r *Request) { r.Op, r.Path, r.Offset = OpFileRead, "a", 15 })),
		ok("file.read offset -0", opReq(OpFileRead, q("path", "a"), n("offset", "-0"))),
		ok("file.read the largest offset", opReq(OpFileRead, q("path", "a"), n("offset", "9223372036854775807"))),
		ok("file.read unicode path", opReq(OpFileRead, q("path", "données/é ✓.txt"))),
		ok("file.read the longest path", opReq(OpFileRead, q("path", "/"+long('p', MaxPathBytes-1)))),
		bad("file.read with command", opReq(OpFileRead, q("path", "a"), q("command", "cat a")), ReasonInvalidField, "file.read does not take command; its fields are path, offset, length and encoding"),
		bad("process.list with pid", opReq(OpProcessList, n("pid", 1)), ReasonInvalidField, "process.list does not take pid; it takes no field besides request_id, session_id and op"),
		bad("exec with path", opReq(OpExec, echo, q("path", "a")), ReasonInvalidField, "exec does not take path; its fields are command, timeout_seconds, env, cwd, background, keep_stdin and tty"),
		bad("file.read without path", opReq(OpFileRead), ReasonInvalidField, "file.read needs a path"),
		bad("file.read empty path", opReq(OpFileRead, q("path", "")), ReasonInvalidField, "file.read needs a path"),
		bad("file.read path with NUL", opReq(OpFileRead, q("path", "a\x00b")), ReasonInvalidField, "path contains a NUL byte"),
		bad("file.read path a number", opReq(OpFileRead, n("path", 1)), ReasonNotARequest, `field "path" must be a string, not a number`),
		bad("file.read path one byte too long", opReq(OpFileRead, q("path", long('p', MaxPathBytes+1))), ReasonTooLarge, "path is 4097 bytes; the limit is 4096"),
		blind(bad("file.read path too long in bytes", opReq(OpFileRead, q("path", strings.Repeat("é", MaxPathBytes/2+1))), ReasonTooLarge, "path is 4098 bytes")),
		bad("file.read negative offset", opReq(OpFileRead, q("path", "a"), n("offset", -1)), ReasonInvalidField, "offset -1 is outside 0..9223372036854775807"),
		bad("file.read fractional offset", opReq(OpFileRead, q("path", "a"), n("offset", 1.5)), ReasonNotARequest, `field "offset" must be an integer, not 1.5`),
		bad("file.read offset 1e-5", opReq(OpFileRead, q("path", "a"), n("offset", "1e-5")), ReasonNotARequest, "must be an integer, not 1e-5"),
		bad("file.read offset a string", opReq(OpFileRead, q("path", "a"), q("offset", "1")), ReasonNotARequest, `field "offset" must be an integer, not a string`),
		bad("file.read offset past int64", opReq(OpFileRead, q("path", "a"), n("offset", "9223372036854775808")), ReasonNotARequest, `field "offset": number 9223372036854775808 is out of range`),
		bad("file.read offset 1e19", opReq(OpFileRead, q("path", "a"), n("offset", "1e19")), ReasonNotARequest, "out of range"),
		bad("file.read offset 1e400", opReq(OpFileRead, q("path", "a"), n("offset", "1e400")), ReasonNotARequest, "out of range"),
		bad("file.read length over the inline limit", opReq(OpFileRead, q("path", "a"), n("length", MaxInlineFileBytes+1)), ReasonInvalidField, "length 196609 is outside 0..196608"),
		bad("file.read negative length", opReq(OpFileRead, q("path", "a"), n("length", -1)), ReasonInvalidField, "length -1 is outside"),
		bad("file.read encoding hex", opReq(OpFileRead, q("path", "a"), q("encoding", "hex")), ReasonInvalidField, `encoding "hex" is not utf-8 or base64`),
		bad("file.read encoding in capitals", opReq(OpFileRead, q("path", "a"), q("encoding", "UTF-8")), ReasonInvalidField, `encoding "UTF-8" is not`),
		bad("file.read empty encoding", opReq(OpFileRead, q("path", "a"), q("encoding", "")), ReasonInvalidField, `encoding "" is not`),

		// file.write
		ok("file.write", opReq(OpFileWrite, q("path", "a.txt"), q("content", "hello\n")), want(func(r *Request) { r.Op, r.Path, r.EncodedContent = OpFileWrite, "a.txt", "hello\n" })),
		ok("file.write without content", opReq(OpFileWrite, q("path", "empty.txt"))),
		ok("file.write empty content", opReq(OpFileWrite, q("path", "empty.txt"), q("content", ""))),
		ok("file.write base64", opReq(OpFileWrite, q("path", "b.bin"), q("content", "AP8="), q("encoding", "base64"), q("mode", "0755"), n("append", true)),
			want(func(r *Request) {
				r.Op, r.Path, r.EncodedContent, r.Encoding, r.Mode, r.Append = OpFileWrite, "b.bin", "AP8=", EncodingBase64, "0755", true
			})),
		ok("file.write empty base64", opReq(OpFileWrite, q("path", "b.bin"), q("content", ""), q("encoding", "base64"))),
		ok("file.write base64 with non-zero padding bits", opReq(OpFileWrite, q("path", "b.bin"), q("content", "QR=="), q("encoding", "base64"))),
		ok("file.write utf-8 content with NUL", opReq(OpFileWrite, q("path", "a"), q("content", "a\x00b"), q("encoding", "utf-8"))),
		ok("file.write content at the limit", opReq(OpFileWrite, q("path", "a"), q("content", long('x', MaxInlineFileBytes)))),
		ok("file.write mode 7", opReq(OpFileWrite, q("path", "a"), q("mode", "7"))),
		ok("file.write mode 755", opReq(OpFileWrite, q("path", "a"), q("mode", "755"))),
		ok("file.write mode 07777", opReq(OpFileWrite, q("path", "a"), q("mode", "07777"))),
		ok("file.write mode 0", opReq(OpFileWrite, q("path", "a"), q("mode", "0"))),
		ok("file.write append false", opReq(OpFileWrite, q("path", "a"), n("append", false))),
		bad("file.write without path", opReq(OpFileWrite, q("content", "x")), ReasonInvalidField, "file.write needs a path"),
		bad("file.write content not base64", opReq(OpFileWrite, q("path", "a"), q("content", "not base64!"), q("encoding", "base64")), ReasonInvalidField, "content is not base64 (standard alphabet, padded, no line breaks)"),
		bad("file.write base64 with a line break", opReq(OpFileWrite, q("path", "a"), q("content", "QUJD\nREVG"), q("encoding", "base64")), ReasonInvalidField, "content is not base64"),
		bad("file.write base64 unpadded", opReq(OpFileWrite, q("path", "a"), q("content", "AP8"), q("encoding", "base64")), ReasonInvalidField, "content is not base64"),
		bad("file.write base64 of one character", opReq(OpFileWrite, q("path", "a"), q("content", "A"), q("encoding", "base64")), ReasonInvalidField, "content is not base64"),
		bad("file.write base64 url alphabet", opReq(OpFileWrite, q("path", "a"), q("content", "_-8="), q("encoding", "base64")), ReasonInvalidField, "content is not base64"),
		bad("file.write base64 padding inside", opReq(OpFileWrite, q("path", "a"), q("content", "AA==AAAA"), q("encoding", "base64")), ReasonInvalidField, "content is not base64"),
		withCode(bad("file.write content one byte over", opReq(OpFileWrite, q("path", "a"), q("content", long('x', MaxInlineFileBytes+1))), ReasonTooLarge,
			"content is 196609 bytes; the limit of file.write is 196608: write larger files with file.upload"), CodeResourceExhausted),
		withCode(blind(bad("file.write content over in bytes, not characters", opReq(OpFileWrite, q("path", "a"), q("content", strings.Repeat("é", MaxInlineFileBytes/2+1))), ReasonTooLarge,
			"file.upload")), CodeResourceExhausted),
		bad("file.write content a number", opReq(OpFileWrite, q("path", "a"), n("content", 1)), ReasonNotARequest, `field "content" must be a string`),
		bad("file.write append a string", opReq(OpFileWrite, q("path", "a"), q("append", "yes")), ReasonNotARequest, `field "append" must be a boolean`),
		bad("file.write bad encoding", opReq(OpFileWrite, q("path", "a"), q("encoding", "latin1")), ReasonInvalidField, `encoding "latin1" is not utf-8 or base64`),

		// file.delete, file.exists, file.download
		ok("file.delete", opReq(OpFileDelete, q("path", "build"), n("recursive", true)), want(func(r *Request) { r.Op, r.Path, r.Recursive = OpFileDelete, "build", true })),
		ok("file.delete recursive false", opReq(OpFileDelete, q("path", "a"), n("recursive", false))),
		bad("file.delete without path", opReq(OpFileDelete, n("recursive", true)), ReasonInvalidField, "file.delete needs a path"),
		ok("file.exists", opReq(OpFileExists, q("path", "/usr/bin/python3")), want(func(r *Request) { r.Op, r.Path = OpFileExists, "/usr/bin/python3" })),
		bad("file.exists without path", opReq(OpFileExists), ReasonInvalidField, "file.exists needs a path"),
		bad("file.exists path with NUL", opReq(OpFileExists, q("path", "\x00")), ReasonInvalidField, "NUL"),
		ok("file.download", opReq(OpFileDownload, q("path", "dist/app.tar.gz")), want(func(r *Request) { r.Op, r.Path = OpFileDownload, "dist/app.tar.gz" })),
		bad("file.download without path", opReq(OpFileDownload), ReasonInvalidField, "file.download needs a path"),

		// file.list
		ok("file.list", opReq(OpFileList), want(func(r *Request) { r.Op = OpFileList })),
		ok("file.list empty path", opReq(OpFileList, q("path", ""))),
		ok("file.list with every field", opReq(OpFileList, q("path", "src"), n("recursive", true), n("max_depth", 2), n("hidden", true), n("max_results", MaxResults)),
			want(func(r *Request) {
				r.Op, r.Path, r.Recursive, r.MaxDepth, r.Hidden, r.MaxResults = OpFileList, "src", true, 2, true, MaxResults
			})),
		ok("file.list the deepest", opReq(OpFileList, n("recursive", true), n("max_depth", MaxDepth), n("max_results", 0))),
		bad("file.list max_depth without recursive", opReq(OpFileList, n("max_depth", 2)), ReasonInvalidField, "max_depth limits a recursive listing: it needs recursive true"),
		bad("file.list max_depth 0 with recursive false", opReq(OpFileList, n("max_depth", 0), n("recursive", false)), ReasonInvalidField, "needs recursive true"),
		bad("file.list max_depth too deep", opReq(OpFileList, n("recursive", true), n("max_depth", MaxDepth+1)), ReasonInvalidField, "max_depth 4097 is outside 0..4096"),
		bad("file.list negative max_depth", opReq(OpFileList, n("recursive", true), n("max_depth", -1)), ReasonInvalidField, "max_depth -1 is outside"),
		bad("file.list too many results", opReq(OpFileList, n("max_results", MaxResults+1)), ReasonInvalidField, "max_results 10001 is outside 0..10000"),
		bad("file.list negative max_results", opReq(OpFileList, n("max_results", -5)), ReasonInvalidField, "max_results -5 is outside"),
		bad("file.list path with NUL", opReq(OpFileList, q("path", "a\x00")), ReasonInvalidField, "path contains a NUL byte"),

		// file.find
		ok("file.find", opReq(OpFileFind, q("pattern", "**/*.py")), want(func(r *Request) { r.Op, r.Pattern = OpFileFind, "**/*.py" })),
		ok("file.find with every field", opReq(OpFileFind, q("path", "src"), q("pattern", "**/test_?.[a-z]*"), n("max_depth", 3), n("hidden", false), n("max_results", 5))),
		ok("file.find escaped star", opReq(OpFileFind, q("pattern", `a\*b`))),
		ok("file.find negated class", opReq(OpFileFind, q("pattern", "[^.]*/*.go"))),
		ok("file.find **", opReq(OpFileFind, q("pattern", "**"))),
		ok("file.find the longest pattern", opReq(OpFileFind, q("pattern", long('a', MaxPatternBytes)))),
		bad("file.find without pattern", opReq(OpFileFind, q("path", "src")), ReasonInvalidField, "file.find needs a non-empty pattern"),
		bad("file.find empty pattern", opReq(OpFileFind, q("pattern", "")), ReasonInvalidField, "file.find needs a non-empty pattern"),
		bad("file.find absolute pattern", opReq(OpFileFind, q("pattern", "/etc/*.conf")), ReasonInvalidField, `pattern "/etc/*.conf" is not a glob: it begins or ends with '/' or has an empty segment`),
		bad("file.find pattern ending in /", opReq(OpFileFind, q("pattern", "src/")), ReasonInvalidField, "is not a glob"),
		bad("file.find pattern with an empty segment", opReq(OpFileFind, q("pattern", "src//*.go")), ReasonInvalidField, "is not a glob"),
		blind(bad("file.find unclosed class", opReq(OpFileFind, q("pattern", "src/[a-")), ReasonInvalidField, `pattern "src/[a-" is not a well-formed glob: segment "[a-"`)),
		blind(bad("file.find trailing backslash", opReq(OpFileFind, q("pattern", `a\`)), ReasonInvalidField, "is not a well-formed glob")),
		blind(bad("file.find empty class", opReq(OpFileFind, q("pattern", "[]")), ReasonInvalidField, "is not a well-formed glob")),
		bad("file.find pattern too long", opReq(OpFileFind, q("pattern", long('a', MaxPatternBytes+1))), ReasonTooLarge, "pattern is 4097 bytes; the limit is 4096"),
		blind(bad("file.find long pattern quoted clipped", opReq(OpFileFind, q("pattern", long('a', 3000)+"[")), ReasonInvalidField, `pattern "`+long('a', maxQuoted)+`" is not a well-formed glob`)),
		bad("file.find max_results too many", opReq(OpFileFind, q("pattern", "*"), n("max_results", 20000)), ReasonInvalidField, "max_results 20000 is outside"),

		// file.search
		ok("file.search", opReq(OpFileSearch, q("pattern", `func \w+\(`), q("include", "**/*.go")),
			want(func(r *Request) { r.Op, r.Pattern, r.Include = OpFileSearch, `func \w+\(`, "**/*.go" })),
		ok("file.search with every field", opReq(OpFileSearch, q("path", "."), q("pattern", "(?i)todo"), q("include", "*.md"), n("max_depth", 1), n("hidden", true), n("max_results", 1))),
		bad("file.search without pattern", opReq(OpFileSearch, q("include", "*.go")), ReasonInvalidField, "file.search needs a non-empty pattern"),
		bad("file.search empty pattern", opReq(OpFileSearch, q("pattern", "")), ReasonInvalidField, "file.search needs a non-empty pattern"),
		blind(bad("file.search bad regexp", opReq(OpFileSearch, q("pattern", "func (")), ReasonInvalidField, "pattern is not an RE2 regular expression (missing closing ): \"func (\")")),
		blind(bad("file.search lookahead", opReq(OpFileSearch, q("pattern", "a(?=b)")), ReasonInvalidField, "not an RE2 regular expression (invalid or unsupported Perl syntax")),
		blind(bad("file.search repetition too large", opReq(OpFileSearch, q("pattern", "a{1001}")), ReasonInvalidField, "not an RE2 regular expression")),
		bad("file.search empty include", opReq(OpFileSearch, q("pattern", "x"), q("include", "")), ReasonInvalidField, "include is empty: give a glob or leave it out"),
		bad("file.search absolute include", opReq(OpFileSearch, q("pattern", "x"), q("include", "/src/*.go")), ReasonInvalidField, `include "/src/*.go" is not a glob`),
		blind(bad("file.search bad include", opReq(OpFileSearch, q("pattern", "x"), q("include", "*.[ch")), ReasonInvalidField, `include "*.[ch" is not a well-formed glob`)),
		bad("file.search include too long", opReq(OpFileSearch, q("pattern", "x"), q("include", long('i', MaxPatternBytes+1))), ReasonTooLarge, "include is 4097 bytes"),
		bad("file.search pattern too long", opReq(OpFileSearch, q("pattern", long('p', MaxPatternBytes+1))), ReasonTooLarge, "pattern is 4097 bytes"),

		// file.replace
		ok("file.replace", opReq(OpFileReplace, q("path", "a.py"), q("old_string", "x = 1"), q("new_string", "x = 2")),
			want(func(r *Request) { r.Op, r.Path, r.OldString, r.NewString = OpFileReplace, "a.py", "x = 1", "x = 2" })),
		ok("file.replace deleting", opReq(OpFileReplace, q("path", "a.py"), q("old_string", "debug()\n"), q("new_string", ""))),
		ok("file.replace without new_string", opReq(OpFileReplace, q("path", "a.py"), q("old_string", "debug()\n"))),
		ok("file.replace expected_count", opReq(OpFileReplace, q("path", "a"), q("old_string", "a"), n("expected_count", 3)),
			want(func(r *Request) { r.Op, r.Path, r.OldString, r.ExpectedCount = OpFileReplace, "a", "a", 3 })),
		ok("file.replace replace_all", opReq(OpFileReplace, q("path", "a"), q("old_string", "a"), q("new_string", "b"), n("replace_all", true))),
		ok("file.replace replace_all false", opReq(OpFileReplace, q("path", "a"), q("old_string", "a"), n("replace_all", false))),
		bad("file.replace without old_string", opReq(OpFileReplace, q("path", "a"), q("new_string", "b")), ReasonInvalidField, "file.replace needs a non-empty old_string"),
		bad("file.replace empty old_string", opReq(OpFileReplace, q("path", "a"), q("old_string", "")), ReasonInvalidField, "non-empty old_string"),
		bad("file.replace without path", opReq(OpFileReplace, q("old_string", "a")), ReasonInvalidField, "file.replace needs a path"),
		bad("file.replace expected_count 0", opReq(OpFileReplace, q("path", "a"), q("old_string", "a"), n("expected_count", 0)), ReasonInvalidField, "expected_count 0 is outside 1..2147483647"),
		bad("file.replace negative expected_count", opReq(OpFileReplace, q("path", "a"), q("old_string", "a"), n("expected_count", -2)), ReasonInvalidField, "expected_count -2 is outside"),
		bad("file.replace expected_count past int32", opReq(OpFileReplace, q("path", "a"), q("old_string", "a"), n("expected_count", int64(1)<<31)), ReasonInvalidField, "expected_count 2147483648 is outside"),
		bad("file.replace both expected_count and replace_all", opReq(OpFileReplace, q("path", "a"), q("old_string", "a"), n("expected_count", 2), n("replace_all", true)), ReasonInvalidField,
			"file.replace takes expected_count or replace_all, not both"),
		bad("file.replace expected_count with replace_all false", opReq(OpFileReplace, q("path", "a"), q("old_string", "a"), n("expected_count", 2), n("replace_all", false)), ReasonInvalidField, "not both"),

		// file.upload
		ok("file.upload", opReq(OpFileUpload, q("path", "data/in.csv"), q("object", stagedObject)),
			want(func(r *Request) { r.Op, r.Path, r.Object = OpFileUpload, "data/in.csv", stagedObject })),
		ok("file.upload dotted bucket", opReq(OpFileUpload, q("path", "a"), q("object", "gs://my.bucket.example.com/sessions/s1/transfers/x"))),
		ok("file.upload bucket of 3", opReq(OpFileUpload, q("path", "a"), q("object", "gs://a_1/sessions/s1/transfers/x"))),
		ok("file.upload bucket of 63", opReq(OpFileUpload, q("path", "a"), q("object", "gs://"+long('b', 63)+"/sessions/s1/transfers/x"))),
		ok("file.upload name with dots", opReq(OpFileUpload, q("path", "a"), q("object", transfer("r1/.env")+"/.../a..b/..x"))),
		ok("file.upload name with spaces and unicode", opReq(OpFileUpload, q("path", "a"), q("object", transfer("r1/mon fichier é.txt")))),
		bad("file.upload without object", opReq(OpFileUpload, q("path", "a")), ReasonInvalidField, "file.upload needs an object: gs://BUCKET/sessions/s1/transfers/NAME"),
		bad("file.upload empty object", opReq(OpFileUpload, q("path", "a"), q("object", "")), ReasonInvalidField, "file.upload needs an object"),
		bad("file.upload without path", opReq(OpFileUpload, q("object", stagedObject)), ReasonInvalidField, "file.upload needs a path"),
		bad("file.upload object not gs", opReq(OpFileUpload, q("path", "a"), q("object", "s3://b/sessions/s1/transfers/x")), ReasonInvalidField,
			`object "s3://b/sessions/s1/transfers/x" is not gs://BUCKET/sessions/s1/transfers/NAME`),
		bad("file.upload object outside transfers", opReq(OpFileUpload, q("path", "a"), q("object", "gs://sandrun-local/sessions/s1/results/r1/stdout")), ReasonInvalidField, "is not gs://BUCKET/sessions/s1/transfers/NAME"),
		bad("file.upload object outside sessions", opReq(OpFileUpload, q("path", "a"), q("object", "gs://sandrun-local/x")), ReasonInvalidField, "is not gs://"),
		bad("file.upload object without name", opReq(OpFileUpload, q("path", "a"), q("object", transfer(""))), ReasonInvalidField, "is not gs://"),
		bad("file.upload object ending in /", opReq(OpFileUpload, q("path", "a"), q("object", transfer("r1/"))), ReasonInvalidField, "is not gs://"),
		bad("file.upload object with ..", opReq(OpFileUpload, q("path", "a"), q("object", transfer("../../s2/transfers/x"))), ReasonInvalidField, "is not gs://"),
		bad("file.upload object with .. at the end", opReq(OpFileUpload, q("path", "a"), q("object", transfer("r1/.."))), ReasonInvalidField, "is not gs://"),
		bad("file.upload object with .", opReq(OpFileUpload, q("path", "a"), q("object", transfer("r1/./x"))), ReasonInvalidField, "is not gs://"),
		bad("file.upload object with //", opReq(OpFileUpload, q("path", "a"), q("object", transfer("r1//x"))), ReasonInvalidField, "is not gs://"),
		bad("file.upload object with NUL", opReq(OpFileUpload, q("path", "a"), q("object", transfer("r1/x\x00"))), ReasonInvalidField, "is not gs://"),
		bad("file.upload object with a line break", opReq(OpFileUpload, q("path", "a"), q("object", transfer("r1/x\ny"))), ReasonInvalidField, "is not gs://"),
		bad("file.upload bucket of 2", opReq(OpFileUpload, q("path", "a"), q("object", "gs://ab/sessions/s1/transfers/x")), ReasonInvalidField, "is not gs://"),
		bad("file.upload bucket of 64", opReq(OpFileUpload, q("path", "a"), q("object", "gs://"+long('b', 64)+"/sessions/s1/transfers/x")), ReasonInvalidField, "is not gs://"),
		bad("file.upload bucket in capitals", opReq(OpFileUpload, q("path", "a"), q("object", "gs://Sandrun/sessions/s1/transfers/x")), ReasonInvalidField, "is not gs://"),
		bad("file.upload bucket starting with -", opReq(OpFileUpload, q("path", "a"), q("object", "gs://-bucket/sessions/s1/transfers/x")), ReasonInvalidField, "is not gs://"),
		bad("file.upload bucket with ..", opReq(OpFileUpload, q("path", "a"), q("object", "gs://a..b/sessions/s1/transfers/x")), ReasonInvalidField, "is not gs://"),
		blind(bad("file.upload object of another session", opReq(OpFileUpload, q("path", "a"), q("object", "gs://sandrun-local/sessions/s2/transfers/r1/x")), ReasonInvalidField,
			`object is in the transfers of session "s2"; it must be in this session's: gs://BUCKET/sessions/s1/transfers/NAME`)),
		blind(bad("file.upload dotted bucket too long", opReq(OpFileUpload, q("path", "a"), q("object", "gs://"+strings.Repeat(long('b', 62)+".", 3)+long('b', 37)+"/sessions/s1/transfers/x")), ReasonTooLarge,
			"object's bucket name is 226 bytes; the limit is 222")),
		blind(bad("file.upload name too long", opReq(OpFileUpload, q("path", "a"), q("object", transfer(long('n', 1024)))), ReasonTooLarge, "object's name is 1046 bytes; the limit is 1024")),
		bad("file.upload object a number", opReq(OpFileUpload, q("path", "a"), n("object", 1)), ReasonNotARequest, `field "object" must be a string`),
		bad("file.upload long object quoted clipped", opReq(OpFileUpload, q("path", "a"), q("object", "gs://"+long('x', 5000))), ReasonInvalidField, `object "gs://`+long('x', maxQuoted-5)+`" is not`),

		// process.list, shell.view
		ok("process.list", opReq(OpProcessList), want(func(r *Request) { r.Op = OpProcessList })),
		ok("shell.view", opReq(OpShellView), want(func(r *Request) { r.Op = OpShellView })),

		// process.kill
		ok("process.kill by pid", opReq(OpProcessKill, n("pid", 42)), want(func(r *Request) { r.Op, r.PID = OpProcessKill, 42 })),
		ok("process.kill pid 4.2e1", opReq(OpProcessKill, n("pid", "4.2e1")), want(func(r *Request) { r.Op, r.PID = OpProcessKill, 42 })),
		ok("process.kill pid 42.0", opReq(OpProcessKill, n("pid", "42.0")), want(func(r *Request) { r.Op, r.PID = OpProcessKill, 42 })),
		ok("process.kill the largest pid", opReq(OpProcessKill, n("pid", maxPID))),
		ok("process.kill by pattern", opReq(OpProcessKill, q("pattern", `http\.server`), q("signal", "INT"), n("grace_seconds", 0.5)),
			want(func(r *Request) {
				r.Op, r.Pattern, r.Signal, r.GraceSeconds = OpProcessKill, `http\.server`, "INT", 0.5
			})),
		ok("process.kill all", opReq(OpProcessKill, n("all", true), q("signal", "SIGKILL"), n("grace_seconds", 0))),
		ok("process.kill the longest grace", opReq(OpProcessKill, n("pid", 1), n("grace_seconds", 86400))),
		bad("process.kill without target", opReq(OpProcessKill, q("signal", "TERM")), ReasonInvalidField, "process.kill needs one of pid, pattern and all"),
		bad("process.kill pid and pattern", opReq(OpProcessKill, n("pid", 1), q("pattern", "x")), ReasonInvalidField, "process.kill takes only one of pid, pattern and all (pid and pattern are given)"),
		bad("process.kill pid and all", opReq(OpProcessKill, n("pid", 1), n("all", true)), ReasonInvalidField, "(pid and all are given)"),
		bad("process.kill pattern and all false", opReq(OpProcessKill, q("pattern", "x"), n("all", false)), ReasonInvalidField, "(pattern and all are given)"),
		bad("process.kill all three", opReq(OpProcessKill, n("pid", 1), q("pattern", "x"), n("all", true)), ReasonInvalidField, "(pid, pattern and all are given)"),
		bad("process.kill all false", opReq(OpProcessKill, n("all", false)), ReasonInvalidField, "all must be true; to kill by pid or pattern, leave it out"),
		bad("process.kill pid 0", opReq(OpProcessKill, n("pid", 0)), ReasonInvalidField, "pid 0 is not a process id (1 to 2147483647)"),
		bad("process.kill negative pid", opReq(OpProcessKill, n("pid", -1)), ReasonInvalidField, "pid -1 is not a process id"),
		bad("process.kill pid past int32", opReq(OpProcessKill, n("pid", int64(1)<<31)), ReasonInvalidField, "pid 2147483648 is not a process id"),
		bad("process.kill pid a string", opReq(OpProcessKill, q("pid", "42")), ReasonNotARequest, `field "pid" must be an integer, not a string`),
		bad("process.kill fractional pid", opReq(OpProcessKill, n("pid", 4.5)), ReasonNotARequest, `field "pid" must be an integer, not 4.5`),
		bad("process.kill empty pattern", opReq(OpProcessKill, q("pattern", "")), ReasonInvalidField, "process.kill needs a non-empty pattern"),
		blind(bad("process.kill bad pattern", opReq(OpProcessKill, q("pattern", "[")), ReasonInvalidField, "pattern is not an RE2 regular expression (missing closing ]")),
		bad("process.kill unknown signal", opReq(OpProcessKill, n("pid", 1), q("signal", "SEGV")), ReasonInvalidField, `signal "SEGV" is not one of TERM, INT, HUP, KILL, QUIT, USR1 and USR2 (with or without SIG)`),
		bad("process.kill signal in lower case", opReq(OpProcessKill, n("pid", 1), q("signal", "term")), ReasonInvalidField, `signal "term" is not`),
		bad("process.kill empty signal", opReq(OpProcessKill, n("pid", 1), q("signal", "")), ReasonInvalidField, `signal "" is not`),
		bad("process.kill signal SIG", opReq(OpProcessKill, n("pid", 1), q("signal", "SIG")), ReasonInvalidField, `signal "SIG" is not`),
		bad("process.kill signal a number", opReq(OpProcessKill, n("pid", 1), n("signal", 9)), ReasonNotARequest, `field "signal" must be a string, not a number`),
		bad("process.kill negative grace", opReq(OpProcessKill, n("pid", 1), n("grace_seconds", -1)), ReasonInvalidField, "grace_seconds -1 is outside 0..86400"),
		bad("process.kill grace past a day", opReq(OpProcessKill, n("pid", 1), n("grace_seconds", 86401)), ReasonInvalidField, "grace_seconds 86401 is outside"),

		// process.logs
		ok("process.logs", opReq(OpProcessLogs, n("pid", 7), n("offset", 100)), want(func(r *Request) { r.Op, r.PID, r.Offset = OpProcessLogs, 7, 100 })),
		ok("process.logs tail", opReq(OpProcessLogs, n("pid", 7), n("tail_bytes", 4096)), want(func(r *Request) { r.Op, r.PID, r.TailBytes = OpProcessLogs, 7, 4096 })),
		bad("process.logs without pid", opReq(OpProcessLogs, n("offset", 0)), ReasonInvalidField, "process.logs needs a pid"),
		bad("process.logs offset and tail_bytes", opReq(OpProcessLogs, n("pid", 7), n("offset", 1), n("tail_bytes", 1)), ReasonInvalidField, "process.logs takes offset or tail_bytes, not both"),
		bad("process.logs zero offset and tail_bytes", opReq(OpProcessLogs, n("pid", 7), n("offset", 0), n("tail_bytes", 0)), ReasonInvalidField, "not both"),
		bad("process.logs negative tail", opReq(OpProcessLogs, n("pid", 7), n("tail_bytes", -1)), ReasonInvalidField, "tail_bytes -1 is outside"),
		bad("process.logs negative offset", opReq(OpProcessLogs, n("pid", 7), n("offset", -1)), ReasonInvalidField, "offset -1 is outside"),

		// process.wait
		ok("process.wait", opReq(OpProcessWait, n("pid", 7), n("timeout_seconds", 2.5)), want(func(r *Request) { r.Op, r.PID, r.TimeoutSeconds = OpProcessWait, 7, 2.5 })),
		ok("process.wait the longest", opReq(OpProcessWait, n("pid", 7), n("timeout_seconds", 86400))),
		bad("process.wait without pid", opReq(OpProcessWait, n("timeout_seconds", 1)), ReasonInvalidField, "process.wait needs a pid"),
		bad("process.wait too long", opReq(OpProcessWait, n("pid", 7), n("timeout_seconds", 86401)), ReasonInvalidField, "timeout_seconds 86401 is outside 0..86400"),
		bad("process.wait negative timeout", opReq(OpProcessWait, n("pid", 7), n("timeout_seconds", -0.5)), ReasonInvalidField, "timeout_seconds -0.5 is outside"),

		// process.write
		ok("process.write", opReq(OpProcessWrite, n("pid", 7), q("content", "yes\n")), want(func(r *Request) { r.Op, r.PID, r.EncodedContent = OpProcessWrite, 7, "yes\n" })),
		ok("process.write and close", opReq(OpProcessWrite, n("pid", 7), q("content", "AAE="), q("encoding", "base64"), n("close_stdin", true))),
		ok("process.write close only", opReq(OpProcessWrite, n("pid", 7), n("close_stdin", true)), want(func(r *Request) { r.Op, r.PID, r.CloseStdin = OpProcessWrite, 7, true })),
		ok("process.write close with empty content", opReq(OpProcessWrite, n("pid", 7), q("content", ""), n("close_stdin", true))),
		ok("process.write content at the limit", opReq(OpProcessWrite, n("pid", 7), q("content", long('y', MaxProcessWriteBytes)))),
		ok("process.write base64 at the limit", opReq(OpProcessWrite, n("pid", 7), q("encoding", "base64"), q("content", base64.StdEncoding.EncodeToString(make([]byte, MaxProcessWriteBytes))))),
		bad("process.write without pid", opReq(OpProcessWrite, q("content", "x")), ReasonInvalidField, "process.write needs a pid"),
		bad("process.write without content", opReq(OpProcessWrite, n("pid", 7)), ReasonInvalidField, "process.write needs content, or close_stdin true, or both"),
		bad("process.write empty content", opReq(OpProcessWrite, n("pid", 7), q("content", ""), n("close_stdin", false)), ReasonInvalidField, "needs content, or close_stdin true"),
		bad("process.write empty base64", opReq(OpProcessWrite, n("pid", 7), q("content", ""), q("encoding", "base64")), ReasonInvalidField, "needs content"),
		bad("process.write bad base64", opReq(OpProcessWrite, n("pid", 7), q("content", "%%%%"), q("encoding", "base64")), ReasonInvalidField, "content is not base64"),
		withCode(bad("process.write content one byte over", opReq(OpProcessWrite, n("pid", 7), q("content", long('y', MaxProcessWriteBytes+1))), ReasonTooLarge,
			"content is 65537 bytes; the limit of process.write is 65536: send it in several process.write requests"), CodeResourceExhausted),
		// 65536 and 65537 bytes both take 87384 characters of base64.
		withCode(blind(bad("process.write base64 one byte over", opReq(OpProcessWrite, n("pid", 7), q("encoding", "base64"), q("content", base64.StdEncoding.EncodeToString(make([]byte, MaxProcessWriteBytes+1)))), ReasonTooLarge,
			"content is 65537 bytes")), CodeResourceExhausted),
		withCode(blind(bad("process.write over in bytes, not characters", opReq(OpProcessWrite, n("pid", 7), q("content", strings.Repeat("é", MaxProcessWriteBytes/2+1))), ReasonTooLarge,
			"content is 65538 bytes")), CodeResourceExhausted),
		bad("process.write close_stdin a string", opReq(OpProcessWrite, n("pid", 7), q("close_stdin", "true")), ReasonNotARequest, `field "close_stdin" must be a boolean`),
	}

	// Every op takes only its own fields: a field of another op is
	// rejected, with its zero value as with any other, and named.
	for _, op := range servedOps {
		for _, f := range requestFields {
			if takesField(op, f.name) {
				continue
			}
			for _, field := range []string{zeroField(f), someField(f)} {
				fields := append(slices.Clone(minimalFields[op]), field)
				cases = append(cases, parseCase{name: fmt.Sprintf("%s with %s", op, field), data: opReq(op, fields...),
					reason: ReasonInvalidField, requestID: "r1", msg: fmt.Sprintf("%s does not take %s; %s", op, f.name, fieldsSentence(op))})
			}
		}
		// And each op is valid with its minimal fields.
		cases = append(cases, parseCase{name: fmt.Sprintf("%s minimal", op), data: opReq(op, minimalFields[op]...)})
	}
	return cases
}
