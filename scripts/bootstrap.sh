#!/usr/bin/env bash
# Installs what strongroom needs on a fresh Debian bookworm machine, then the npm
# dependencies. Safe to re-run: it installs only what is missing, and needs root or sudo
# only when something is missing.
#
#   ./scripts/bootstrap.sh           what `npm run cycle` and the CLI need: PostgreSQL
#                                    (server and client tools)
#   ./scripts/bootstrap.sh --tests   and what the tests need besides: the age and zstd CLIs
#                                    (interop tests, benchmarks), openssl (TLS test
#                                    certificates), bubblewrap (npm run sim's task
#                                    sandbox), a Java runtime (DynamoDB Local), and moto
#                                    (the S3 stand-in)
set -euo pipefail
cd "$(dirname "$0")/.."

say() {
  # Bold on a terminal only, so that logs and CI output read plainly.
  if [[ -t 2 ]]; then printf '\033[1mbootstrap:\033[0m %s\n' "$*" >&2; else printf 'bootstrap: %s\n' "$*" >&2; fi
}
die() {
  say "$*"
  exit 1
}

tests=false
case "${1:-}" in
"") ;;
--tests) tests=true ;;
*) die "unknown argument ${1}; use no argument (the CLI and the local cycle) or --tests (the test suite as well)" ;;
esac

packages=(postgresql)
# The extensions the verify tests restore (PostGIS, pg_cron, pgaudit, pg_partman), for the distribution's server.
if $tests; then packages+=(age zstd openssl bubblewrap postgresql-15-postgis-3 postgresql-15-cron postgresql-15-pgaudit postgresql-15-partman); fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if $tests && ! command -v java >/dev/null 2>&1; then missing+=(default-jre-headless); fi

if ((${#missing[@]})); then
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "missing apt packages: ${missing[*]}; install them as root (apt-get install ${missing[*]}), then re-run"
    sudo="sudo"
  fi
  command -v apt-get >/dev/null 2>&1 || die "missing: ${missing[*]}; this script installs them with apt-get (Debian, Ubuntu); install them with your system's package manager"
  say "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The tests start moto (python3 -m moto.server) for S3, unless AWS_ENDPOINT_URL_S3 names
# another stand-in (LocalStack, say).
if $tests && [[ -z "${AWS_ENDPOINT_URL_S3:-}" ]] && ! python3 -c 'import moto.server' >/dev/null 2>&1; then
  say "installing moto (the S3 stand-in) with pip"
  python3 -m pip install --quiet 'moto[server]==5.2.1' ||
    die "the tests need moto for S3: install it (pip install 'moto[server]==5.2.1') so that python3 -c 'import moto.server' works, or set AWS_ENDPOINT_URL_S3 to another S3 stand-in such as LocalStack"
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

ready="$(node_modules/.bin/node --version), $(pg_dump --version)"
if $tests; then ready+=", age $(age --version), $(zstd --version | head -1)"; fi
say "ready: ${ready}"
