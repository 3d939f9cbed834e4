#!/usr/bin/env python3
"""Record the exact bytes a real QEMU sends on its QMP socket.

Usage: record-session.py OUTPUT.raw [QEMU_BINARY]

Starts QEMU with -S and no devices, runs a short fixed session (negotiate,
queries, stop/cont, one unknown command, quit) and writes every byte QEMU
wrote, unmodified (CRLF, event timestamps and all), to OUTPUT.raw. The
framer's unit test replays that file, so re-record it only on purpose.
"""
import json
import os
import stat
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

COMMANDS = [
    {"execute": "qmp_capabilities", "id": 1},
    {"execute": "query-commands", "id": 2},
    {"execute": "query-status", "id": 3},
    {"execute": "query-version", "id": "version"},
    {"execute": "query-pci", "id": 5},
    {"execute": "query-block", "id": {"nested": [6]}},
    # -S: the first stop changes nothing (no event); then a full cycle.
    {"execute": "stop", "id": 7},
    {"execute": "cont", "id": 8},
    {"execute": "stop", "id": 9},
    {"execute": "cont", "id": 10},
    {"execute": "no-such-command", "id": 11},
    {"execute": "query-status", "arguments": {"bogus": 1}, "id": 12},
    {"execute": "quit", "id": 13},
]
# Events a command must have produced before the next one is sent, so the
# transcript always holds them.
EVENTS = {8: "RESUME", 9: "STOP", 10: "RESUME", 13: "SHUTDOWN"}

DEADLINE = 30.0  # a deadlock guard, not a timing assertion


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: record-session.py OUTPUT.raw [QEMU_BINARY]")
    out = sys.argv[1]
    qemu = sys.argv[2] if len(sys.argv) > 2 else "qemu-system-x86_64"
    tmp = tempfile.mkdtemp(prefix="qb-record-")
    sock_path = os.path.join(tmp, "qmp.sock")
    accel = "kvm:tcg" if (os.path.exists("/dev/kvm") and
                      stat.S_ISCHR(os.stat("/dev/kvm").st_mode) and
                      os.access("/dev/kvm", os.R_OK | os.W_OK)) else "tcg"
    proc = subprocess.Popen([
        qemu, "-nodefaults", "-display", "none", "-S",
        "-machine", "pc,accel=" + accel,
        "-qmp", "unix:%s,server=on,wait=off" % sock_path,
    ])
    raw = bytearray()
    try:
        end = time.monotonic() + DEADLINE
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                s.connect(sock_path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if proc.poll() is not None or time.monotonic() > end:
                    raise SystemExit("qemu did not open its QMP socket")
                time.sleep(0.05)

        def read_until(pred):
            """Read into raw until pred(lines) holds or EOF."""
            while True:
                lines = [json.loads(l) for l in raw.split(b"\n")[:-1]
                         if l.strip()]
                if pred(lines):
                    return True
                left = end - time.monotonic()
                if left <= 0:
                    raise SystemExit("timed out waiting for QEMU")
                r, _, _ = select.select([s], [], [], left)
                if not r:
                    continue
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    # QEMU may close with our bytes unread; on a unix
                    # socket everything it wrote has been read by then.
                    data = b""
                if not data:
                    return False
                raw.extend(data)

        read_until(lambda ls: any("QMP" in m for m in ls))
        for cmd in COMMANDS:
            s.sendall(json.dumps(cmd).encode() + b"\r\n")
            want = cmd["id"]
            read_until(lambda ls: any(m.get("id") == want and
                                      ("return" in m or "error" in m)
                                      for m in ls))
            ev = EVENTS.get(want) if isinstance(want, int) else None
            if ev:
                n = sum(1 for c in COMMANDS[:COMMANDS.index(cmd) + 1]
                        if isinstance(c["id"], int) and EVENTS.get(c["id"]) == ev)
                read_until(lambda ls: sum(1 for m in ls
                                          if m.get("event") == ev) >= n)
        # After quit QEMU sends SHUTDOWN and closes: read to EOF.
        while read_until(lambda ls: False):
            pass
        s.close()
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    with open(out, "wb") as f:
        f.write(raw)
    print("recorded %d bytes, %d lines, qemu exit %d" %
          (len(raw), raw.count(b"\n"), proc.returncode))


if __name__ == "__main__":
    main()
