# shellcheck shell=bash
# Sourced by .ci/run before the tests: builds Ory Hydra v2.3.0 from the Go
# module proxy (once; cached), starts it on loopback with an in-memory DSN and
# JWT access tokens, registers a client-credentials client and exports what
# the OIDC integration tests need:
#   HEARTH_TEST_OIDC_ISSUER         issuer URL (public port, discovery there)
#   HEARTH_TEST_OIDC_ADMIN_URL      admin port (tests rotate the JWKS there)
#   HEARTH_TEST_OIDC_CLIENT_ID      client of the client-credentials flow
#   HEARTH_TEST_OIDC_CLIENT_SECRET  its secret
#   HEARTH_TEST_OIDC_AUDIENCE       the audience Hearth accepts
#   HEARTH_TEST_OIDC_OTHER_AUDIENCE a second audience the client may request
# `go install github.com/ory/hydra/v2@v2.3.0` is refused (its go.mod has
# replace directives), so it is built in a small wrapper module that repeats
# the one replace that matters (see /work/shared/TEST-SERVERS.md).
# Safe to source again: the build is skipped when the binary exists and a
# stale server from an earlier run is stopped before a fresh one starts.
# Errors propagate under the caller's `set -e`; nothing here calls `exit`.
#
# Overridable: HEARTH_TEST_OIDC_PUBLIC_PORT (default 4444) and
# HEARTH_TEST_OIDC_ADMIN_PORT (default 4445).

hearth_hydra_version=v2.3.0
hearth_hydra_root="${HEARTH_CI_CACHE:-/var/cache/hearth-ci}/hydra-${hearth_hydra_version}"
hearth_hydra_bin="${hearth_hydra_root}/bin/hydra"
hearth_hydra_public="${HEARTH_TEST_OIDC_PUBLIC_PORT:-4444}"
hearth_hydra_admin="${HEARTH_TEST_OIDC_ADMIN_PORT:-4445}"
mkdir -p "${hearth_hydra_root}"/{bin,go,gocache,src}

if [[ -x "${hearth_hydra_bin}" ]]; then
    echo "hydra ${hearth_hydra_version} already built at ${hearth_hydra_bin}"
else
    if ! command -v go >/dev/null 2>&1; then
        echo "go not found: Ory Hydra ${hearth_hydra_version} is built from source with Go" >&2
        false
    fi
    echo "building hydra ${hearth_hydra_version} (a few minutes, once)"
    (
        set -e
        cd "${hearth_hydra_root}/src"
        export GOPATH="${hearth_hydra_root}/go" GOCACHE="${hearth_hydra_root}/gocache" \
            GOFLAGS=-buildvcs=false
        [[ -f go.mod ]] || go mod init hearth-ci/hydra
        go get -tool "github.com/ory/hydra/v2@${hearth_hydra_version}"
        # Hydra's own go.mod replaces pop with Ory's fork; a wrapper module
        # must say so itself or the build picks the upstream package.
        go mod edit -replace github.com/gobuffalo/pop/v6=github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b
        go get "github.com/ory/hydra/v2/driver@${hearth_hydra_version}" github.com/ory/x/popx@v0.0.675
        # sqlite tags: without them the in-memory DSN is refused at start.
        go build -tags sqlite,sqlite_omit_load_extension -o "${hearth_hydra_bin}.tmp" github.com/ory/hydra/v2
        mv "${hearth_hydra_bin}.tmp" "${hearth_hydra_bin}"
    )
fi

# A server left over from an earlier run holds the ports and an in-memory
# state we cannot know: stop the one we started (its pid is recorded).
if [[ -f "${hearth_hydra_root}/hydra.pid" ]]; then
    hearth_hydra_old=$(cat "${hearth_hydra_root}/hydra.pid")
    if [[ -n "${hearth_hydra_old}" ]] && kill -0 "${hearth_hydra_old}" 2>/dev/null \
        && grep -q hydra "/proc/${hearth_hydra_old}/cmdline" 2>/dev/null; then
        echo "stopping the hydra left from an earlier run (pid ${hearth_hydra_old})"
        kill "${hearth_hydra_old}"
        for _ in $(seq 1 50); do
            kill -0 "${hearth_hydra_old}" 2>/dev/null || break
            sleep 0.2
        done
    fi
    rm -f "${hearth_hydra_root}/hydra.pid"
    unset hearth_hydra_old
fi

hearth_hydra_issuer="http://127.0.0.1:${hearth_hydra_public}"
# The system secret only protects Hydra's in-memory state of this CI run.
hearth_hydra_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
# setsid detaches it from the CI shell's job control, so it outlives the step.
SECRETS_SYSTEM="${hearth_hydra_secret}" DSN=memory \
    SERVE_PUBLIC_HOST=127.0.0.1 SERVE_PUBLIC_PORT="${hearth_hydra_public}" \
    SERVE_ADMIN_HOST=127.0.0.1 SERVE_ADMIN_PORT="${hearth_hydra_admin}" \
    URLS_SELF_ISSUER="${hearth_hydra_issuer}" STRATEGIES_ACCESS_TOKEN=jwt \
    LOG_LEVEL=warn \
    setsid "${hearth_hydra_bin}" serve all --dev --sqa-opt-out \
    >"${hearth_hydra_root}/hydra.log" 2>&1 </dev/null &
echo $! >"${hearth_hydra_root}/hydra.pid"

# Ready when the admin health check answers 200; 60 s at most.
hearth_hydra_waited=0
until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${hearth_hydra_admin}/health/ready" || true) == 200 ]] \
    || ((hearth_hydra_waited >= 120)); do
    sleep 0.5
    hearth_hydra_waited=$((hearth_hydra_waited + 1))
done
if ((hearth_hydra_waited >= 120)); then
    echo "hydra did not become ready within 60s; last log lines:" >&2
    tail -n 20 "${hearth_hydra_root}/hydra.log" >&2
    false
fi

# The client Hearth's tests use: an integrator with client credentials whose
# tokens are JWTs for Hearth's audience (or, asked for it, another one).
hearth_hydra_client_secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
curl -sf -o "${hearth_hydra_root}/client.json" -X POST \
    -H 'Content-Type: application/json' \
    "http://127.0.0.1:${hearth_hydra_admin}/admin/clients" \
    -d "{\"client_name\":\"hearth-ci\",\"client_secret\":\"${hearth_hydra_client_secret}\",
         \"grant_types\":[\"client_credentials\"],\"response_types\":[\"token\"],
         \"token_endpoint_auth_method\":\"client_secret_post\",
         \"access_token_strategy\":\"jwt\",
         \"audience\":[\"hearth-api\",\"other-api\"]}" || {
    echo "hydra refused to create the test client; last log lines:" >&2
    tail -n 20 "${hearth_hydra_root}/hydra.log" >&2
    false
}
hearth_hydra_client_id=$(sed -n 's/.*"client_id":"\([^"]*\)".*/\1/p' "${hearth_hydra_root}/client.json")
if [[ -z "${hearth_hydra_client_id}" ]]; then
    echo "hydra did not return a client id:" >&2
    cat "${hearth_hydra_root}/client.json" >&2
    false
fi

export HEARTH_TEST_OIDC_ISSUER="${hearth_hydra_issuer}"
export HEARTH_TEST_OIDC_ADMIN_URL="http://127.0.0.1:${hearth_hydra_admin}"
export HEARTH_TEST_OIDC_CLIENT_ID="${hearth_hydra_client_id}"
export HEARTH_TEST_OIDC_CLIENT_SECRET="${hearth_hydra_client_secret}"
export HEARTH_TEST_OIDC_AUDIENCE=hearth-api
export HEARTH_TEST_OIDC_OTHER_AUDIENCE=other-api
echo "HEARTH_TEST_OIDC_ISSUER=${HEARTH_TEST_OIDC_ISSUER} client ${HEARTH_TEST_OIDC_CLIENT_ID} (hydra ${hearth_hydra_version}, log ${hearth_hydra_root}/hydra.log)"

unset hearth_hydra_version hearth_hydra_root hearth_hydra_bin hearth_hydra_public \
    hearth_hydra_admin hearth_hydra_issuer hearth_hydra_secret hearth_hydra_waited \
    hearth_hydra_client_secret hearth_hydra_client_id
