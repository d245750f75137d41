# shellcheck shell=bash
# Sourced by .ci/run before the tests: installs the pinned aiosmtpd into a
# venv (once; cached), starts it on loopback writing every mail it accepts to
# a Maildir, and exports what the notification tests need:
#   HEARTH_TEST_SMTP_ADDR     host:port of the SMTP server (no TLS, no auth)
#   HEARTH_TEST_SMTP_MAILDIR  the Maildir the mails land in (tests read `new/`)
# Safe to source again: pip runs only when that exact version is not
# importable, and a server left from an earlier run (its pid is recorded) is
# stopped before a fresh one starts on an emptied Maildir.
# Errors propagate under the caller's `set -e`; nothing here calls `exit`.
#
# Overridable: HEARTH_TEST_SMTP_PORT (default 2525).

hearth_smtpd_version=1.4.6
hearth_smtpd_root="${HEARTH_CI_CACHE:-/var/cache/hearth-ci}/aiosmtpd"
hearth_smtpd_venv="${hearth_smtpd_root}/venv-${hearth_smtpd_version}"
hearth_smtpd_port="${HEARTH_TEST_SMTP_PORT:-2525}"
hearth_smtpd_maildir="${hearth_smtpd_root}/maildir"
mkdir -p "${hearth_smtpd_root}"

hearth_smtpd_python=$(command -v "${HEARTH_PYTHON:-python3}" || true)
if [[ -z "${hearth_smtpd_python}" ]]; then
    echo "python3 not found; installing it from Debian" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv; }
    hearth_smtpd_python=$(command -v python3)
fi

hearth_smtpd_installed() {
    "${hearth_smtpd_venv}/bin/python" - "${hearth_smtpd_version}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import aiosmtpd.handlers  # noqa: F401  (importable, not only listed)
sys.exit(0 if version("aiosmtpd") == sys.argv[1] else 1)
PY
}

if hearth_smtpd_installed; then
    echo "aiosmtpd ${hearth_smtpd_version} already installed in ${hearth_smtpd_venv}"
else
    echo "installing aiosmtpd ${hearth_smtpd_version} into ${hearth_smtpd_venv}"
    rm -rf "${hearth_smtpd_venv}"
    "${hearth_smtpd_python}" -m venv "${hearth_smtpd_venv}" \
        || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv \
            && "${hearth_smtpd_python}" -m venv "${hearth_smtpd_venv}"; }
    "${hearth_smtpd_venv}/bin/python" -m pip install --quiet --disable-pip-version-check \
        "aiosmtpd==${hearth_smtpd_version}"
    hearth_smtpd_installed
fi

# A server left over from an earlier run holds the port: stop the one we
# started (its pid is recorded, and it must still be aiosmtpd).
if [[ -f "${hearth_smtpd_root}/aiosmtpd.pid" ]]; then
    hearth_smtpd_old=$(cat "${hearth_smtpd_root}/aiosmtpd.pid")
    if [[ -n "${hearth_smtpd_old}" ]] && kill -0 "${hearth_smtpd_old}" 2>/dev/null \
        && grep -q aiosmtpd "/proc/${hearth_smtpd_old}/cmdline" 2>/dev/null; then
        echo "stopping the aiosmtpd left from an earlier run (pid ${hearth_smtpd_old})"
        kill "${hearth_smtpd_old}"
        for _ in $(seq 1 50); do
            kill -0 "${hearth_smtpd_old}" 2>/dev/null || break
            sleep 0.2
        done
    fi
    rm -f "${hearth_smtpd_root}/aiosmtpd.pid"
    unset hearth_smtpd_old
fi

# Tests tell their mails apart by unique recipients, but an empty Maildir
# keeps a run's reading-back cheap.
rm -rf "${hearth_smtpd_maildir}"
mkdir -p "${hearth_smtpd_maildir}"/{new,cur,tmp}
# -n: do not drop privileges; Mailbox writes each accepted mail to the Maildir.
# setsid detaches it from the CI shell's job control, so it outlives the step.
setsid "${hearth_smtpd_venv}/bin/python" -m aiosmtpd -n \
    -l "127.0.0.1:${hearth_smtpd_port}" \
    -c aiosmtpd.handlers.Mailbox "${hearth_smtpd_maildir}" \
    >"${hearth_smtpd_root}/aiosmtpd.log" 2>&1 </dev/null &
echo $! >"${hearth_smtpd_root}/aiosmtpd.pid"

# Ready when the port answers with an SMTP greeting; 30 s at most.
hearth_smtpd_waited=0
until "${hearth_smtpd_venv}/bin/python" - "${hearth_smtpd_port}" <<'PY' 2>/dev/null || ((hearth_smtpd_waited >= 60)); do
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=2) as s:
    s.noop()
PY
    sleep 0.5
    hearth_smtpd_waited=$((hearth_smtpd_waited + 1))
done
if ((hearth_smtpd_waited >= 60)); then
    echo "aiosmtpd did not answer on 127.0.0.1:${hearth_smtpd_port} within 30s; last log lines:" >&2
    tail -n 20 "${hearth_smtpd_root}/aiosmtpd.log" >&2
    false
fi

export HEARTH_TEST_SMTP_ADDR="127.0.0.1:${hearth_smtpd_port}"
export HEARTH_TEST_SMTP_MAILDIR="${hearth_smtpd_maildir}"
echo "HEARTH_TEST_SMTP_ADDR=${HEARTH_TEST_SMTP_ADDR} HEARTH_TEST_SMTP_MAILDIR=${HEARTH_TEST_SMTP_MAILDIR} (aiosmtpd ${hearth_smtpd_version}, log ${hearth_smtpd_root}/aiosmtpd.log)"

unset -f hearth_smtpd_installed
unset hearth_smtpd_version hearth_smtpd_root hearth_smtpd_venv hearth_smtpd_port \
    hearth_smtpd_maildir hearth_smtpd_python hearth_smtpd_waited
