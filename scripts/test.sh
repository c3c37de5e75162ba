#!/usr/bin/env bash
# Sets up a fresh machine (Debian packages, .venv) and runs everything CI runs:
# ruff, mypy, ansible-lint, and the whole test suite against real components (swtpm, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# The Ansible roles are product code too: production profile, and the playbook parses.
ansible_home=$(mktemp -d)
trap 'rm -rf "$ansible_home"' EXIT
HOME=$ansible_home ANSIBLE_HOME=$ansible_home/.ansible PYTHONWARNINGS=ignore .venv/bin/ansible-lint --offline -q \
  --profile production ansible/
HOME=$ansible_home ANSIBLE_HOME=$ansible_home/.ansible PYTHONWARNINGS=ignore .venv/bin/ansible-playbook --syntax-check \
  -i ansible/inventory/example.yml ansible/site.yml >/dev/null
# The dashboard tests' screenshots (every page, two screen sizes, both languages) are kept here.
export MEDSEC_ARTIFACTS=${MEDSEC_ARTIFACTS:-$PWD/var/test-artefacts}
# Two workers (MEDSEC_TEST_WORKERS); the tests that must share one worker are grouped by path in
# tests/conftest.py (WORKER_GROUPS).
.venv/bin/pytest -n "${MEDSEC_TEST_WORKERS:-2}" --dist loadgroup "$@"
