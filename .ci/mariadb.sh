#!/usr/bin/env bash
# Starts a local MariaDB for the MySQL integration tests and prints
#   export HEARTH_TEST_MYSQL_URL=mysql://...
# on stdout (and nothing else), for `eval "$(bash .ci/mariadb.sh)"`.
#
# Runs as root on Debian 12 without systemd. Idempotent: installs only when
# missing, starts the server only when it does not answer, and (re)creates
# the database, user and grants with IF NOT EXISTS / ALTER USER.
# The tests create one `hearth_test_<uuid>` database per run next to
# `hearth_test`, hence the grant on the `hearth\_test%` pattern.
#
# Overridable: HEARTH_TEST_MYSQL_USER, HEARTH_TEST_MYSQL_PASSWORD,
# HEARTH_TEST_MYSQL_PORT (used only when this script starts the server).
set -euo pipefail

DB_USER=${HEARTH_TEST_MYSQL_USER:-hearth}
DB_PASSWORD=${HEARTH_TEST_MYSQL_PASSWORD:-hearth-test-pw}
DB_PORT=${HEARTH_TEST_MYSQL_PORT:-3306}
DB_NAME=hearth_test

# Everything but the final export goes to stderr: stdout is eval'd.
log() { echo "mariadb.sh: $*" >&2; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

install_server() {
    if command -v mariadbd >/dev/null 2>&1 || [[ -x /usr/sbin/mariadbd ]]; then
        return
    fi
    log "installing mariadb-server"
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq mariadb-server >&2
}

answers() {
    as_root mariadb-admin --protocol=socket ping >/dev/null 2>&1
}

start_server() {
    if answers; then
        log "server already running"
        return
    fi
    log "starting the server"
    as_root install -d -o mysql -g mysql /run/mysqld
    # The init script works without systemd on Debian; mysqld_safe is the
    # fallback for images where it is missing or refuses.
    if ! as_root service mariadb start >&2 2>&1; then
        log "service start failed, falling back to mysqld_safe"
        as_root nohup mysqld_safe --port="${DB_PORT}" --bind-address=127.0.0.1 >/dev/null 2>&1 &
    fi
    local waited=0
    until answers; do
        if ((waited >= 60)); then
            log "server did not answer within 60s"
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "server answers after ${waited}s"
}

create_database_and_user() {
    # root authenticates through the unix socket on Debian: no password here.
    # The password is quoted for SQL by doubling single quotes.
    local pw=${DB_PASSWORD//\'/\'\'}
    as_root mariadb --protocol=socket <<SQL
CREATE DATABASE IF NOT EXISTS \`${DB_NAME}\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '${DB_USER}'@'localhost' IDENTIFIED BY '${pw}';
CREATE USER IF NOT EXISTS '${DB_USER}'@'127.0.0.1' IDENTIFIED BY '${pw}';
ALTER USER '${DB_USER}'@'localhost' IDENTIFIED BY '${pw}';
ALTER USER '${DB_USER}'@'127.0.0.1' IDENTIFIED BY '${pw}';
GRANT ALL PRIVILEGES ON \`hearth\\_test%\`.* TO '${DB_USER}'@'localhost';
GRANT ALL PRIVILEGES ON \`hearth\\_test%\`.* TO '${DB_USER}'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
}

server_port() {
    as_root mariadb --protocol=socket -N -B -e 'SELECT @@port' 2>/dev/null || echo "${DB_PORT}"
}

install_server
start_server
create_database_and_user
port=$(server_port)
# URL-encode the password's reserved characters (the common ones).
encoded_pw=$(printf '%s' "${DB_PASSWORD}" | sed -e 's/%/%25/g' -e 's/@/%40/g' -e 's/:/%3A/g' -e 's#/#%2F#g' -e 's/?/%3F/g' -e 's/#/%23/g')
log "database ${DB_NAME} ready on 127.0.0.1:${port} for user ${DB_USER}"
printf 'export HEARTH_TEST_MYSQL_URL=%q\n' "mysql://${DB_USER}:${encoded_pw}@127.0.0.1:${port}/${DB_NAME}"
