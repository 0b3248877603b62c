#!/usr/bin/env bash
# Install the Debian packages the tests need when they are missing (called by `make test`; `.ci/run` calls make test).
#
#   chromium        the browser tests (driven by npm playwright-core)
#   fonts-noto-cjk  Chinese labels in the browser screenshots
#   wrk             the HTTP load generator of benchmarks/load.py (a C client: it does not eat the server's CPU)
#   postgresql + postgresql-<major>-postgis-3
#                   the PostgreSQL + PostGIS store tests; <major> is the server twin.pg starts (the newest
#                   /usr/lib/postgresql/<major>/bin); where the registry has no PostGIS for that major (an image
#                   whose PostgreSQL is older than its Debian release), the distribution's own `postgresql-postgis`
#                   is installed and twin.pg picks that server, which has the extension.
#
# Prints what it installs. Without root or without a reachable registry it prints why and exits 0: the tests that
# need the missing package then skip with that reason printed; nothing else is affected.
set -uo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

have chromium || missing+=(chromium)
have wrk || missing+=(wrk)
installed fonts-noto-cjk || ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1 || missing+=(fonts-noto-cjk)

newest_pg_major() {  # the server twin.pg.postgres_bindir() picks when none has PostGIS yet
  local m best=""
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] || continue
    m=$(basename "$(dirname "$d")")
    if [ -z "$best" ] || [ "$m" -gt "$best" ]; then best=$m; fi
  done
  echo "$best"
}
postgis_major() {  # a server major that has the PostGIS extension installed
  local c
  for c in /usr/share/postgresql/*/extension/postgis.control; do
    [ -f "$c" ] && basename "$(dirname "$(dirname "$c")")"
  done | sort -n | tail -n 1
}

pg_major=$(newest_pg_major)
[ -n "$pg_major" ] || missing+=(postgresql)
need_postgis=0
[ -n "$(postgis_major)" ] || need_postgis=1

if [ ${#missing[@]} -eq 0 ] && [ $need_postgis -eq 0 ]; then
  exit 0
fi

why=""
if [ "$(id -u)" != 0 ]; then
  why="not root"
elif ! have apt-get; then
  why="no apt-get on this machine"
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
  echo "system-deps: installing $*"
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}
candidate() {  # the version apt would install, empty when the registry has none
  apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)'
}

if [ -n "$why" ]; then
  echo "system-deps: cannot install ${missing[*]}$( [ $need_postgis -eq 1 ] && echo " postgis") ($why);" \
       "the tests that need them will skip with this reason."
  exit 0
fi

apt-get update -qq >/dev/null 2>&1 || { echo "system-deps: apt-get update failed (no registry?); tests that need ${missing[*]} will skip."; exit 0; }
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}" || echo "system-deps: could not install ${missing[*]}; the tests that need them will skip."
fi
if [ $need_postgis -eq 1 ]; then
  pg_major=$(newest_pg_major)
  if [ -n "$pg_major" ] && [ -n "$(candidate "postgresql-$pg_major-postgis-3")" ]; then
    apt_install "postgresql-$pg_major-postgis-3"
  else
    echo "system-deps: no PostGIS package for PostgreSQL ${pg_major:-?} in the registry; using the distribution's server"
    apt_install postgresql-postgis
  fi || echo "system-deps: could not install PostGIS; the PostgreSQL store tests will skip."
  [ -n "$(postgis_major)" ] && echo "system-deps: PostGIS ready for PostgreSQL $(postgis_major)"
fi
exit 0
