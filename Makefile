# provider-fallback: every target sets up what it needs on a fresh Debian machine.
#   make deploy                               provision THIS machine (pyinfra @local), then
#                                             show what the watchdog sees
#   make render [STACK=path/to/stack.yaml]   render every host file under build/<os>/
#   make test                                 lint, type-check and run the whole test suite
#   make lock                                 regenerate locks/litellm-<version>.txt (hashes)
#   make completion                           shell completion scripts under build/completion
#   make docs                                 regenerate docs/stack-reference.md from the schema
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= inventory/stack.yaml
# Debian tools the tests run for real (promtool, amtool, systemd-analyze; stress-ng loads the
# CPUs in the busy-proxy test).
APT_TOOLS := prometheus prometheus-alertmanager systemd stress-ng

INVENTORY ?= inventory/local.py
# The watchdog's CLI as the deploy installed it on this machine.
HOST_CLI := /opt/provider-fallback/venv/bin/provider-fallback

.PHONY: deploy render test lint unit tools venv clean lock completion docs

# The WinRM transport inventory/windows.py uses: kerberos and credssp need pywinrm's extra of
# that name, installed here with the controller (the connector refuses them without it).
WINRM_TRANSPORT ?= ntlm
comma := ,
EXTRAS := dev$(if $(filter kerberos credssp,$(WINRM_TRANSPORT)),$(comma)$(WINRM_TRANSPORT))

venv: $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
$(VENV)/.installed-$(subst $(comma),-,$(EXTRAS)): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	touch $@

deploy: venv
	$(BIN)/pyinfra -y $(INVENTORY) deploy.py
	@echo "--> provider-fallback status (what the watchdog sees now):"
	@$(HOST_CLI) status --wait 120 || true
	@$(BIN)/python -m tasks.next_steps --stack $(STACK) --cli $(HOST_CLI) || true

lock: venv
	$(BIN)/python -m tasks.wheelhouse lock --stack $(STACK)

render: venv
	$(BIN)/python -m tasks.render --stack $(STACK) --out build

completion: venv
	$(BIN)/python -m tasks.completion --out build/completion

docs: venv
	$(BIN)/python -m tasks.stack_reference > docs/stack-reference.md.tmp
	mv docs/stack-reference.md.tmp docs/stack-reference.md

tools:
	@scripts/ensure-apt-tools.sh $(APT_TOOLS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy monitoring tasks tests bench deploy.py

test: venv tools lint
	$(BIN)/pytest

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
