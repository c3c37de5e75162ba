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
# Two workers (MEDSEC_TEST_WORKERS), the browser tests kept on one of them. The Ansible converge
# tests run afterwards on their own: beside other tests their site's collector was lost
# mid-module in some runs, a cause not yet found. With arguments, exactly those tests run.
workers=${MEDSEC_TEST_WORKERS:-2}
if [ "$#" -gt 0 ]; then
  exec .venv/bin/pytest -n "$workers" --dist loadgroup "$@"
fi
.venv/bin/pytest -n "$workers" --dist loadgroup --ignore=tests/ansible
.venv/bin/pytest tests/ansible
