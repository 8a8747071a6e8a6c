package api

import (
	"slices"
	"strings"
)

// servedOps are the operations sandrun serves, in the order messages list
// them.
var servedOps = []Op{
	OpExec, OpSessionCreate, OpSessionGet, OpSessionDestroy,
	OpFileRead, OpFileWrite, OpFileDelete, OpFileExists, OpFileList, OpFileFind, OpFileSearch, OpFileReplace, OpFileUpload, OpFileDownload,
	OpProcessList, OpProcessKill, OpProcessLogs, OpProcessWait, OpProcessWrite,
	OpShellView,
}

// Served reports whether op is an operation sandrun serves.
func Served(op Op) bool { return slices.Contains(servedOps, op) }

// commonFields are the fields of every request.
var commonFields = []string{"request_id", "session_id", "op"}

// opFields are the fields each operation takes besides the common ones. A
// request may carry no other field.
var opFields = map[Op][]string{
	OpExec:           {"command", "timeout_seconds", "env", "cwd", "background", "keep_stdin", "tty"},
	OpSessionCreate:  nil,
	OpSessionGet:     nil,
	OpSessionDestroy: nil,

	OpFileRead:     {"path", "offset", "length", "encoding"},
	OpFileWrite:    {"path", "content", "encoding", "mode", "append"},
	OpFileDelete:   {"path", "recursive"},
	OpFileExists:   {"path"},
	OpFileList:     {"path", "recursive", "max_depth", "hidden", "max_results"},
	OpFileFind:     {"path", "pattern", "max_depth", "hidden", "max_results"},
	OpFileSearch:   {"path", "pattern", "include", "max_depth", "hidden", "max_results"},
	OpFileReplace:  {"path", "old_string", "new_string", "expected_count", "replace_all"},
	OpFileUpload:   {"path", "object"},
	OpFileDownload: {"path"},

	OpProcessList:  nil,
	OpProcessKill:  {"pid", "pattern", "all", "signal", "grace_seconds"},
	OpProcessLogs:  {"pid", "offset", "tail_bytes"},
	OpProcessWait:  {"pid", "timeout_seconds"},
	OpProcessWrite: {"pid", "content", "encoding", "close_stdin"},

	OpShellView: nil,
}

// takesField reports whether op takes the named field.
func takesField(op Op, field string) bool {
	return slices.Contains(commonFields, field) || slices.Contains(opFields[op], field)
}

// fieldsSentence says which fields op takes, for an error message.
func fieldsSentence(op Op) string {
	fields := opFields[op]
	if len(fields) == 0 {
		return "it takes no field besides request_id, session_id and op"
	}
	return "its fields are " + andList(fields)
}

// andList joins words as "a, b and c".
func andList(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

// servedOpsList names the served operations compactly, as
// "exec, session.create|get|destroy, file.read|write|..., shell.view".
func servedOpsList() string {
	var groups []string
	last := ""
	for _, op := range servedOps {
		prefix, name, found := strings.Cut(string(op), ".")
		if found && prefix == last {
			groups[len(groups)-1] += "|" + name
			continue
		}
		groups = append(groups, string(op))
		last = ""
		if found {
			last = prefix
		}
	}
	return strings.Join(groups, ", ")
}
