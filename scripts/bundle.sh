#!/usr/bin/env bash
# Builds the offline bundle for hospitals with no internet: DIR/medsec-bundle-VERSION.tar.gz with
# wheels/ (medsec and every Python dependency, for this machine's CPython 3.11 and glibc: Debian
# 12), debs/ (the Debian packages the roles install, their whole dependency closure and a Packages
# index), ansible/ (the roles), README.txt and SHA256SUMS. Needs the network (PyPI and the Debian
# mirror apt uses) and .venv; prints the bundle's path and size, or one line saying what failed.
#   bash scripts/bundle.sh [--out DIR] [--deb-cache DIR]
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
repo=$PWD

die() { echo "bundle: $*" >&2; exit 1; }
# Folders given on the command line are relative to where the command was run.
from_caller() { case $1 in /*) echo "$1" ;; *) echo "$caller/$1" ;; esac; }

out=$repo/dist
deb_cache=/var/cache/medsec-bundle/debs
while (($#)); do
  case $1 in
    --out) (($# >= 2)) || die "--out needs a folder"; out=$(from_caller "$2"); shift 2 ;;
    --deb-cache) (($# >= 2)) || die "--deb-cache needs a folder"; deb_cache=$(from_caller "$2"); shift 2 ;;
    -h|--help) sed -n '2,7s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (usage: bundle.sh [--out DIR] [--deb-cache DIR])" ;;
  esac
done

py=$repo/.venv/bin/python
[ -x "$py" ] || die "no .venv here: run scripts/bootstrap.sh first"
for tool in apt-get apt-cache dpkg-scanpackages sha256sum tar gzip; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian packages apt, dpkg-dev, coreutils, tar, gzip)"
done

version=$("$py" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' pyproject.toml) \
  || die "cannot read project.version from pyproject.toml"
name=medsec-bundle-$version
mkdir -p "$out" 2>/dev/null || die "cannot create $out"
out=$(cd "$out" && pwd)
[ -w "$out" ] || die "cannot write to $out"
mkdir -p "$deb_cache" 2>/dev/null && [ -w "$deb_cache" ] \
  || die "cannot write the deb cache $deb_cache (choose another with --deb-cache DIR)"
deb_cache=$(cd "$deb_cache" && pwd)

# Everything is made in a hidden folder beside the result and renamed at the end: a failed or
# interrupted build leaves nothing behind, and a finished bundle is never half-written.
work=$(mktemp -d "$out/.$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
top=$work/$name
mkdir -p "$top/wheels" "$top/debs"
started=$SECONDS

# Debian packages first: print-uris needs no network, so an unreachable mirror fails fast.
echo "bundle: debs/ (cache $deb_cache)" >&2
"$py" scripts/bundle_debs.py --ansible ansible --cache "$deb_cache" --dest "$top/debs"

# medsec is built from a copy of the checkout, so the build writes nothing (build/, *.egg-info)
# into the working tree, and pip wheel resolves every dependency (not the dev extras).
echo "bundle: wheels/ (pip wheel)" >&2
src=$work/src
mkdir -p "$src"
tar -C "$repo" --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
  -cf - pyproject.toml README.md checks inventory agent collector | tar -C "$src" -xf -
if ! "$py" -m pip wheel --quiet --disable-pip-version-check --retries 2 --timeout 30 \
    --wheel-dir "$top/wheels" "$src" >"$work/pip.log" 2>&1; then
  reason=$(grep -E '^(ERROR|error): ' "$work/pip.log" | tail -n 1 | sed -E 's/^(ERROR|error): //')
  if grep -qE 'NewConnectionError|Network is unreachable|name resolution' "$work/pip.log"; then
    reason="$reason (the package index is unreachable: no network?)"
  fi
  die "pip could not make the wheelhouse: ${reason:-$(tail -n 1 "$work/pip.log")}"
fi
ls "$top/wheels"/medsec-"$version"-*.whl >/dev/null 2>&1 || die "pip made no medsec $version wheel"
if compgen -G "$top/wheels/*.tar.gz" >/dev/null || compgen -G "$top/wheels/*.zip" >/dev/null; then
  die "the wheelhouse holds a source archive, not only wheels"
fi
rm -rf "$src"

tar -C "$repo" --exclude=__pycache__ --exclude=.ansible --exclude='*.retry' -cf - ansible \
  | tar -C "$top" -xf -

agent_debs=$("$py" -c 'import sys, yaml; print(" ".join(yaml.safe_load(open(sys.argv[1]))["medsec_agent_os_packages"]))' \
  ansible/roles/medsec_agent/vars/Debian.yml)
cat >"$top/README.txt" <<EOF
medsec offline bundle $version
Built $(date -u +%Y-%m-%d) for Debian 12 (bookworm, $(dpkg --print-architecture)) with CPython 3.11.

  wheels/     medsec $version and every Python dependency, as wheels (pip needs no index)
  debs/       the Debian packages the agent and collector roles install, with their whole
              dependency closure, and a Packages index: an apt repository in a folder
  ansible/    the medsec_agent and medsec_collector roles, site.yml, an example inventory
  SHA256SUMS  the checksum of every file above

Carrying it into a network with no internet
  1. Beside the tarball, note its checksum:  sha256sum $name.tar.gz > $name.tar.gz.sha256
  2. Carry both on approved media; inside, check the tarball, unpack it, check its contents:
       sha256sum -c $name.tar.gz.sha256
       tar -xzf $name.tar.gz && cd $name && sha256sum -c --quiet SHA256SUMS
  3. Deploy with Ansible from the unpacked folder: see ansible/README.md (the roles install from
     this bundle by default and need no package index).

By hand, on one Debian 12 host (as root, from the unpacked folder):
  mkdir -p /opt/medsec/bundle && cp -r debs wheels /opt/medsec/bundle/
  echo 'deb [trusted=yes] file:/opt/medsec/bundle/debs ./' > /etc/apt/sources.list.d/medsec-bundle.list
  only_bundle='-o Dir::Etc::SourceList=/etc/apt/sources.list.d/medsec-bundle.list -o Dir::Etc::SourceParts=/nonexistent'
  apt-get \$only_bundle update && apt-get \$only_bundle install -y --no-install-recommends $agent_debs
  (apt reads only the bundle: the host's own sources may name the same versions at a mirror it
  cannot reach, and apt would try to fetch them from there)
  python3 -m venv /opt/medsec/.venv
  /opt/medsec/.venv/bin/pip install --no-index --find-links /opt/medsec/bundle/wheels medsec
  /opt/medsec/.venv/bin/medsec-agent --version
EOF

(
  cd "$top"
  find . -type f ! -name SHA256SUMS -printf '%P\0' | LC_ALL=C sort -z | xargs -0 sha256sum >SHA256SUMS
)

# gzip -1: most of the bundle is already compressed (.deb, .whl); harder work saves under 1 %.
tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner -cf - "$name" \
  | gzip -1 -n >"$work/$name.tar.gz" || die "cannot write the tarball"
mv -f "$work/$name.tar.gz" "$out/$name.tar.gz"

size=$(du -m "$out/$name.tar.gz" | cut -f1)
printf '%s/%s.tar.gz %s MB (%d wheels, %d debs, built in %d s)\n' "$out" "$name" "$size" \
  "$(find "$top/wheels" -name '*.whl' | wc -l)" "$(find "$top/debs" -name '*.deb' | wc -l)" \
  "$((SECONDS - started))"
