#!/usr/bin/env python3
"""Hostile WebSocket clients against a running tickscope: each declares a text frame of 2^40
bytes, then streams payload as fast as the connection takes it. Reports the server's RSS
(from /proc) before and at its peak, and per client the bytes sent, when the close came and
whether the server cut the connection.

    python3 bench/frame_flood.py --addr 127.0.0.1:8080 --pid PID --clients 4 --mib 200

Loopback only; every client stops after --mib MiB or --seconds, whichever comes first.
Uses only the standard library.
"""

import argparse
import socket
import struct
import threading
import time

CHUNK = 64 * 1024


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def upgrade(host, port):
    sock = socket.create_connection((host, port))
    sock.sendall(
        f"GET /api/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise RuntimeError("closed during the upgrade")
        head += byte
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head.decode(errors="replace"))
    return sock


def read_close(sock, result, sent, started):
    """Reads server frames until the close frame; records when it came."""
    buf = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                result["ended"] = time.monotonic() - started
                return
            buf += data
            while len(buf) >= 2:
                length = buf[1] & 0x7F
                offset = 2
                if length == 126:
                    length, offset = struct.unpack(">H", buf[2:4])[0], 4
                elif length == 127:
                    length, offset = struct.unpack(">Q", buf[2:10])[0], 10
                if len(buf) < offset + length:
                    break
                if buf[0] & 0x0F == 0x8 and "close" not in result:
                    payload = buf[offset:offset + length]
                    result["close"] = (struct.unpack(">H", payload[:2])[0], payload[2:].decode())
                    result["sent_at_close"] = sent[0]
                    result["close_after_s"] = time.monotonic() - started
                buf = buf[offset + length:]
    except OSError:
        result["ended"] = time.monotonic() - started


def attack(host, port, limit_bytes, seconds, result):
    sock = upgrade(host, port)
    sent = [0]
    started = time.monotonic()
    reader = threading.Thread(target=read_close, args=(sock, result, sent, started))
    reader.start()
    sock.sendall(bytes([0x81, 0x80 | 127]) + struct.pack(">Q", 1 << 40) + b"\x37\xfa\x21\x3d")
    chunk = b"\x5a" * CHUNK
    sock.settimeout(seconds)
    try:
        while sent[0] < limit_bytes and time.monotonic() - started < seconds:
            sock.sendall(chunk)
            sent[0] += CHUNK
        result["cut_off"] = False
    except OSError:
        result["cut_off"] = True
    result["sent"] = sent[0]
    sock.close()
    reader.join(timeout=seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:8080")
    parser.add_argument("--pid", type=int, required=True, help="the server's process id")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--mib", type=int, default=200, help="payload each client sends at most")
    parser.add_argument("--seconds", type=float, default=60.0, help="each client's time limit")
    args = parser.parse_args()
    host, port = args.addr.rsplit(":", 1)
    if not host.startswith("127.") and host not in ("localhost", "::1"):
        parser.error("loopback addresses only")
    before = rss_bytes(args.pid)
    results = [{} for _ in range(args.clients)]
    threads = [
        threading.Thread(target=attack, args=(host, int(port), args.mib << 20, args.seconds, r))
        for r in results
    ]
    for thread in threads:
        thread.start()
    peak = before
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, rss_bytes(args.pid))
        time.sleep(0.02)
    after = rss_bytes(args.pid)
    mib = 1 << 20
    print(f"clients: {args.clients}, up to {args.mib} MiB each")
    print(f"server RSS: {before / mib:.1f} MiB before, {peak / mib:.1f} MiB at peak "
          f"(+{(peak - before) / mib:.1f} MiB), {after / mib:.1f} MiB after")
    for index, r in enumerate(results):
        close = r.get("close")
        close_text = (f"close {close[0]} after {r['sent_at_close'] / 1024:.0f} KiB sent "
                      f"({r['close_after_s'] * 1000:.1f} ms)") if close else "no close"
        print(f"client {index}: sent {r.get('sent', 0) / mib:.1f} MiB; {close_text}; "
              f"{'cut off by the server' if r.get('cut_off') else 'not cut off'}")


if __name__ == "__main__":
    main()
