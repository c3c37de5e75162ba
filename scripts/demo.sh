#!/usr/bin/env bash
# The main job on the embedded default: a collector on SQLite on this host, this host's agent
# enrolled with it, one agent run that prints the report and pushes it, the collector's view of
# the host as an auditor sees it, then the hospital-in-a-box lab built from network namespaces
# and scanned zone by zone with the results stored in the collector (set MEDSEC_DEMO_LAB=0 to skip;
# it needs root); then the MNDS and GB/T 22239 reports (XLSX and PDF), a signed snapshot of what was
# gathered and scanned, verified as an auditor would, and a one-screen clause summary. State lives
# in var/demo (kept between runs: the collector's database accumulates the runs); the lab is
# removed after.
# Exit code is the agent's: 0 all passed, 1 something failed or could not be checked, 2 bad config.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

BIN=.venv/bin
DEMO=${MEDSEC_DEMO_DIR:-$PWD/var/demo}
mkdir -p "$DEMO"
chmod 700 "$DEMO"

if [ ! -f "$DEMO/collector/collector.yaml" ]; then
  "$BIN/medsec" init --dir "$DEMO/collector" >/dev/null
fi
CONF="$DEMO/collector/collector.yaml"
# Keep the port between runs (the agent's credential names the collector's URL).
PORT=$(cat "$DEMO/port" 2>/dev/null || true)
if [ -z "$PORT" ] || [ "$PORT" -lt 1024 ] || ! "$BIN/python" -c 'import socket,sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$PORT" 2>/dev/null; then
  PORT=$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "$PORT" >"$DEMO/port"
fi
URL="https://127.0.0.1:$PORT"
CA="$DEMO/collector/tls/cert.pem"

"$BIN/medsec" serve --config "$CONF" --listen "127.0.0.1:$PORT" >"$DEMO/collector.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -fsS --cacert "$CA" "$URL/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done

cat >"$DEMO/agent.yaml" <<EOF
site: dc1
collector:
  url: $URL
  ca_file: $CA
  credential_file: $DEMO/agent.cred
spool_dir: $DEMO/spool
EOF

# Enrol once; later runs reuse the credential. If it names another URL (the port was taken),
# the old enrolment is revoked and the agent enrols again.
AGENT_NAME=$(hostname)
if ! grep -q "\"$URL\"" "$DEMO/agent.cred" 2>/dev/null; then
  "$BIN/medsec" agents revoke "$AGENT_NAME" --config "$CONF" >/dev/null 2>&1 || true
  "$BIN/medsec" agents enroll "$AGENT_NAME" --config "$CONF" | tail -n 1 |
    "$BIN/medsec-agent" enroll --config "$DEMO/agent.yaml" --collector "$URL" --token - \
      --ca-file "$CA" --name "$AGENT_NAME" --force
fi

set +e
"$BIN/medsec-agent" run --config "$DEMO/agent.yaml" --format "${MEDSEC_FORMAT:-table}" \
  --lang "${MEDSEC_LANG:-en}"
AGENT_EXIT=$?
set -e

TOKEN=$("$BIN/medsec" users add "auditor-$(date +%s%N)" --role auditor --config "$CONF" | tail -n 1)
echo
echo "collector $URL, as an auditor sees it (GET /api/v1/hosts):"
curl -fsS --cacert "$CA" -H "Authorization: Bearer $TOKEN" "$URL/api/v1/hosts" |
  "$BIN/python" -c '
import json, sys
page = json.load(sys.stdin)
for h in page["items"]:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(h["counts"].items()) if v)
    print(f"  {h['"'"'hostname'"'"']}  last report {h['"'"'last_report_at'"'"']}  {counts}")
print(f"  {page['"'"'total'"'"']} host(s)")'

if [ "${MEDSEC_DEMO_LAB:-1}" = 1 ]; then
  export MEDSEC_LAB_PREFIX=demo- MEDSEC_LAB_DIR="$DEMO/lab"
  chmod 755 "$DEMO"   # lab daemons (sshd as probe, apache as www-data) read their files here
  trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true; "$BIN/medsec" lab down >/dev/null 2>&1 || true' EXIT
  echo
  "$BIN/medsec" lab up
  echo "scanning the lab from inside each zone (medsec scan --zones $DEMO/lab/zones.yaml --store):"
  "$BIN/medsec" scan --zones "$DEMO/lab/zones.yaml" --format table --store --config "$CONF" || true
  # The border device over SNMPv3, from the management zone, judged against the zones' borders.
  SNMP="$DEMO/snmp"
  mkdir -p "$SNMP" && chmod 700 "$SNMP"
  "$BIN/python" - "$DEMO/lab/snmp.json" "$SNMP" "$DEMO/lab/zones.yaml" <<'PY'
import json, os, sys
lab, folder, zones = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
v3 = lab["v3"]
for name, secret in (("auth.key", v3["auth_password"]), ("priv.key", v3["priv_password"])):
    fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (secret + "\n").encode()); os.close(fd)
fd = os.open(os.path.join(folder, "targets.yaml"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, json.dumps({
    "devices": [{"address": lab["address"], "port": lab["port"], "version": "3", "user": v3["user"],
                 "auth": {"protocol": "sha", "key_file": "auth.key"},
                 "priv": {"protocol": "aes", "key_file": "priv.key"}}],
    "zones": zones,
}).encode()); os.close(fd)
PY
  echo "the border device over SNMPv3 (medsec inventory snmp --targets $SNMP/targets.yaml --store):"
  ip netns exec "${MEDSEC_LAB_PREFIX}mgmt" "$BIN/medsec" inventory snmp \
    --targets "$SNMP/targets.yaml" --store --config "$CONF" || true
fi

# What an assessor asks for: each standard clause by clause, and a signed snapshot to take away.
REPORTS="$DEMO/reports"
mkdir -p "$REPORTS"
echo
for standard in mnds gbt22239-2019-l3; do
  for format in xlsx pdf; do
    "$BIN/medsec" report --standard "$standard" --format "$format" \
      --out "$REPORTS/$standard.$format" --lang "${MEDSEC_REPORT_LANG:-zh}" --config "$CONF"
  done
done
KEY=$("$BIN/medsec" snapshot create --config "$CONF" --out "$REPORTS/snapshot.zip" | tail -n 1)
echo "$KEY"
"$BIN/medsec" snapshot verify "$REPORTS/snapshot.zip" --expect-key "${KEY##* }"
for standard in gbt22239-2019-l3 mnds; do
  echo
  "$BIN/medsec" report --standard "$standard" --lang "${MEDSEC_LANG:-en}" --config "$CONF"
done
echo
echo "reports and snapshot in $REPORTS: $(cd "$REPORTS" && ls | tr '\n' ' ')"
exit "$AGENT_EXIT"
