"""The loop both soak stations share (bench/soak_station.py for HJ212,
bench/soak_sl651.py for SL651): send report n, wait up to 2 s for its
confirm, record n once confirmed, otherwise send the same bytes again;
reconnect whenever the gateway is gone; stop when the stop file exists."""
import os, socket, time


def run(name, port, out, stop, frame_for, confirmed, first=1):
    """frame_for(n) -> (frame bytes, token); confirmed(buf, token) -> bool."""
    log = open(out, "a", buffering=1)
    sent = nconfirmed = 0
    sock, frame, n = None, None, first
    while not os.path.exists(stop):
        if sock is None:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                sock.settimeout(2)
            except OSError:
                sock = None
                time.sleep(0.1)
                continue
        if frame is None:
            frame, token = frame_for(n)
        try:
            sock.sendall(frame)
            sent += 1
            buf = b""
            deadline = time.time() + 2
            while not confirmed(buf, token) and time.time() < deadline:
                chunk = sock.recv(4096)
                if not chunk:
                    raise OSError("closed")
                buf += chunk
            if confirmed(buf, token):
                log.write("%d\n" % n)
                nconfirmed += 1
                n += 1
                frame = None
        except OSError:
            try:
                sock.close()
            except OSError:
                pass
            sock = None
            time.sleep(0.05)
        time.sleep(0.02)
    print("%s: sent %d confirmed %d next %d" % (name, sent, nconfirmed, n))
