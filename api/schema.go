package api

import _ "embed"

// RequestSchema is the JSON Schema (draft 2020-12) of a request: the JSON a
// backend publishes to the requests topic. It states the rules ParseRequest
// enforces that JSON Schema can state; the few it cannot (sizes in UTF-8
// bytes rather than characters, the total size of env, a field repeated in
// one object) are in its descriptions.
//
//go:embed schema/request.schema.json
var RequestSchema []byte

// CompletionSchema is the JSON Schema (draft 2020-12) of a completion: the
// JSON sandrun publishes to the completions topic, one per request. It lists
// every field this version publishes; a reader should ignore fields it does
// not know, as later versions may add some.
//
//go:embed schema/completion.schema.json
var CompletionSchema []byte
