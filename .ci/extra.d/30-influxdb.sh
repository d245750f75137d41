# shellcheck shell=bash
# Sourced by .ci/run before the tests: builds InfluxDB 1.8.10 from the Go
# module proxy (once; cached), starts it on loopback and exports
# HEARTH_TEST_INFLUXDB_URL for adapters/influxdb/tests. 1.8.10 serves both
# query paths the adapter speaks: Flux (/api/v2/query, flux-enabled) and
# InfluxQL (/query), plus the /api/v2/write compatibility endpoint.
# Safe to source again: the build is skipped when the binary exists and a
# stale server from an earlier run is stopped before a fresh one starts.
# Errors propagate under the caller's `set -e`; nothing here calls `exit`.
#
# Overridable: HEARTH_TEST_INFLUXDB_PORT (HTTP, default 8086) and
# HEARTH_TEST_INFLUXDB_RPC_PORT (backup/restore RPC, default 8089; away from
# FerretDB's debug port 8088).

hearth_influx_version=v1.8.10
hearth_influx_root="${HEARTH_CI_CACHE:-/var/cache/hearth-ci}/influxdb-${hearth_influx_version}"
hearth_influx_bin="${hearth_influx_root}/bin/influxd"
hearth_influx_port="${HEARTH_TEST_INFLUXDB_PORT:-8086}"
hearth_influx_rpc_port="${HEARTH_TEST_INFLUXDB_RPC_PORT:-8089}"
mkdir -p "${hearth_influx_root}"/{bin,go,gocache,meta,data,wal}

if [[ -x "${hearth_influx_bin}" ]]; then
    echo "influxd ${hearth_influx_version} already built at ${hearth_influx_bin}"
else
    if ! command -v go >/dev/null 2>&1; then
        echo "go not found: InfluxDB ${hearth_influx_version} is built from source with Go" >&2
        false
    fi
    echo "building influxd ${hearth_influx_version} (a few minutes, once)"
    # GOFLAGS is cleared so a caller's -mod=vendor cannot break a module build.
    GOPATH="${hearth_influx_root}/go" GOCACHE="${hearth_influx_root}/gocache" \
        GOBIN="${hearth_influx_root}/bin" GOFLAGS=-buildvcs=false \
        go install "github.com/influxdata/influxdb/cmd/influxd@${hearth_influx_version}"
fi

cat >"${hearth_influx_root}/influxdb.conf" <<CONF
# Written by .ci/extra.d/30-influxdb.sh on every run; edits are lost.
reporting-disabled = true
bind-address = "127.0.0.1:${hearth_influx_rpc_port}"

[meta]
  dir = "${hearth_influx_root}/meta"

[data]
  dir = "${hearth_influx_root}/data"
  wal-dir = "${hearth_influx_root}/wal"
  query-log-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:${hearth_influx_port}"
  auth-enabled = false
  flux-enabled = true
  log-enabled = false

[monitor]
  store-enabled = false
CONF

# A server left over from an earlier run may hold the ports and an older
# config: stop the one we started (its pid is recorded), never anything else.
if [[ -f "${hearth_influx_root}/influxd.pid" ]]; then
    hearth_influx_old=$(cat "${hearth_influx_root}/influxd.pid")
    if [[ -n "${hearth_influx_old}" ]] && kill -0 "${hearth_influx_old}" 2>/dev/null \
        && grep -q influxd "/proc/${hearth_influx_old}/cmdline" 2>/dev/null; then
        echo "stopping the influxd left from an earlier run (pid ${hearth_influx_old})"
        kill "${hearth_influx_old}"
        for _ in $(seq 1 50); do
            kill -0 "${hearth_influx_old}" 2>/dev/null || break
            sleep 0.2
        done
    fi
    rm -f "${hearth_influx_root}/influxd.pid"
    unset hearth_influx_old
fi

# setsid detaches it from the CI shell's job control, so it outlives the step.
setsid "${hearth_influx_bin}" run -config "${hearth_influx_root}/influxdb.conf" \
    >"${hearth_influx_root}/influxd.log" 2>&1 </dev/null &
echo $! >"${hearth_influx_root}/influxd.pid"

hearth_influx_url="http://127.0.0.1:${hearth_influx_port}"
# Ready when /ping answers 204 (about 6 s on a cold start); 60 s at most.
hearth_influx_waited=0
until [[ $(curl -s -o /dev/null -w '%{http_code}' "${hearth_influx_url}/ping" || true) == 204 ]] \
    || ((hearth_influx_waited >= 120)); do
    sleep 0.5
    hearth_influx_waited=$((hearth_influx_waited + 1))
done
if ((hearth_influx_waited >= 120)); then
    echo "influxd did not answer /ping within 60s; last log lines:" >&2
    tail -n 20 "${hearth_influx_root}/influxd.log" >&2
    false
fi

export HEARTH_TEST_INFLUXDB_URL="${hearth_influx_url}"
echo "HEARTH_TEST_INFLUXDB_URL=${HEARTH_TEST_INFLUXDB_URL} (influxd ${hearth_influx_version}, log ${hearth_influx_root}/influxd.log)"

unset hearth_influx_version hearth_influx_root hearth_influx_bin hearth_influx_port \
    hearth_influx_rpc_port hearth_influx_url hearth_influx_waited
