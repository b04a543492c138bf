# The two entry points are `make run` and `make test`; both install what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_SECONDS ?=
DEMO_DIR := var/demo

.PHONY: run test deps-run deps-test lint typecheck compat pytest demo clean

# Debian's interpreter (not a pyenv one) so apt-installed bindings (python3-gi,
# python3-systemd) are visible to the daemon and the tests, as on a device.
$(VENV)/.base: setup.cfg
	tools/install-deps run
	/usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[onnxruntime,images,mqtt]'
	touch $@

$(VENV)/.dev: $(VENV)/.base requirements-dev.txt
	tools/install-deps test
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

demo: $(VENV)/.base
	$(PY) tools/make_demo_model.py --out $(DEMO_DIR)

run: demo
	$(VENV)/bin/edged run --config configs/demo.yaml $(if $(RUN_SECONDS),--duration $(RUN_SECONDS))

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check edged tests tools
	$(VENV)/bin/ruff format --check edged tests tools

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy edged

compat: $(VENV)/.dev
	$(VENV)/bin/vermin -t=3.8- --no-tips --violations --backport dataclasses edged tools

pytest: $(VENV)/.dev demo
	$(PY) -m pytest -q

test: lint typecheck compat pytest

clean:
	rm -rf $(VENV) var build *.egg-info

# The Debian package, built from the working tree (tracked and untracked, not ignored
# files) into var/deb/ with Debian's python (DESIGN.md: pyenv's would break pybuild).
DEB_DIR := var/deb
.PHONY: deb
deb:
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/src
	git ls-files -co --exclude-standard -z | xargs -0 tar -cf - | tar -xf - -C $(DEB_DIR)/src
	cd $(DEB_DIR)/src && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b
	ls $(DEB_DIR)/edged_*_all.deb
