#!/usr/bin/env python3
"""An HJ 212-2017 station for the soak (bench/soak.sh): sends one real-time
packet (CN=2011, Flag=5: answer wanted) at a time, waits for the gateway's
9014, records every confirmed value, reconnects when the gateway dies.
The value of w01018 is the packet's serial number, so the soak report can
tell whether each confirmed packet reached the platform.

usage: soak_station.py PORT MN PW CONFIRMED_FILE STOP_FILE [START]"""
import sys, time

import soak_peer

port, mn, pw, out, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
n = int(sys.argv[6]) if len(sys.argv) > 6 else 1


def crc(seg):
    reg = 0xFFFF
    for b in seg.encode():
        reg = (reg >> 8) ^ b
        for _ in range(8):
            reg = (reg >> 1) ^ 0xA001 if reg & 1 else reg >> 1
    return reg


def packet(seg):
    return ("##%04d%s%04X\r\n" % (len(seg), seg, crc(seg))).encode()


base = time.time() - 86400  # one observation per second of yesterday: never in the future


def frame_for(n):
    """Packet n; sent again unchanged (same QN) until confirmed."""
    qn = "%s%03d" % (time.strftime("%Y%m%d%H%M%S", time.localtime(base + n)), n % 1000)
    dt = time.strftime("%Y%m%d%H%M%S", time.localtime(base + n))
    seg = ("QN=%s;ST=32;CN=2011;PW=%s;MN=%s;Flag=5;CP=&&DataTime=%s;w01018-Rtd=%d,w01018-Flag=N&&"
           % (qn, pw, mn, dt, n))
    return packet(seg), qn


def confirmed(buf, qn):
    return ("QN=%s" % qn).encode() in buf and b"CN=9014" in buf


soak_peer.run("hj212 station", port, out, stop, frame_for, confirmed, n)
