#!/usr/bin/env bash
# Installs everything medsec needs on a fresh Debian 12 machine: the Debian packages the agent and
# the tests use, and a .venv holding medsec and its Python dependencies. Safe to run again: it
# skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(
  python3-venv pkg-config gcc libtss2-dev      # tpm2-pytss builds against the system TSS
  swtpm swtpm-tools tpm2-tools                 # a real TPM 2.0 for tests and the demo
  util-linux dmidecode pciutils iproute2       # lsblk, blkid, DMI, NICs
  cryptsetup-bin                               # LUKS headers: luksDump, and luksFormat in tests
  restic borgbackup postgresql                 # backup sources the agent reads (and tests build)
  nftables iptables ufw ipset procps           # host firewall policy; ufw and ipset rulesets in tests
  systemd systemd-journal-remote               # journalctl; tests write real journal files with it
  logrotate                                    # logrotate -d is the truth the log tests compare with
  fdisk dosfstools                             # partition layouts of the crypto-erase tests
  hdparm nvme-cli sg3-utils                    # erasure capability of disks
  lynis                                        # the baseline in benchmarks/agent_run.py
  nmap apache2 libapache2-mod-security2 modsecurity-crs nginx   # the hospital-in-a-box lab
  snmpd snmp openssh-server openssh-client curl openssl       # lab services and probes
  libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-noto-cjk  # PDF reports (WeasyPrint)
  poppler-utils                                # pdftotext/pdftoppm read the PDF reports in tests
  debootstrap dpkg-dev                         # Ansible test hosts; the offline bundle's apt index
  prometheus faketime                          # promtool checks /metrics; agent clocks far off in fault tests
  sudo                                         # agentless collection as a non-root user with --sudo
  chromium                                     # the dashboard tests' browser (driven by Playwright)
)

missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Daemons (apache2, nginx, snmpd, sshd) must not start system-wide on install: the lab runs
  # its own copies inside network namespaces. policy-rc.d says so for the install only.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# The log tests read the logrotate files Debian's packages ship (apt-get download, nothing is
# installed): they need the package lists even when every package above is already installed.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
  apt-get update -qq
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Reinstall only when the project's declared dependencies changed.
stamp=.venv/.medsec-deps
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python packages into .venv" >&2
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi
