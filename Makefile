# Two commands on a fresh Debian 12 machine (as root): `make demo` and `make test`
# (CI also runs `make compose-test`: the docker-compose stack, started for real).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export AIRFLOW_HOME ?= $(CURDIR)/.airflow/demo

.PHONY: install up down demo test compose-test bench

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

test: up            ## the whole test suite on the real local test bed
	$(PY) -m pytest

# Needs no native stack: its own dockerd (scripts/docker_engine.sh), base images pulled or
# stood in for (docker/standins/), the project's images, one day through the compose stack.
compose-test: install  ## docker-compose for real: build, up, a whole day via REST, UI, down -v
	AUDIO_COMPOSE_E2E=1 $(PY) -m pytest tests/containers/test_compose_e2e.py; rc=$$?; \
	  cat .artifacts/compose_e2e_timings.json 2>/dev/null; exit $$rc

bench: install      ## WER of both engines on CPU (the GPU throughput bench: bench/RESULTS.md)
	/opt/hpc-venv/bin/python bench/bench_wer.py --torch-variants unpacked --torch-beams 1,5 --json bench/results/wer_tiny_en_cpu.json
