# fleetrun — the two commands that matter are `make run` and `make test`.

GO        ?= go
DATA      ?= ./.fleetrun
ADDR      ?= 127.0.0.1:8080
PKGS      ?= ./...

.PHONY: run test vet unit bench fuzz tidy-check

## run: the local server with the embedded store and the example scripts
run:
	$(GO) run ./cmd/fleetrun serve --addr $(ADDR) --data $(DATA) --script-root ./examples/scripts

## test: vet and every test (starts and stops what the tests need on 127.0.0.1)
test: vet lint-template
	$(GO) test -count=1 -timeout 15m $(PKGS)

vet:
	$(GO) vet $(PKGS)

## unit: the tests that need nothing running
unit:
	$(GO) test -short -count=1 $(PKGS)

## fuzz: each fuzz target for FUZZTIME (the seed corpora in testdata/fuzz run with every `go test`)
FUZZTIME ?= 1m
FUZZ_TARGETS := ./internal/httpapi:FuzzDecodeSubmit ./internal/httpapi:FuzzQueryParameters \
	./internal/httpapi:FuzzPreferWait ./internal/httpapi:FuzzIfNoneMatch ./internal/httpapi:FuzzLastEventID \
	./internal/lambdahttp:FuzzAdapter
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "$$fn ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg; done

## bench: submit/s and status-GET/s against a fresh local server, beside a bare net/http ceiling
bench:
	$(GO) run ./cmd/fleetbench

# ---------------------------------------------------------------- Lambda build
# Every function is one Go binary named bootstrap for the provided.al2023 runtime. `sam build`
# runs `make build-<LogicalId>` with ARTIFACTS_DIR set (Metadata BuildMethod: makefile in
# template.yaml). LAMBDA_GOARCH=amd64 (or the host's) builds for a local emulator instead.

LAMBDA_GOOS   ?= linux
LAMBDA_GOARCH ?= arm64
LAMBDA_BUILD   = CGO_ENABLED=0 GOOS=$(LAMBDA_GOOS) GOARCH=$(LAMBDA_GOARCH) $(GO) build -tags lambda.norpc -trimpath -ldflags "-s -w"
FUNCTIONS     := submit status cancel executor progress

.PHONY: build deploy lint-template build-SubmitFunction build-StatusFunction build-CancelFunction build-ExecutorFunction build-ProgressFunction

## build: every function to build/<name>/bootstrap (linux/arm64, stripped)
build:
	@set -e; for fn in $(FUNCTIONS); do echo "build/$$fn/bootstrap"; $(LAMBDA_BUILD) -o build/$$fn/bootstrap ./functions/$$fn; done

build-SubmitFunction:
	$(call lambda,submit)
build-StatusFunction:
	$(call lambda,status)
build-CancelFunction:
	$(call lambda,cancel)
build-ExecutorFunction:
	$(call lambda,executor)
build-ProgressFunction:
	$(call lambda,progress)

# lambda builds ./functions/$(1) to $(ARTIFACTS_DIR)/bootstrap, the contract of `sam build`.
define lambda
	$(if $(ARTIFACTS_DIR),,$(error ARTIFACTS_DIR is not set: sam build sets it, or pass ARTIFACTS_DIR=dir))
	$(LAMBDA_BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/$(1)
endef

## deploy: build and deploy the SAM application (samconfig.toml holds the defaults)
deploy:
	sam build && sam deploy

## lint-template: cfn-lint on the SAM template (part of `make test`)
lint-template:
	cfn-lint template.yaml
