#!/usr/bin/env python3
"""An SL651-2014 RTU for the soak (bench/soak.sh): sends one timed report
(function 32, HEX/BCD frame) at a time over TCP, waits for the centre's
confirm (same function, its serial and send time echoed), records every
confirmed report, and reconnects when the gateway dies. An unconfirmed
report is sent again byte for byte (same serial and send time), as an RTU
does, so the gateway must store it once. The water level element (39) of
report n carries the value n, so the soak report can tell whether each
confirmed report reached the platform. Frames and CRC are built here from the
standard's layout (docs/sl651-hj212.md), sharing nothing with the gateway.

usage: soak_sl651.py PORT STATION(10 hex) PASSWORD(4 hex) CONFIRMED_FILE STOP_FILE"""
import sys, time

import soak_peer

port, station, pw, out, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
addr, pwb = bytes.fromhex(station), bytes.fromhex(pw)
FN = 0x32  # timed report


def crc(data):
    """Modbus CRC-16 (reflected 0xA001, init 0xFFFF); SL651 sends it high byte first."""
    reg = 0xFFFF
    for b in data:
        reg ^= b
        for _ in range(8):
            reg = (reg >> 1) ^ 0xA001 if reg & 1 else reg >> 1
    return reg.to_bytes(2, "big")


# Vector 1 of SL651 keep-alive frames: CRC 6BCA.
assert crc(bytes.fromhex("7E7E01001234567812342F000802000359101115511103")) == b"\x6b\xca"


def bcd(digits):
    return bytes.fromhex(digits)


def report(n, serial, sent, observed):
    body = (serial.to_bytes(2, "big") + bcd(time.strftime("%y%m%d%H%M%S", sent)) +
            b"\xF1\xF1" + addr + b"\x48" +                       # station type: river
            b"\xF0\xF0" + bcd(time.strftime("%y%m%d%H%M", observed)) +
            b"\x39\x20" + bcd("%08d" % n))                       # water level: 4 bytes, 0 decimals
    head = b"\x7E\x7E\x01" + addr + pwb + bytes([FN]) + len(body).to_bytes(2, "big") + b"\x02"
    frame = head + body + b"\x03"
    return frame + crc(frame)


def confirmed(buf, serial):
    """True when buf holds the centre's confirm of serial (downlink: station first)."""
    i = buf.find(b"\x7E\x7E")
    while i >= 0 and len(buf) - i >= 14:
        n = int.from_bytes(buf[i + 11:i + 13], "big") & 0x0FFF
        end = i + 14 + n + 3
        if len(buf) < end:
            return False
        f = buf[i:end]
        if (crc(f[:-2]) == f[-2:] and f[2:7] == addr and f[10] == FN and
                int.from_bytes(f[14:16], "big") == serial):
            return True
        i = buf.find(b"\x7E\x7E", i + 2)
    return False


base = time.time() - 90 * 86400  # one observation per minute, in the past: never in the future


def frame_for(n):
    serial = (n - 1) % 65535 + 1
    return report(n, serial, time.localtime(), time.localtime(base + 60 * n)), serial


soak_peer.run("sl651 station", port, out, stop, frame_for, confirmed)
