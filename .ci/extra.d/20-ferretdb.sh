# shellcheck shell=bash
# Sourced by .ci/run before the tests: builds and starts FerretDB v1.24.2 (the
# MongoDB wire protocol over SQLite) on loopback for the MongoDB document-store
# tests (adapters/mongodb/tests), and exports HEARTH_TEST_MONGODB_URL.
#
# Why a wrapper program: `go install .../cmd/ferretdb@v1.24.2` builds, but the
# binary panics at start because the module zip lacks build/version/version.txt
# (see /work/shared/TEST-SERVERS.md). A small `main` that embeds FerretDB as a
# library has no such file to miss.
#
# Idempotent and cached under ${HEARTH_CI_CACHE}/ferretdb: the build is skipped
# when the binary exists; a server already answering on the port is stopped and
# restarted so every run starts from a known binary and an empty state folder.
# Errors propagate under the caller's `set -e`; nothing here calls `exit`.

hearth_ferretdb_version=v1.24.2
hearth_ferretdb_port=${HEARTH_TEST_FERRETDB_PORT:-27018}
hearth_ferretdb_dir="${HEARTH_CI_CACHE:-/var/cache/hearth-ci}/ferretdb"
hearth_ferretdb_bin="${hearth_ferretdb_dir}/bin/hearth-ferretdb-${hearth_ferretdb_version}"

mkdir -p "${hearth_ferretdb_dir}/src" "${hearth_ferretdb_dir}/bin"

if [[ -x "${hearth_ferretdb_bin}" ]]; then
    echo "FerretDB ${hearth_ferretdb_version} already built: ${hearth_ferretdb_bin}"
else
    echo "building FerretDB ${hearth_ferretdb_version} (first run only, ~1 min after downloads)"
    # The wrapper: the SQLite handler on one TCP address, no telemetry, until
    # SIGTERM/SIGINT. The embedded library starts no debug listener, so its
    # default debug port (8088, InfluxDB's RPC port) is never taken.
    cat >"${hearth_ferretdb_dir}/src/main.go" <<'GO'
// Command hearth-ferretdb runs FerretDB embedded as a library, for Hearth's CI.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27018", "TCP address to listen on")
	stateDir := flag.String("state-dir", ".", "folder for the SQLite databases")
	flag.Parse()

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: "file:" + *stateDir + "/",
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log.Printf("FerretDB listening on %s, state in %s", *listen, *stateDir)
	if err := f.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
GO
    (
        cd "${hearth_ferretdb_dir}/src"
        # Everything Go writes stays under the cache folder, whatever the
        # caller's environment says; telemetry of the toolchain itself is off.
        export GOPATH="${hearth_ferretdb_dir}/gopath"
        export GOCACHE="${hearth_ferretdb_dir}/gocache"
        export GOBIN="${hearth_ferretdb_dir}/bin"
        export GOTELEMETRY=off GOFLAGS=-buildvcs=false
        [[ -f go.mod ]] || go mod init hearth.local/ferretdb-ci
        go get "github.com/FerretDB/FerretDB@${hearth_ferretdb_version}"
        go mod tidy
        go build -o "${hearth_ferretdb_bin}.tmp" .
        mv "${hearth_ferretdb_bin}.tmp" "${hearth_ferretdb_bin}"
    )
fi

# A stale server from an earlier run (recorded by pid) is stopped first.
hearth_ferretdb_pidfile="${hearth_ferretdb_dir}/ferretdb.pid"
if [[ -f "${hearth_ferretdb_pidfile}" ]]; then
    hearth_ferretdb_pid=$(cat "${hearth_ferretdb_pidfile}")
    if [[ -n "${hearth_ferretdb_pid}" ]] && kill -0 "${hearth_ferretdb_pid}" 2>/dev/null; then
        echo "stopping the FerretDB of an earlier run (pid ${hearth_ferretdb_pid})"
        kill "${hearth_ferretdb_pid}" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "${hearth_ferretdb_pid}" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "${hearth_ferretdb_pidfile}"
fi

# A fresh state folder: tests make uniquely named databases, but old ones
# would pile up across runs.
rm -rf "${hearth_ferretdb_dir}/state"
mkdir -p "${hearth_ferretdb_dir}/state"
# setsid: the server outlives this shell's job control and is not killed with
# the step that sourced us; .ci/run's tests use it afterwards.
setsid "${hearth_ferretdb_bin}" \
    -listen "127.0.0.1:${hearth_ferretdb_port}" \
    -state-dir "${hearth_ferretdb_dir}/state" \
    >"${hearth_ferretdb_dir}/ferretdb.log" 2>&1 </dev/null &
echo $! >"${hearth_ferretdb_pidfile}"

# Ready when the port accepts connections (bash's /dev/tcp: no extra tool).
hearth_ferretdb_ready=false
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/${hearth_ferretdb_port}") 2>/dev/null; then
        hearth_ferretdb_ready=true
        break
    fi
    if ! kill -0 "$(cat "${hearth_ferretdb_pidfile}")" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if [[ "${hearth_ferretdb_ready}" != true ]]; then
    echo "FerretDB did not accept connections on 127.0.0.1:${hearth_ferretdb_port}; its log:" >&2
    tail -n 40 "${hearth_ferretdb_dir}/ferretdb.log" >&2 || true
    false
fi

export HEARTH_TEST_MONGODB_URL="mongodb://127.0.0.1:${hearth_ferretdb_port}/"
echo "HEARTH_TEST_MONGODB_URL=${HEARTH_TEST_MONGODB_URL} (FerretDB ${hearth_ferretdb_version}, pid $(cat "${hearth_ferretdb_pidfile}"), log ${hearth_ferretdb_dir}/ferretdb.log)"

unset hearth_ferretdb_version hearth_ferretdb_port hearth_ferretdb_dir hearth_ferretdb_bin \
    hearth_ferretdb_pidfile hearth_ferretdb_pid hearth_ferretdb_ready
