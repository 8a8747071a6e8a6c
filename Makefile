# sandrun's everyday commands. `make help` lists them.
GO        ?= go
BIN       ?= bin
FUZZTIME  ?= 10s
FUZZ      ?= .
# The images' build tag (deploy/*.Dockerfile): the Cloud Storage client
# without its gRPC transport, which sandrun does not use (a third of a
# program's size).
TAGS      ?= disable_grpc_modules

PYTHON    ?= python3
PYVENV    ?= .venv-python

.PHONY: help build test test-python lint fmt-check vet run emulator fuzz bench reliability clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build every program into ./bin
	$(GO) build -tags $(TAGS) -o $(BIN)/ ./cmd/...

lint: vet fmt-check ## go vet and a gofmt check

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

test: lint ## lint, then every test with the race detector (the reliability suite in its short version), then the Python SDK's
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) test-python

test-python: ## the Python SDK (python/): install it in $(PYVENV), mypy --strict, and its conformance suite against sandrun dev
	$(PYTHON) -m venv $(PYVENV)
	$(PYVENV)/bin/pip install -q -r python/requirements-test.txt ./python
	$(GO) build -tags $(TAGS) -o $(PYVENV)/sandrun ./cmd/sandrun
	cd python && ../$(PYVENV)/bin/mypy sandrun tests ../api/examples/python
	cd python && SANDRUN_BIN=$(CURDIR)/$(PYVENV)/sandrun ../$(PYVENV)/bin/pytest -q -p no:cacheprovider

reliability: ## the reliability suite at full size (2,000 requests per scenario, a 10-minute soak); results in reliability-results.jsonl
	SANDRUN_RELIABILITY=full SANDRUN_RELIABILITY_REPORT=$(CURDIR)/reliability-results.jsonl \
	  $(GO) test -count=1 -timeout 90m -run 'TestReliability' -v ./e2e/

fuzz: ## run each fuzz target (those matching the regexp FUZZ, default all) for FUZZTIME (a duration, or a count such as 500x)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //' | grep -E '$(FUZZ)'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

run: ## start sandrun on the local cloud (sandrun dev)
	$(GO) run ./cmd/sandrun dev

emulator: ## start the local cloud alone
	$(GO) run ./cmd/sandrun emulator

bench: ## measure sandrun against floors measured in the same run (sandrun bench)
	$(GO) run ./cmd/sandrun bench

clean: ## remove built programs and the Python test environment
	rm -rf $(BIN) $(PYVENV)
