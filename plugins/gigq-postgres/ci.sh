#!/usr/bin/env bash
# CI for gigq-postgres: make sure a PostgreSQL server listens on 127.0.0.1:5432 (start it,
# or install Debian's postgresql and create a local-only cluster), install the plugin into
# the active environment, and run the plugin's tests from its folder.
#
# Called by .ci/run after it activated a venv with the root project installed. The tests
# never skip: an unreachable server fails the run. `ci.sh --server-only` stops once the server
# and the tests' database are ready (.ci/run then runs every plugin's tests itself).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export GIGQ_TEST_POSTGRES_URL="${GIGQ_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

server_ready() {
    command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432
}

start_cluster() {
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    echo "== starting PostgreSQL $version (cluster main)"
    # restart: a fresh install may have started it before its configuration was set.
    pg_ctlcluster --skip-systemctl-redirect "$version" main restart \
        || pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
}

install_postgres() {
    echo "== no PostgreSQL on this machine: installing Debian's postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q postgresql
    local version conf
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    conf="/etc/postgresql/$version/main"
    if [ ! -d "$conf" ]; then
        pg_createcluster "$version" main
    fi
    # Listen on the loopback address only, and trust local TCP logins there: this is a
    # throwaway test server that nothing else can reach.
    sed -i "s/^#\?listen_addresses.*/listen_addresses = '127.0.0.1'/" "$conf/postgresql.conf"
    grep -q "^listen_addresses = '127.0.0.1'" "$conf/postgresql.conf" \
        || echo "listen_addresses = '127.0.0.1'" >>"$conf/postgresql.conf"
    sed -i '1i host all all 127.0.0.1/32 trust' "$conf/pg_hba.conf"
}

if ! server_ready; then
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
        install_postgres
    fi
    start_cluster
    for _ in $(seq 1 60); do
        server_ready && break
        sleep 0.5
    done
    if ! server_ready; then
        echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
        exit 1
    fi
fi
echo "== PostgreSQL is up on 127.0.0.1:5432"

# The tests' database: created when missing (a fresh cluster has only postgres).
database="${GIGQ_TEST_POSTGRES_URL##*/}"
database="${database%%\?*}"
if ! as_postgres psql -h 127.0.0.1 -U postgres -d postgres -Atqc \
    "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1; then
    as_postgres createdb -h 127.0.0.1 -U postgres "$database"
fi

if [ "${1:-}" = "--server-only" ]; then
    exit 0
fi

echo "== installing gigq-postgres"
python -m pip install -q -e "$here"

echo "== gigq-postgres tests"
cd "$here"
python -m pytest -q -p no:cacheprovider
