# clawvisor developer entry points. Every target that needs the environment depends on
# `setup`, which is idempotent and fast when nothing changed.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PY        := /usr/bin/python3
VENV      := .venv
VPY       := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
KREL      := $(shell uname -r)
APT_PKGS  := nftables python3-nftables python3-bpfcc bpfcc-tools python3-systemd \
             linux-headers-amd64 socat dbus acl python3-venv python3-pip iproute2 \
             util-linux passwd
PYTEST_ARGS ?=

.PHONY: help setup headers tracefs run test lint typecheck pytest bench clean

help:
	@echo "make run    set up, then run the daemon in the foreground (embedded demo config)"
	@echo "make test   set up, then ruff, mypy and the whole pytest suite"
	@echo "make bench  set up, then every benchmark beside its peers (bench/results/)"

setup: $(STAMP) headers tracefs

.apt-stamp-check:
	@missing=$$(for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "apt: installing $$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# BCC compiles bpf/*.c against kernel headers. This VM's kernel has no headers package, so
# link the installed Debian ones (build/ and source/: kbuild needs both): bpf/ uses
# tracepoints only, whose ABI is stable. BCC also needs tracefs for tracepoint ids.
headers: | .apt-stamp-check
	@test -e /lib/modules/$(KREL)/build/Makefile -a -e /lib/modules/$(KREL)/source/Makefile \
	    && exit 0; \
	hdr=$$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1); \
	if [ -z "$$hdr" ]; then echo "no kernel headers under /usr/src" >&2; exit 1; fi; \
	common=$$(sed -n 's|^include \(/.*\)/Makefile$$|\1|p' "$$hdr/Makefile"); \
	[ -n "$$common" ] || common="$$hdr"; \
	mkdir -p /lib/modules/$(KREL); ln -sfn "$$hdr" /lib/modules/$(KREL)/build; \
	ln -sfn "$$common" /lib/modules/$(KREL)/source; \
	echo "linked $$hdr -> /lib/modules/$(KREL)/build, $$common -> source"

tracefs:
	@mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing

$(STAMP): pyproject.toml | .apt-stamp-check
	@test -x $(VPY) || $(PY) -m venv --system-site-packages $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: setup
	$(VENV)/bin/clawvisor serve

test: setup lint typecheck pytest

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

pytest:
	@mkdir -p build
	$(VPY) -m pytest -q $(PYTEST_ARGS) 2>&1 | tee build/pytest.log | tail -n 40; \
	    exit $${PIPESTATUS[0]}

BENCH_APT := bpftrace inotify-tools

bench: setup
	@missing=$$(for p in $(BENCH_APT); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	$(VPY) -m bench.roundtrip
	$(VPY) -m bench.policy_eval
	$(VPY) -m bench.ask_latency
	$(VPY) -m bench.provision
	$(VPY) -m bench.monitors

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
