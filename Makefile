# `make test` and `make demo` work on a fresh machine with only Python 3 installed:
# the virtual environment is created and filled on first use.
#   make install          torch as pip resolves it (on Linux: CUDA wheels, several GB)
#   make install CPU=1    torch and torchvision from the CPU-only wheel index first (no CUDA libraries)
# (after an install of the other kind: make clean first)
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CPU    ?=
PYTEST_ARGS ?=  # extra pytest arguments for make test, e.g. PYTEST_ARGS="-k docs" (bench/suite_time.py)
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# the torch and torchvision requirements, with their version ranges, as requirements.txt states them
TORCH_REQS := $(shell sed -n -E 's/^(torch(vision)?[<>=!][^ #]*).*/"\1"/p' requirements.txt)

.PHONY: test demo install clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
ifneq ($(CPU),)
	$(VPY) -m pip install -q --index-url $(TORCH_CPU_INDEX) $(TORCH_REQS)
endif
	$(VPY) -m pip install -q -r requirements.txt -r requirements-test.txt
	$(VPY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

test: $(STAMP)
	$(VPY) -m pytest -q -n auto --maxprocesses 8 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# end to end on data generated from scikit-image: writes demo_output/ (--quick: python -m hvc.demo.run --quick)
demo: $(STAMP)
	$(VPY) -m hvc.demo.run

clean:
	rm -rf $(VENV) .pytest_cache
