#!/usr/bin/env python3
"""Checks Hearth's simulated ECL controller with pymodbus's TCP client.

Usage: ``client_check.py HOST PORT``. Runs each check, prints ``PASS``/``FAIL``
with what it saw, and exits 0 only if every check passed (1 if one failed, 2 if
the controller could not be reached). The register map is the one documented
in adapters/modbus/src/simulator/plant.rs.

It writes the comfort setpoint (225, or 215 if it already reads 225) and leaves
it there, so the caller can see from its side that the write landed.
"""

from __future__ import annotations

import sys

from pymodbus import ModbusException
from pymodbus.client import ModbusTcpClient

UNIT = 1
SENSORS = 10200  # S1..S6, FC04, signed x0.01 degC
SENSOR_NAMES = ("S1 outdoor", "S2 room", "S3 flow", "S4 return", "S5 primary", "S6 tank")
COMFORT = 11179  # room setpoint comfort, x0.1 degC, 100..=300
UNKNOWN = 11000  # no parameter lives here
ILLEGAL_DATA_ADDRESS = 2
ILLEGAL_DATA_VALUE = 3

_I16 = ModbusTcpClient.DATATYPE.INT16


class Checks:
    def __init__(self, client: ModbusTcpClient):
        self.client = client
        self.failed = 0

    def report(self, name: str, ok: bool, detail: str) -> bool:
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
        if not ok:
            self.failed += 1
        return ok

    def run(self, name: str, check) -> None:
        """Runs one check; a transport or decoding error fails it, not the run."""
        try:
            check(name)
        except (ModbusException, ValueError, TypeError, AttributeError) as err:
            self.report(name, False, f"{type(err).__name__}: {err}")

    # ------------------------------------------------------------------ checks

    def sensors(self, name: str) -> None:
        rr = self.client.read_input_registers(SENSORS, count=6, device_id=UNIT)
        if rr.isError():
            self.report(name, False, f"answered {rr}")
            return
        temps = [
            ModbusTcpClient.convert_from_registers([w], _I16) / 100.0
            for w in rr.registers
        ]
        shown = ", ".join(f"{n} {t:.2f}" for n, t in zip(SENSOR_NAMES, temps))
        # Plausible for a heating plant; 192 degC would be an open sensor.
        plausible = (
            len(temps) == 6
            and -40.0 <= temps[0] <= 45.0
            and all(-40.0 <= t < 150.0 for t in temps)
        )
        self.report(name, plausible, shown)

    def read_setpoint(self) -> int:
        rr = self.client.read_holding_registers(COMFORT, count=1, device_id=UNIT)
        if rr.isError():
            raise ModbusException(f"reading the comfort setpoint answered {rr}")
        return rr.registers[0]

    def setpoint(self, name: str) -> None:
        raw = self.read_setpoint()
        self.report(name, 100 <= raw <= 300, f"register {COMFORT} = {raw} ({raw / 10:.1f} degC)")

    def write_in_range(self, name: str) -> None:
        new = 215 if self.read_setpoint() == 225 else 225
        rr = self.client.write_register(COMFORT, new, device_id=UNIT)
        if rr.isError():
            self.report(name, False, f"writing {new} answered {rr}")
            return
        echoed = rr.address == COMFORT and list(rr.registers) == [new]
        back = self.read_setpoint()
        self.report(
            name,
            echoed and back == new,
            f"wrote {new}, echo address {rr.address} value {list(rr.registers)}, read back {back}",
        )

    def write_out_of_range(self, name: str) -> None:
        before = self.read_setpoint()
        rr = self.client.write_register(COMFORT, 301, device_id=UNIT)
        after = self.read_setpoint()
        code = rr.exception_code if rr.isError() else None
        self.report(
            name,
            code == ILLEGAL_DATA_VALUE and after == before,
            f"writing 301 answered exception {code}, value {before} -> {after}",
        )

    def unknown_register(self, name: str) -> None:
        rr = self.client.read_holding_registers(UNKNOWN, count=1, device_id=UNIT)
        code = rr.exception_code if rr.isError() else None
        self.report(name, code == ILLEGAL_DATA_ADDRESS, f"register {UNKNOWN} answered exception {code}")

    def too_many_registers(self, name: str) -> None:
        # pymodbus itself allows up to 125; the ECL stops at 123.
        rr = self.client.read_holding_registers(COMFORT, count=124, device_id=UNIT)
        code = rr.exception_code if rr.isError() else None
        self.report(
            name,
            code == ILLEGAL_DATA_VALUE,
            f"124 registers answered exception {code}" if code else f"answered {rr}",
        )


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    host, port = argv[1], int(argv[2])
    # No retries: a lost answer must fail the check, not be papered over.
    client = ModbusTcpClient(host, port=port, timeout=5, retries=0)
    if not client.connect():
        print(f"FAIL connect: cannot reach {host}:{port}", flush=True)
        return 2
    checks = Checks(client)
    try:
        checks.run("FC04 sensors S1..S6", checks.sensors)
        checks.run("FC03 comfort setpoint", checks.setpoint)
        checks.run("FC06 in-range write reads back", checks.write_in_range)
        checks.run("FC06 out-of-range write refused", checks.write_out_of_range)
        checks.run("FC03 unknown register refused", checks.unknown_register)
        checks.run("FC03 124 registers refused", checks.too_many_registers)
    finally:
        client.close()
    total = 6
    summary = f"all {total} checks passed" if checks.failed == 0 else f"{checks.failed} of {total} checks failed"
    print(summary, flush=True)
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
