# Two entry points: `make demo` and `make test`; each sets up .venv on a fresh machine first.
VENV ?= .venv
PY := $(VENV)/bin/python
SECONDS ?= 90

.PHONY: demo test lint proto clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,bench,nats,openvino,ray]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/petstream demo --seconds $(SECONDS)

test: $(VENV)/.installed
	FAIL_WITHOUT_OPENVINO=1 $(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy ingest streaming inference simulators petstream bench fuzz

proto: $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. --pyi_out=. protos/petstream/v1/petstream.proto

clean:
	rm -rf $(VENV) build *.egg-info
