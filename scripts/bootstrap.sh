#!/usr/bin/env bash
# Installs what strongroom's tests and local cycle need on a fresh Debian bookworm
# machine (root or sudo): PostgreSQL 15 server + client, the age and zstd CLIs (interop
# tests and benchmarks), openssl (TLS test certificates), a Java runtime (DynamoDB Local),
# then the npm dependencies.
# Safe to re-run: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1mbootstrap:\033[0m %s\n' "$*" >&2; }

missing=()
for pkg in postgresql age zstd openssl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)

if ((${#missing[@]})); then
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  say "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# moto (the S3 stand-in) comes with this machine image's Python; PyPI is not reachable here.
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
  say "python3 cannot import moto.server: install moto (pip install 'moto[server]==5.2.1') or set AWS_ENDPOINT_URL_S3 to an S3 stand-in such as LocalStack"
  exit 1
fi

if [[ ! -x node_modules/.bin/node ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

# npm 11 may skip dependency install scripts; the Node 22 binary from npm `node@22` needs its own.
if ! node_modules/.bin/node --version 2>/dev/null | grep -q '^v22\.'; then
  say "node_modules/.bin/node is not Node 22: running the node package's install script"
  (cd node_modules/node && npm run preinstall --loglevel=error)
fi
say "ready: $(node_modules/.bin/node --version), $(pg_dump --version), age $(age --version), $(zstd --version | head -1)"
