# netguard — see README.md. `make demo` and `make test` work on a fresh
# machine: they install what they need (Debian packages, Go modules, and a
# kube-apiserver built once per machine into the user cache directory).

GO        ?= go
BIN       := bin/netguard
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS   := -s -w -X github.com/netguard-io/netguard/internal/version.Version=$(VERSION)
IMAGE     ?= ghcr.io/netguard-io/netguard:$(VERSION)
FUZZTIME  ?= 10s
# The oldest Kubernetes netguard supports (the chart's kubeVersion): make
# test runs the API server suites on it too.
K8S_FLOOR ?= v1.30.14

.PHONY: all build test unit integration e2e e2e-node e2e-node-matrix e2e-dns-conformance fuzz bench bench-scale bench-audit bench-reports demo deps assets lint image docker-image node-up node-down clean help

all: build

help: ## List the targets.
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 22

# A fresh machine compiles about 1,000 packages for it: that shows as a step
# with its expected time (hack/lib/step.sh); a rebuild is a plain go build.
build: ## Build bin/netguard.
	@CGO_ENABLED=0 GO=$(GO) bash -c '. hack/lib/step.sh && step_go_build "Building $(BIN) (first run only, up to 3 min on 2 cores)" \
	  -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/netguard'

deps: ## Install the Debian packages the tests use (etcd, nginx, dnsmasq, dnsperf, iptables).
	@hack/install-deps.sh

assets: deps ## Build (once per machine) kube-apiserver, helm and promtool; print the envtest assets directory.
	@hack/helm.sh >/dev/null && hack/promtool.sh >/dev/null && hack/envtest-assets.sh

lint: ## gofmt, go vet, and no built executable or file over 1 MiB tracked.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@hack/check-tree.sh

test: deps ## Run every test: lint, unit, envtest integration, chart and alerts (also on the oldest Kubernetes supported), network-namespace e2e, short fuzzing; then check nothing was left behind.
	@assets=$$(hack/envtest-assets.sh) && floor=$$(K8S_VERSION=$(K8S_FLOOR) hack/envtest-assets.sh) && \
	  helm=$$(hack/helm.sh) && promtool=$$(hack/promtool.sh) && \
	  KUBEBUILDER_ASSETS=$$assets NETGUARD_FLOOR_ASSETS=$$floor HELM=$$helm PROMTOOL=$$promtool FUZZTIME=$(FUZZTIME) hack/test.sh

unit: ## Unit tests only (no control plane, no network namespaces).
	$(GO) test -count=1 ./config/... ./policies/... ./clusterview/... ./serving/... ./webhook/... ./controllers/... ./audit/... ./dnsproxy/... ./serve/... ./internal/... ./cmd/... ./hack/layout/

integration: deps ## Integration tests against a real kube-apiserver and etcd.
	@assets=$$(hack/envtest-assets.sh) && KUBEBUILDER_ASSETS=$$assets NETGUARD_REQUIRE_ENVTEST=1 $(GO) test -count=1 ./test/integration/...

e2e: deps ## Network-namespace tests (root): the nginx/conntrack outage, a Service VIP with silent backends, glibc query counts.
	$(GO) test -count=1 -v ./test/e2e/...

fuzz: ## Fuzz each target for FUZZTIME (default 10s; e.g. make fuzz FUZZTIME=5m).
	@hack/fuzz.sh $(FUZZTIME)

bench: deps ## Benchmarks, each against a baseline in the same run (see README).
	$(GO) test -run '^$$' -bench . -benchmem ./policies/... ./webhook/...
	$(GO) test -run '^$$' -bench 'Selector|Coverage' -benchtime 5000x ./test/bench/
	NETGUARD_BENCH=1 $(GO) test -count=1 -v -run AdmissionLatency ./test/bench/
	hack/bench-dns.sh

SCALE_PODS ?= 25000,100000,150000

bench-scale: deps ## Memory of netguard serve with SCALE_PODS pods on a real API server, beside a plain Pod informer (not part of make test; ~30 min).
	@assets=$$(hack/envtest-assets.sh) && KUBEBUILDER_ASSETS=$$assets NETGUARD_SCALE_PODS=$(SCALE_PODS) \
	  $(GO) test -count=1 -v -timeout 2h -run ServeMemoryAtScale ./test/scale/

AUDIT_PODS ?= 100000

bench-audit: deps ## Time and peak memory of netguard audit with AUDIT_PODS pods on a real API server, beside a plain list of every pod (not part of make test; ~10 min).
	@assets=$$(hack/envtest-assets.sh) && KUBEBUILDER_ASSETS=$$assets NETGUARD_SCALE_PODS=$(AUDIT_PODS) \
	  $(GO) test -count=1 -v -timeout 2h -run AuditAtScale ./test/scale/

REPORTS_PODS ?= 100000

bench-reports: deps ## API requests, time and allocations of one Reports scan over the live view with REPORTS_PODS pods on a real API server, one namespace opted in (not part of make test; ~5 min).
	@assets=$$(hack/envtest-assets.sh) && KUBEBUILDER_ASSETS=$$assets NETGUARD_SCALE_PODS=$(REPORTS_PODS) \
	  $(GO) test -count=1 -v -timeout 1h -run ReportsScanAtScale ./test/scale/

demo: deps ## Run netguard end to end against a local control plane and show what it does.
	@assets=$$(hack/envtest-assets.sh) && KUBEBUILDER_ASSETS=$$assets hack/demo.sh

image: build ## Build the container image as an OCI archive, bin/netguard-image.tar (no engine needed).
	$(GO) run ./hack/image -binary $(BIN) -version $(VERSION) -ref $(IMAGE) -o bin/netguard-image.tar

docker-image: ## Build the container image with a container engine (the Dockerfile).
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

e2e-node: build ## Tests on a real single-node cluster with real pods (root): install, cert-manager renewal, pod DNS, sidecar, the outages, faults.
	@assets=$$(hack/node-assets.sh) && certmanager=$$(hack/cert-manager.sh) && helm=$$(hack/helm.sh) && \
	  NETGUARD_E2E_NODE=1 NETGUARD_NODE_ASSETS="$$assets" NETGUARD_CERT_MANAGER="$$certmanager" HELM="$$helm" NETGUARD_BIN=$(abspath $(BIN)) NETGUARD_VERSION=$(VERSION) \
	  $(GO) test -count=1 -timeout 20m -v -run . ./test/node/e2e/

e2e-node-matrix: build ## The real-node suite on the oldest Kubernetes netguard supports (K8S_FLOOR) and then the newest (root; not in make test: about 4 min each, the first run 8 min more to build the floor's binaries).
	@for v in $(K8S_FLOOR) v1.37.2; do \
	  echo "==> The real-node suite on Kubernetes $$v"; \
	  K8S_VERSION=$$v $(MAKE) --no-print-directory e2e-node || exit 1; \
	done

e2e-dns-conformance: build ## Kubernetes' [sig-network] DNS conformance specs (e2e.test) on a real node with netguard acting on every namespace (root; not in make test; 2 min, the first run 5-15 min more to build e2e.test).
	@assets=$$(hack/node-assets.sh) && certmanager=$$(hack/cert-manager.sh) && helm=$$(hack/helm.sh) && conformance=$$(hack/conformance-assets.sh) && \
	  NETGUARD_DNS_CONFORMANCE=1 NETGUARD_NODE_ASSETS="$$assets" NETGUARD_CERT_MANAGER="$$certmanager" NETGUARD_CONFORMANCE_ASSETS="$$conformance" HELM="$$helm" \
	  NETGUARD_BIN=$(abspath $(BIN)) NETGUARD_VERSION=$(VERSION) NETGUARD_DNS_RESOLVER_DEFAULT=$(NETGUARD_DNS_RESOLVER_DEFAULT) \
	  $(GO) test -count=1 -timeout 90m -v -run . ./test/node/conformance/

node-up: build ## Start a real single-node cluster with cert-manager and netguard installed; the last line printed is its admin kubeconfig.
	@assets=$$(hack/node-assets.sh) && certmanager=$$(hack/cert-manager.sh) && helm=$$(hack/helm.sh) && \
	  $(GO) run ./hack/node up -assets "$$assets" -cert-manager "$$certmanager" -helm "$$helm" -netguard $(BIN) -version $(VERSION)

node-down: ## Stop the node started by node-up and remove everything it made.
	@$(GO) run ./hack/node down

clean:
	rm -rf bin
