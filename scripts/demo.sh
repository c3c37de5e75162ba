#!/usr/bin/env bash
# The main job on the embedded default: run the agent on this host and print its report.
# Exit code is the agent's: 0 all passed, 1 something failed or could not be checked, 2 bad config.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/medsec-agent run --config "${MEDSEC_AGENT_CONFIG:-examples/agent.yaml}" \
  --format "${MEDSEC_FORMAT:-table}" --lang "${MEDSEC_LANG:-en}" --no-push
