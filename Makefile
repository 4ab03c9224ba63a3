# framematch: every target goes through one idempotent, cached `make setup`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
PRISM := .cache/bin/prism
BOOT := .cache/bin/beam-python-boot
BEAM_VERSION := $(shell sed -n 's/^apache-beam==\([^ ]*\).*/\1/p' requirements-lock.txt)
UV := .cache/tools/bin/uv
UV_VERSION := 0.13.9
LOCK_FLAGS := --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--no-header --quiet
export NO_GCE_CHECK := True
# FFmpeg's libraries whose development packages Meta's vpdq (a test dependency) builds against
AV_LIBS := libavcodec libavformat libavfilter libavdevice libswscale libswresample libavutil
AV_DEV := libavcodec-dev libavformat-dev libavfilter-dev libavdevice-dev libswscale-dev \
	libswresample-dev libavutil-dev
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test demo bench eval lint lock clean

setup: $(STAMP) $(PRISM) $(BOOT)

# Beam's Prism runner (the local streaming runner), built from Beam's Go module at the
# pinned Beam version: Beam would download it from GitHub at run time, which offline fails.
$(PRISM): requirements-lock.txt
	@command -v go >/dev/null || { echo "setup: Go is needed to build Beam's Prism runner"; exit 1; }
	@echo "setup: building Beam's Prism runner v$(BEAM_VERSION) (Go, cached in $(PRISM))"
	@start=$$(date +%s); GOBIN=$(abspath .cache/bin) go install \
	  github.com/apache/beam/sdks/v2/go/cmd/prism@v$(BEAM_VERSION) && \
	  echo "setup: prism built in $$(( $$(date +%s) - start )) s"

$(STAMP): setup.py requirements-lock.txt
	@start=$$(date +%s); \
	missing=""; \
	command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing="ffmpeg"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v cmake >/dev/null || missing="$$missing cmake"; \
	command -v pkg-config >/dev/null && pkg-config --exists $(AV_LIBS) || \
	  missing="$$missing pkg-config $(AV_DEV)"; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing$$missing (apt; chromium renders the HTML report in its test;" \
	    "FFmpeg's development packages and cmake build Meta's vpdq, the conformance reference)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    $$missing fonts-dejavu-core >/dev/null; \
	fi; \
	test -x $(PY) || python3 -m venv $(VENV); \
	$(PY) -m pip install -q --upgrade pip && \
	$(PY) -m pip install -q --require-hashes -r requirements-lock.txt && \
	$(PY) -m pip install -q --no-deps -e . && \
	touch $(STAMP) && echo "setup: done in $$(( $$(date +%s) - start )) s"

# Beam's Python SDK container entrypoint (boot), for the portable-runner test whose workers
# install framematch only from the staged --setup_file sdist, as a remote cluster's would.
$(BOOT): requirements-lock.txt
	@command -v go >/dev/null || { echo "setup: Go is needed to build Beam's Python boot"; exit 1; }
	@mkdir -p $(@D)/boot-build
	@GOBIN=$(abspath $(@D)/boot-build) go install \
	  github.com/apache/beam/sdks/v2/python/container@v$(BEAM_VERSION)
	@mv $(@D)/boot-build/container $@ && rmdir $(@D)/boot-build

test: setup
	@start=$$(date +%s); \
	$(PY) -m pytest -n 2 -q tests; rc=$$?; \
	echo "test: $$(( $$(date +%s) - start )) s"; exit $$rc

lint: setup
	$(VENV)/bin/ruff check .

demo: setup
	$(VENV)/bin/framematch demo --work demo-out

eval: setup
	$(VENV)/bin/framematch eval --work eval-out --calibrate

bench: setup
	$(PY) -m bench.run_all

# Regenerate the locks from setup.py (keeping the pinned versions unless setup.py's ranges
# exclude them; `make lock UPGRADE=--upgrade` moves every package to its newest release).
# requirements-lock.txt pins everything `make setup` installs (all extras), with hashes;
# requirements-worker.txt is its subset for the workers' container (no extras).
lock:
	@test -x $(UV) || { python3 -m venv .cache/tools && .cache/tools/bin/pip install -q uv==$(UV_VERSION); }
	$(UV) pip compile setup.py --extra eval --extra test --extra bench $(LOCK_FLAGS) $(UPGRADE) \
	  -o requirements-lock.txt
	$(UV) pip compile setup.py $(LOCK_FLAGS) -c requirements-lock.txt -o requirements-worker.txt

clean:
	rm -rf $(VENV) .cache demo-out bench-out
