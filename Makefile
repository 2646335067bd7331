# pod-reloader: the two set-up commands are `make demo` and `make test`.
# Everything they need (Go-built control plane, Helm, linters, Debian packages)
# is installed by the scripts they call; built binaries live in a cache outside
# the repo (see testbed/lib.sh for the path).
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help deps tools testbed testbed-down test test-rust test-module lint fmt demo build bench

help:
	@echo "make demo          start a local control plane and show a ConfigMap change rolling a Deployment"
	@echo "make test          build missing tools, start the test bed, run every test, stop the test bed"
	@echo "make testbed       start etcd + kube-apiserver + kube-controller-manager on 127.0.0.1"
	@echo "make testbed-down  stop the test bed and remove its data"
	@echo "make lint          cargo fmt --check, cargo clippy -D warnings"
	@echo "make bench         pod-reloader against Stakater Reloader on a test bed of its own (QUICK=1: a tenth of the scale)"

deps:            ## Debian packages the tests need (promtool, openssl)
	@testbed/install-deps.sh

tools: deps      ## Go-built binaries, cached outside the repo
	@testbed/build-tools.sh

testbed: tools
	@NODE=$(NODE) testbed/testbed.sh up

testbed-down:
	@testbed/testbed.sh down

build:
	cargo build --workspace --all-targets

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

test: tools
	@scripts/test.sh

demo: tools
	@scripts/demo.sh

bench: tools     ## docs/benchmarks.md; QUICK=1 for a tenth of the scale (not part of make test)
	@QUICK=$(QUICK) scripts/bench.sh

# Releases (docs/RELEASES.md). No Docker engine: crane and a local registry
# are built from the Go module proxy like the other tools.
.PHONY: images release promote

images:          ## OCI images of the controller and the hooks into target/images (REGISTRY=host/path also pushes them)
	@scripts/images.sh $(if $(REGISTRY),--push $(REGISTRY))

release:         ## make release VERSION=vX.Y.Z [REGISTRY=host/path] [CHANNEL=alpha]: images, bundle, release image
	@scripts/release.sh release "$(VERSION)" "$(REGISTRY)" "$(CHANNEL)"

promote:         ## make promote VERSION=vX.Y.Z CHANNEL=stable REGISTRY=host/path: move a channel tag, never rebuild
	@scripts/release.sh promote "$(VERSION)" "$(CHANNEL)" "$(REGISTRY)"
