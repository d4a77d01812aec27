# Two commands on a fresh Debian 12 machine (as root): `make demo` and `make test`
# (CI also runs `make compose-test`: the docker-compose stack, started for real).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export AIRFLOW_HOME ?= $(CURDIR)/.airflow/demo
# What `make check` lints (ruff) and type-checks (mypy): the product and its tests (bench/ is
# measured code, run by hand; `ruff check bench` reports on it).
LINT_PATHS ?= plugins hpc/src dags tests
TYPE_PATHS ?= plugins hpc/src dags tests
# Workers share the bed and PostgreSQL; each is its own namespace (tests/conftest.py).
# loadgroup keeps a module on one worker, so its module fixtures (a day run, a stack, a wheel)
# are set up once, and the shared Airflow stack's tests together; groups are handed out by
# their measured length (longest first: GROUP_SECONDS in tests/conftest.py), not xdist's
# default of most tests first, which starts the few-test, many-minute days last. The unit
# tier is CPU-bound: one worker per core of the 2-core box. The service tests wait on SLURM
# and Airflow a quarter of the time (vmstat: 27 % idle on two workers), so they run on three.
XDIST ?= -n 2 --dist loadgroup --no-loadscope-reorder
XDIST_SERVICES ?= -n 3 --dist loadgroup --no-loadscope-reorder
# The tests that need no bed and no stack (the engine tier: only CPU; the unit and PostgreSQL-
# only tests) run beside the `alone` tests, which mostly wait on SLURM (a node's timeout, a
# minute without slurmdbd), rather than among the rest: one process each (the engine tier on
# two took the CPU the alone tests' shards need: 277 s for them, not 228).
ENGINE_ONLY = engine and not (bed or stack or postgres or alone)
OFF_BED = not (bed or stack or alone or engine)
TEST_PARALLEL = $(PY) -m pytest -m "(bed or stack) and not alone" $(XDIST_SERVICES)
TEST_ALONE = $(PY) -m pytest -m alone
TEST_ENGINE = AUDIO_TEST_NS=_engine $(PY) -m pytest -m "$(ENGINE_ONLY)"
TEST_OFF_BED = AUDIO_TEST_NS=_offbed AUDIO_TEST_STACK_PORT=8181 $(PY) -m pytest -m "$(OFF_BED)"

.PHONY: install up down demo check test test-parallel test-alone compose-test bench \
        cluster-up cluster-down cluster-test

install:            ## Debian packages, the HPC runtime (/opt/hpc-venv) and the Airflow venv
	bash hpc/devcluster/provision.sh install
	bash scripts/postgres.sh install
	bash scripts/install_airflow.sh $(VENV)
	bash scripts/install_audio_hpc.sh /opt/hpc-venv

up: install         ## start SLURM + sshd (test bed) and PostgreSQL
	bash hpc/devcluster/provision.sh configure start
	bash scripts/postgres.sh start

down:               ## stop the local stack
	bash scripts/demo.sh stop || true
	bash hpc/devcluster/provision.sh stop
	bash scripts/postgres.sh stop

demo: up            ## run one whole day end to end on sample clips, print its summary
	bash scripts/demo.sh run

check:              ## lint, format check, types, then the unit tier: no services, < 1 min
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy $(TYPE_PATHS)
	$(PY) -m pytest -q -m unit $(XDIST)

test: up            ## the whole suite on the real local stack: the two parts below
	rc=0; $(MAKE) --no-print-directory test-parallel || rc=$$?; \
	  $(MAKE) --no-print-directory test-alone || rc=$$?; exit $$rc

test-parallel:      ## the tests on the bed or an Airflow stack but `alone`, on 3 workers (after `make up`)
	$(TEST_PARALLEL)

# The engine and off-bed tiers' output is kept apart and printed after the alone tests' (every
# exit code counts).
test-alone:         ## the tests that take the bed from all others, one at a time; beside them the tests that need no bed
	@mkdir -p .artifacts; $(TEST_ENGINE) >.artifacts/engine-tier.log 2>&1 & engine=$$!; \
	  $(TEST_OFF_BED) >.artifacts/off-bed-tier.log 2>&1 & offbed=$$!; \
	  rc=0; $(TEST_ALONE) || rc=$$?; wait $$engine || rc=$$?; wait $$offbed || rc=$$?; \
	  for tier in engine off-bed; do \
	    echo "=== the $$tier tier, run beside the alone tests (.artifacts/$$tier-tier.log):"; \
	    cat .artifacts/$$tier-tier.log; done; exit $$rc

# Needs no native stack: its own dockerd (scripts/docker_engine.sh), base images pulled or
# stood in for (docker/standins/), the project's images, one day through the compose stack.
compose-test: install  ## docker-compose for real: build, up, a whole day via REST, UI, down -v
	AUDIO_COMPOSE_E2E=1 $(PY) -m pytest tests/containers/test_compose_e2e.py; rc=$$?; \
	  cat .artifacts/compose_e2e_timings.json 2>/dev/null; exit $$rc

bench: install      ## WER of both engines on CPU (the GPU throughput bench: bench/RESULTS.md)
	/opt/hpc-venv/bin/python bench/bench_wer.py --torch-variants unpacked --torch-beams 1,5 --json bench/results/wer_tiny_en_cpu.json

# The multi-node SLURM 24.11 cluster in containers (hpc/cluster/): the second world of the
# real-SLURM tests (AUDIO_TEST_CLUSTER=1). Needs the HPC runtime that `install` builds.
cluster-up: install ## SLURM 24.11: slurmctld, slurmdbd + MariaDB, login (127.0.0.1:2223), c1, c2
	bash hpc/cluster/cluster.sh up

cluster-down:       ## stop and remove the cluster's containers (images and keys stay)
	bash hpc/cluster/cluster.sh down

# The cluster's tests on two workers (the plugin's jobs beside the real-SLURM day: one worker
# each), then the `alone` ones, one at a time: sshd, slurmdbd and slurmctld stopped, and the
# DAG day whose compute node is killed mid-shard (every job on that node would die with it).
CLUSTER_TESTS = tests/plugin/test_slurm_real.py tests/hpc/test_day_on_slurm.py \
                tests/dag/test_cluster_day.py
CLUSTER_PYTEST = AUDIO_TEST_CLUSTER=1 $(PY) -m pytest -k cluster

cluster-test: cluster-up ## the real-SLURM tests and a DAG day losing a node, on the 24.11 cluster
	rc=0; $(CLUSTER_PYTEST) -m "not alone" $(XDIST) $(CLUSTER_TESTS) || rc=$$?; \
	  $(CLUSTER_PYTEST) -m alone $(CLUSTER_TESTS) || rc=$$?; exit $$rc
