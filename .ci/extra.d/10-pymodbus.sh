# shellcheck shell=bash
# Sourced by .ci/run before the tests: installs the pinned pymodbus for the
# Modbus interop tests (adapters/modbus/tests/interop.rs) and switches them on.
# Safe to source again: pip runs only when that exact version is not importable.
# Errors propagate under the caller's `set -e`; nothing here calls `exit`.

hearth_pymodbus_requirements=adapters/modbus/tests/interop/requirements.txt
hearth_pymodbus_pin=$(sed -n 's/^pymodbus==\([^[:space:]]*\).*/\1/p' "${hearth_pymodbus_requirements}")
if [[ -z "${hearth_pymodbus_pin}" ]]; then
    echo "${hearth_pymodbus_requirements} pins no pymodbus version" >&2
    false
fi

# The interpreter the tests will run; resolved to a real path so that a pyenv
# shim or a changed PATH cannot make the tests use a different Python.
hearth_python=$(command -v "${HEARTH_PYTHON:-python3}" || true)
if [[ -z "${hearth_python}" ]]; then
    echo "python3 not found; installing it from Debian" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-pip \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-pip; }
    hearth_python=$(command -v python3)
fi
hearth_python=$("${hearth_python}" -c 'import sys; print(sys.executable)')

hearth_pymodbus_installed() {
    "${hearth_python}" - "${hearth_pymodbus_pin}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import pymodbus  # noqa: F401  (importable, not only listed)
sys.exit(0 if version("pymodbus") == sys.argv[1] else 1)
PY
}

if hearth_pymodbus_installed; then
    echo "pymodbus ${hearth_pymodbus_pin} already installed for ${hearth_python}"
else
    echo "installing pymodbus ${hearth_pymodbus_pin} for ${hearth_python}"
    if ! "${hearth_python}" -m pip --version >/dev/null 2>&1; then
        "${hearth_python}" -m ensurepip --upgrade >/dev/null 2>&1 \
            || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip
    fi
    hearth_pip=("${hearth_python}" -m pip install --quiet --disable-pip-version-check
        --root-user-action=ignore "pymodbus==${hearth_pymodbus_pin}")
    # Debian's own Python refuses pip installs (PEP 668) unless told otherwise;
    # a pyenv or venv Python needs no flag.
    "${hearth_pip[@]}" 2>/dev/null || "${hearth_pip[@]}" --break-system-packages
    hearth_pymodbus_installed
    unset hearth_pip
fi

export HEARTH_PYTHON="${hearth_python}"
export HEARTH_TEST_PYMODBUS=1
echo "HEARTH_TEST_PYMODBUS=1 (pymodbus ${hearth_pymodbus_pin}, ${HEARTH_PYTHON})"

unset -f hearth_pymodbus_installed
unset hearth_pymodbus_requirements hearth_pymodbus_pin hearth_python
