# fleetrun — the two commands that matter are `make run` and `make test`.

GO        ?= go
DATA      ?= ./.fleetrun
ADDR      ?= 127.0.0.1:8080
PKGS      ?= ./...

.PHONY: run test vet unit bench tidy-check

## run: the local server with the embedded store and the example scripts
run:
	$(GO) run ./cmd/fleetrun serve --addr $(ADDR) --data $(DATA) --script-root ./examples/scripts

## test: vet and every test (starts and stops what the tests need on 127.0.0.1)
test: vet
	$(GO) test -count=1 -timeout 15m $(PKGS)

vet:
	$(GO) vet $(PKGS)

## unit: the tests that need nothing running
unit:
	$(GO) test -short -count=1 $(PKGS)

## bench: submit/s and status-GET/s against a fresh local server, beside a bare net/http ceiling
bench:
	$(GO) run ./cmd/fleetbench
