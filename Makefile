# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint format system-deps bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[serve,examples,test,webhook,monitor,onnx]'
	touch $(STAMP)

# The demo's GitOps remote is a local git repository, and the service it starts runs gunicorn
# behind nginx, as in the pod.
DEMO_PACKAGES := git nginx-light

demo: $(STAMP)
	@missing="$$(for p in $(DEMO_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	$(PY) examples/demo.py

# Debian packages the tests run for real: git (GitOps remotes), rsync (gitlab-ci-local), nginx
# (the HTTP model registry), R with plumber and the example's packages (the R template),
# chromium (the drift report and the model catalog opened headless), Java (pyspark runs the
# generated Spark job).
APT_PACKAGES := git rsync nginx-light apache2-utils chromium wrk openjdk-17-jre-headless \
	r-base-core r-cran-plumber r-cran-jsonlite r-cran-digest r-cran-caret r-cran-palmerpenguins \
	r-cran-packrat r-cran-ranger r-cran-recipes r-cran-mlr r-cran-future r-cran-promises r-cran-callr \
	r-cran-fastmap r-cran-glmnet r-cran-randomforest r-cran-filelock
# 4.73.0 is the last gitlab-ci-local that runs on Node 20.
GITLAB_CI_LOCAL := .work/npm/node_modules/.bin/gitlab-ci-local
# Playwright's driver alone (no browser download): the catalog tests click through Debian's chromium.
PLAYWRIGHT := .work/npm/node_modules/playwright-core/package.json

system-deps: $(GITLAB_CI_LOCAL) $(PLAYWRIGHT)
	@command -v kubectl >/dev/null || { echo "kubectl is required (kubectl kustomize)"; exit 1; }
	@missing="$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(GITLAB_CI_LOCAL):
	mkdir -p .work/npm
	npm install --silent --no-audit --no-fund --prefix .work/npm gitlab-ci-local@4.73.0

$(PLAYWRIGHT):
	mkdir -p .work/npm
	npm install --silent --no-audit --no-fund --prefix .work/npm playwright-core@1.65.2

# Everything, docstring examples included (pyproject's [tool.pytest.ini_options]); what CI runs.
test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

# Lint and the tests not marked slow, in under two minutes: no venvs, services, R, nginx, chromium
# or notebooks. Needs git and kubectl, which `make system-deps` checks for.
test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) bench/serving.py

clean:
	rm -rf .work .pytest_cache
