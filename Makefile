# `make test` and `make demo` work on a fresh machine with only Python 3 installed:
# the virtual environment is created and filled on first use.
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo install clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q -r requirements.txt
	$(VPY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

test: $(STAMP)
	$(VPY) -m pytest -q

# end to end on data generated from scikit-image: writes demo_output/
demo: $(STAMP)
	$(VPY) -m hvc.demo.run

clean:
	rm -rf $(VENV) .pytest_cache
