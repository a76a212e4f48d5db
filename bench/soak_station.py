#!/usr/bin/env python3
"""An HJ 212-2017 station for the soak (bench/soak.sh): sends one real-time
packet (CN=2011, Flag=5: answer wanted) at a time, waits for the gateway's
9014, records every confirmed value, reconnects when the gateway dies.
The value of w01018 is the packet's serial number, so the soak report can
tell whether each confirmed packet reached the platform.

usage: soak_station.py PORT MN PW CONFIRMED_FILE STOP_FILE [START]"""
import os, socket, sys, time

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


log = open(out, "a", buffering=1)
sent = confirmed = 0
sock = None
base = time.time() - 86400  # one observation per second of yesterday: never in the future
while not os.path.exists(stop):
    if sock is None:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=1)
            sock.settimeout(2)
        except OSError:
            sock = None
            time.sleep(0.1)
            continue
    qn = "%s%03d" % (time.strftime("%Y%m%d%H%M%S", time.localtime(base + n)), n % 1000)
    dt = time.strftime("%Y%m%d%H%M%S", time.localtime(base + n))
    seg = ("QN=%s;ST=32;CN=2011;PW=%s;MN=%s;Flag=5;CP=&&DataTime=%s;w01018-Rtd=%d,w01018-Flag=N&&"
           % (qn, pw, mn, dt, n))
    try:
        sock.sendall(packet(seg))
        sent += 1
        buf = b""
        deadline = time.time() + 2
        while b"CN=9014" not in buf and time.time() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                raise OSError("closed")
            buf += chunk
        if ("QN=%s" % qn).encode() in buf and b"CN=9014" in buf:
            log.write("%d\n" % n)
            confirmed += 1
            n += 1
        # no confirm: send the same serial again (a new packet for the same reading)
    except OSError:
        try:
            sock.close()
        except OSError:
            pass
        sock = None
        time.sleep(0.05)
    time.sleep(0.02)
print("station: sent %d confirmed %d next %d" % (sent, confirmed, n))
