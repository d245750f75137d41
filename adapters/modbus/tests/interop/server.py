#!/usr/bin/env python3
"""A Modbus TCP server built on pymodbus, serving a fixed register image.

The interop tests (adapters/modbus/tests/interop.rs) drive Hearth's gateway and
poller against it, so that our client is checked against a Modbus stack we did
not write. Every 16- and 32-bit value below is encoded by pymodbus itself
(``convert_to_registers``), never by hand, so a disagreement about signedness,
word order or float layout shows up as a failed test.

Usage: ``server.py [--host 127.0.0.1] [--port 0]``. Prints ``PORT <n>`` on
stdout once listening (port 0 picks a free one). Exits when stdin closes or on
SIGTERM/SIGINT, so a test that dies cannot leak it; run by hand, keep stdin open
(a terminal does) and stop it with Ctrl-C.

Register image, unit 1 (addresses as on the wire, from 0):

holding (FC03 read, FC06/FC16 write)
  100      u16                1234        read-only
  101      i16               -1234        read-only
  102-103  u32 high word first 305419896 (0x12345678), read-only
  104-105  u32 low word first  305419896, read-only
  106-107  i32 high word first -123456789, read-only
  108-109  i32 low word first  -123456789, read-only
  110-111  f32 high word first 123.456 (as f32), read-only
  112-113  f32 low word first  -40.25, read-only
  114-119  not served: any access answers exception 2
  120      u16 210 (a setpoint, x0.1), writable 100..=300, else exception 3
  121      i16 -5, writable
  122-123  f32 high word first 0.0, writable
input (FC04)
  10200-10205  i16 x0.01 degC: -1250, 2150, 5525, 4010, 7800, 5200
  10206        u16 65535
  10207-10208  i32 low word first -2
  10209-10210  u32 low word first 4000000000
  10211-10212  f32 high word first -0.5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading

from pymodbus.client import ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

UNIT = 1
SETPOINT = 120
SETPOINT_RANGE = range(100, 301)

_T = ModbusTcpClient.DATATYPE
_WRITE_CODES = {6, 16}


def words(value, data_type, word_order="big"):
    """Registers for one value, encoded by pymodbus."""
    return ModbusTcpClient.convert_to_registers(value, data_type, word_order=word_order)


def registers(address, values, readonly=False):
    return SimData(
        address, values=values, datatype=DataType.REGISTERS, readonly=readonly
    )


def holding_image():
    read_only = (
        words(1234, _T.UINT16)
        + words(-1234, _T.INT16)
        + words(0x12345678, _T.UINT32, "big")
        + words(0x12345678, _T.UINT32, "little")
        + words(-123456789, _T.INT32, "big")
        + words(-123456789, _T.INT32, "little")
        + words(123.456, _T.FLOAT32, "big")
        + words(-40.25, _T.FLOAT32, "little")
    )
    writable = (
        words(210, _T.UINT16) + words(-5, _T.INT16) + words(0.0, _T.FLOAT32, "big")
    )
    # 114..119 are left out on purpose: a block read bridging them is refused.
    return [registers(100, read_only, readonly=True), registers(SETPOINT, writable)]


def input_image():
    sensors = [-1250, 2150, 5525, 4010, 7800, 5200]
    values = (
        [w for t in sensors for w in words(t, _T.INT16)]
        + words(65535, _T.UINT16)
        + words(-2, _T.INT32, "little")
        + words(4_000_000_000, _T.UINT32, "little")
        + words(-0.5, _T.FLOAT32, "big")
    )
    return [registers(10200, values, readonly=True)]


async def check_writes(
    function_code, start_address, address, count, current_registers, set_values
):
    """Refuses an out-of-range setpoint like a controller would (exception 3)."""
    _ = start_address, current_registers
    if function_code not in _WRITE_CODES or not set_values:
        return None
    offset = SETPOINT - address
    if 0 <= offset < count and set_values[offset] not in SETPOINT_RANGE:
        return ExcCodes.ILLEGAL_VALUE
    return None


def device():
    # Separate tables (coils, discrete inputs, holding, input), as on most
    # field devices; the bit tables are unused but must not be empty.
    bits = [SimData(0, values=False, datatype=DataType.BITS)]
    return SimDevice(
        id=UNIT,
        simdata=(bits, list(bits), holding_image(), input_image()),
        action=check_writes,
    )


def stop_on_stdin_eof(loop, stop):
    """Blocks until the parent closes our stdin (or dies), then stops the server."""
    # os.read, not sys.stdin: a daemon thread blocked in a buffered read
    # aborts the interpreter at exit (it holds the buffer's lock).
    try:
        while os.read(sys.stdin.fileno(), 4096):
            pass
    except OSError:
        pass
    finally:
        loop.call_soon_threadsafe(stop.set)


async def serve(host, port):
    server = ModbusTcpServer(device(), address=(host, port))
    await server.serve_forever(background=True)
    bound = server.transport.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    threading.Thread(
        target=stop_on_stdin_eof, args=(loop, stop), name="stdin-eof", daemon=True
    ).start()
    await stop.wait()
    await server.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
