# mocd: one binary, built from ./cmd/mocd. See scripts/ for what each target runs.

# The Go tarball installs to /usr/local/go without touching PATH.
ifeq ($(shell command -v go 2>/dev/null),)
ifneq ($(wildcard /usr/local/go/bin/go),)
export PATH := /usr/local/go/bin:$(PATH)
endif
endif

.DEFAULT_GOAL := build

.PHONY: dev test soak build lint bench fuzz openapi-lint image clean

## dev: PostgreSQL + Redis up, then `mocd dev` (api + worker + Fly emulator on loopback)
dev:
	bash scripts/dev.sh

## test: PostgreSQL + Redis up, then go test -race ./... (ARGS="-run X" for more flags)
test:
	bash scripts/test.sh $(ARGS)

## soak: PostgreSQL + Redis up, then the scale-out soak test at length: 2 apis + 2 workers, flysim in chaos mode, worker kills
## (MOC_SOAK_CALLS, default here 1500; MOC_SOAK_CHAOS, default 0.06; MOC_SOAK_SEED, default 1)
soak:
	bash scripts/services.sh
	MOC_SOAK_CALLS=$${MOC_SOAK_CALLS:-1500} go test -race -count=1 -timeout 30m -run '^TestSoak$$' -v ./e2e/

## build: a static binary in bin/mocd
build:
	CGO_ENABLED=0 go build -o bin/mocd ./cmd/mocd

## lint: scripts/lint.sh: gofmt, go vet, staticcheck (all checks), deadcode -test, shellcheck when installed
lint:
	bash scripts/lint.sh

## bench: PostgreSQL + Redis up, then the load harness (cmd/mocdbench): writes BENCHMARKS.md (ARGS="-duration 5s" for flags)
bench:
	bash scripts/services.sh
	go run ./cmd/mocdbench $(ARGS)

## fuzz: PostgreSQL + Redis up, then every native fuzz target for FUZZTIME each (default 60s), one at a time (FUZZMINIMIZETIME, default 10s, per new input)
fuzz:
	bash scripts/services.sh
	bash scripts/fuzz.sh

## openapi-lint: lints the OpenAPI document when scripts/openapi-lint.sh exists
openapi-lint:
	@if [ -f scripts/openapi-lint.sh ]; then \
		bash scripts/openapi-lint.sh; \
	else \
		echo "openapi-lint: scripts/openapi-lint.sh not present; nothing to do"; \
	fi

## image: the container image (needs a Docker engine)
image:
	docker build -f deploy/Dockerfile -t mocd:local .

clean:
	rm -rf bin
