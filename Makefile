# fleetrun — the two commands that matter are `make run` and `make test`.

GO        ?= go
DATA      ?= ./.fleetrun
ADDR      ?= 127.0.0.1:8080
PKGS      ?= ./...
BIN       ?= bin/fleetrun

.PHONY: run test vet unit bench fuzz tidy-check chromium screenshot

## run: the local server with the embedded store and the example scripts; Ctrl-C stops it
run:
	$(GO) build -o $(BIN) ./cmd/fleetrun
	@# With job control on, the server runs in a process group of its own in the terminal's
	@# foreground, so Ctrl-C reaches the server alone: it shuts down, exits 0, and so does make.
	@# Without it make would get the signal too, and die of it whatever the server did.
	@set -m 2>/dev/null; $(BIN) serve --addr $(ADDR) --data $(DATA) --script-root ./examples/scripts

## test: vet and every test (starts and stops what the tests need on 127.0.0.1)
test: vet lint-template chromium
	$(GO) test -count=1 -timeout 15m $(PKGS)

vet:
	$(GO) vet $(PKGS)

## chromium: Debian's chromium, which the dashboard's browser tests drive; installed when missing
chromium:
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium for the dashboard's browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## screenshot: docs/dashboard.png, the task page as the browser test renders it
screenshot: chromium
	FLEETRUN_SCREENSHOT=$(CURDIR)/docs/dashboard.png $(GO) test -count=1 -run '^TestTaskPageScreenshot$$' ./internal/dashboard

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

## bench: each row of the performance table as a ratio against its ceiling measured in the same run
bench:
	$(GO) run ./cmd/fleetbench

# ---------------------------------------------------------------- release
# The command-line client (and, on Linux, the local server) for every platform below, each
# stamped with VERSION and COMMIT (`fleetrun --version` prints them), and SHA256SUMS.

DIST           ?= dist
DIST_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
VERSION        ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT         ?= $(shell git rev-parse HEAD 2>/dev/null)
DIST_LDFLAGS    = -s -w -X github.com/fleetrun/fleetrun/internal/cli.version=$(VERSION) \
                  -X github.com/fleetrun/fleetrun/internal/cli.commit=$(COMMIT)

.PHONY: dist

## dist: fleetrun for linux, darwin and windows on amd64 and arm64 in dist/, with SHA256SUMS
dist:
	@rm -rf $(DIST) && mkdir -p $(DIST)
	@set -e; for p in $(DIST_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=; if [ $$os = windows ]; then ext=.exe; fi; \
	  out=fleetrun-$(VERSION)-$$os-$$arch$$ext; echo "$(DIST)/$$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(DIST_LDFLAGS)" -o $(DIST)/$$out ./cmd/fleetrun; \
	done
	@cd $(DIST) && sha256sum fleetrun-* > SHA256SUMS && echo "$(DIST)/SHA256SUMS"

# ---------------------------------------------------------------- Lambda build
# Every function is one Go binary named bootstrap for the provided.al2023 runtime. `sam build`
# runs `make build-<LogicalId>` with ARTIFACTS_DIR set (Metadata BuildMethod: makefile in
# template.yaml). LAMBDA_GOARCH=amd64 (or the host's) builds for a local emulator instead.

LAMBDA_GOOS   ?= linux
LAMBDA_GOARCH ?= arm64
LAMBDA_BUILD   = CGO_ENABLED=0 GOOS=$(LAMBDA_GOOS) GOARCH=$(LAMBDA_GOARCH) $(GO) build -tags lambda.norpc -trimpath -ldflags "-s -w"
FUNCTIONS     := submit status output inventory cancel executor progress sweeper webhook

.PHONY: build deploy deploy-config lint-template build-SubmitFunction build-StatusFunction build-OutputFunction build-InventoryFunction build-CancelFunction build-ExecutorFunction build-ProgressFunction build-SweeperFunction build-WebhookFunction

## build: every function to build/<name>/bootstrap (linux/arm64, stripped)
build:
	@set -e; for fn in $(FUNCTIONS); do echo "build/$$fn/bootstrap"; $(LAMBDA_BUILD) -o build/$$fn/bootstrap ./functions/$$fn; done

build-SubmitFunction:
	$(call lambda,submit)
build-StatusFunction:
	$(call lambda,status)
build-OutputFunction:
	$(call lambda,output)
build-InventoryFunction:
	$(call lambda,inventory)
build-CancelFunction:
	$(call lambda,cancel)
build-ExecutorFunction:
	$(call lambda,executor)
build-ProgressFunction:
	$(call lambda,progress)
build-SweeperFunction:
	$(call lambda,sweeper)
build-WebhookFunction:
	$(call lambda,webhook)

# lambda builds ./functions/$(1) to $(ARTIFACTS_DIR)/bootstrap, the contract of `sam build`.
define lambda
	$(if $(ARTIFACTS_DIR),,$(error ARTIFACTS_DIR is not set: sam build sets it, or pass ARTIFACTS_DIR=dir))
	$(LAMBDA_BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/$(1)
endef

## deploy: build and deploy the SAM application (samconfig.toml holds the defaults)
deploy: deploy-config
	sam build && sam deploy

# deploy-config stops `make deploy` before it builds anything when samconfig.toml does not set
# the one parameter without a default, AllowedScriptBuckets, and says how to set it.
SAMCONFIG ?= samconfig.toml
deploy-config:
	@awk '/^\[/ { deploy = ($$0 == "[default.deploy.parameters]") } \
	     deploy && /^[ \t]*parameter_overrides[ \t]*=/ && /AllowedScriptBuckets=/ { found = 1 } \
	     END { exit !found }' $(SAMCONFIG) || { \
	  echo "make deploy: AllowedScriptBuckets is not set in $(SAMCONFIG)." >&2; \
	  echo "  It names the S3 buckets scriptUrl may point into (comma-separated). Either run" >&2; \
	  echo "  'sam deploy --guided' once (it asks for it and saves the answer), or add under" >&2; \
	  echo "  [default.deploy.parameters]:" >&2; \
	  echo "    parameter_overrides = \"AllowedScriptBuckets=my-fleet-scripts\"" >&2; \
	  exit 2; }

## lint-template: cfn-lint on the SAM template, informational checks included (part of `make test`)
lint-template:
	cfn-lint --include-checks I -- template.yaml
