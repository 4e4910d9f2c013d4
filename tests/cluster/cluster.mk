# The single-node Kubernetes test harness (issue 4); see tests/cluster/README.md. Needs Linux and root.
#   make cluster-up      build what is missing (cached in ~/.cache/fx), start the cluster, wait for Ready
#   make cluster-down    remove everything cluster-up created
#   make e2e             cluster-up if needed, then the end-to-end tests (tests/e2e) against it
#   make cluster-images  only (re)build the cluster's images (pause, CoreDNS archives; the e2e own-image)
#   make e2e-ci          for CI: a fresh cluster, the e2e tests, cluster-down, then fail if the machine
#                        is not as it was before (tests/cluster/footprint.py before/after)
# With FX_E2E_KUBECONFIG=<path>, `make e2e` runs the tests against that cluster and starts nothing.

.PHONY: cluster-up cluster-down cluster-images e2e e2e-ci e2e-tier

cluster-images: install
	$(BIN)/python -m tests.cluster.images

cluster-up: install
	$(BIN)/python -m tests.cluster.up

cluster-down: install
	$(BIN)/python -m tests.cluster.down

ifdef FX_E2E_KUBECONFIG
e2e: install
	$(BIN)/python -m pytest tests/e2e tests/unit/charts -v --durations=25
else
e2e: cluster-up
	FX_E2E=1 $(BIN)/python -m pytest tests/e2e tests/unit/charts -v --durations=25
endif

FOOTPRINT := $(BIN)/python -m tests.cluster.footprint
e2e-ci: install
	$(BIN)/python -m tests.cluster.down
	$(FOOTPRINT) > /tmp/fx-footprint-before
	$(BIN)/python -m tests.cluster.up
	FX_E2E=1 $(BIN)/python -m pytest tests/e2e tests/unit/charts -v --durations=25; status=$$?; \
	$(BIN)/python -m tests.cluster.down; \
	$(FOOTPRINT) > /tmp/fx-footprint-after; \
	diff -u /tmp/fx-footprint-before /tmp/fx-footprint-after || { echo "cluster-down left traces (above)"; status=1; }; \
	rm -f /tmp/fx-footprint-before /tmp/fx-footprint-after; exit $$status

# What `make test` runs last: the e2e tier wherever it can run. The harness needs Linux and root (it
# makes a bridge, cgroups and mounts); elsewhere this says so and passes (fails with FX_REQUIRE_E2E=1, as
# .ci/run sets), and FX_E2E_KUBECONFIG=<path>
# runs the tier against an existing cluster instead. A harness cluster that is already up (yours) is
# used and left running; otherwise one is made for the tier and removed after it (e2e-ci).
CLUSTER_STATE := $(or $(FX_CLUSTER_STATE),/var/lib/fx-cluster)
ifdef FX_E2E_KUBECONFIG
e2e-tier: e2e
else
e2e-tier:
	@if [ -f $(CLUSTER_STATE)/state.json ]; then \
		$(MAKE) --no-print-directory e2e; \
	elif [ "$$(uname -s)" = Linux ] && [ "$$(id -u)" = 0 ]; then \
		$(MAKE) --no-print-directory e2e-ci; \
	else \
		echo "e2e tier not run: the cluster harness needs Linux and root (tests/cluster/README.md);" \
		     "set FX_E2E_KUBECONFIG=<path> to run it against an existing cluster"; \
		if [ "$$FX_REQUIRE_E2E" = 1 ]; then echo "FX_REQUIRE_E2E=1: the e2e tier must run"; exit 1; fi; \
	fi
endif
