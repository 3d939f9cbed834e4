#!/usr/bin/env python3
"""The test guest works for hotplug: boot it under TCG on pc and q35, hot-add
and remove a virtio-net NIC and a virtio-blk disk over raw QMP, and see each
device appear and go away on the guest's serial console, with the
DEVICE_DELETED events QEMU sends.

Self-contained on purpose (raw QMP, no broker): when a hotplug test fails,
this one tells whether the guest or the broker is to blame.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

SRCDIR = os.environ.get("QB_SRCDIR",
                        os.path.dirname(os.path.dirname(os.path.dirname(
                            os.path.abspath(__file__)))))
SCALE = float(os.environ.get("QB_TIMEOUT_SCALE", "1"))
# Deadlock guards only; a TCG boot takes ~3 s here.
BOOT_TIMEOUT = 180 * SCALE
STEP_TIMEOUT = 60 * SCALE
QEMU = "qemu-system-x86_64"

failures = 0


def report(ok, name, why=""):
    global failures
    if ok:
        print("ok - %s" % name, flush=True)
    else:
        failures += 1
        print("not ok - %s: %s" % (name, why), flush=True)


class Failed(Exception):
    pass


class Qmp:
    """A minimal QMP client: replies by id, events kept in arrival order."""

    def __init__(self, path, deadline, proc):
        self.sock = None
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                self.sock = s
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if proc.poll() is not None:
                    raise Failed("QEMU exited (%d) before its QMP socket "
                                 "accepted" % proc.returncode)
                if time.monotonic() > deadline:
                    raise Failed("no QMP socket at %s" % path)
                time.sleep(0.05)
        self.sock.settimeout(STEP_TIMEOUT)
        self.buf = b""
        self.events = []
        self.next_id = 0
        greeting = self._read()
        if "QMP" not in greeting:
            raise Failed("not a QMP greeting: %r" % greeting)
        self.cmd("qmp_capabilities")

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Failed("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        """Runs a command; returns its return value, raises on error."""
        self.next_id += 1
        cid = "t%d" % self.next_id
        msg = {"execute": name, "id": cid}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\r\n")
        while True:
            m = self._read()
            if "event" in m:
                self.events.append(m)
            elif m.get("id") == cid:
                if "error" in m:
                    raise Failed("%s: %s" % (name, m["error"]))
                return m["return"]

    def wait_events(self, pred, count, timeout):
        """Waits until count events satisfy pred; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            got = [e for e in self.events if pred(e)]
            if len(got) >= count:
                return got
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failed("timed out waiting for events; have %r"
                             % self.events)
            self.sock.settimeout(left)
            try:
                m = self._read()
            except socket.timeout:
                continue
            finally:
                self.sock.settimeout(STEP_TIMEOUT)
            if "event" in m:
                self.events.append(m)


class Serial:
    """The guest's console, read line by line from QEMU's -serial file."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.partial = ""
        self.lines = []

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        self.pos += len(data)
        text = self.partial + data.decode("utf-8", "replace")
        parts = text.split("\n")
        self.partial = parts.pop()
        self.lines.extend(p.rstrip("\r") for p in parts)

    def wait(self, regex, start, timeout, proc):
        """Waits for a whole line matching regex at index >= start;
        returns (index, match)."""
        r = re.compile(regex)
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            for i in range(start, len(self.lines)):
                m = r.search(self.lines[i])
                if m:
                    return i, m
            if proc.poll() is not None:
                raise Failed("QEMU exited (%d) waiting for %r; console:\n%s"
                             % (proc.returncode, regex, self.tail()))
            if time.monotonic() > deadline:
                raise Failed("timed out waiting for %r; console:\n%s"
                             % (regex, self.tail()))
            time.sleep(0.05)

    def tail(self):
        return "\n".join(self.lines[-30:] + [self.partial])


def find_pci(qmp, qdev_id):
    """(guest address, vendor:device) of a device from query-pci."""
    def walk(buses):
        for bus in buses:
            for d in bus["devices"]:
                if d.get("qdev_id") == qdev_id:
                    return d
                br = d.get("pci_bridge")
                if br and "devices" in br:
                    found = walk([{"devices": br["devices"]}])
                    if found:
                        return found
        return None
    d = walk(qmp.cmd("query-pci"))
    if d is None:
        raise Failed("%s not in query-pci" % qdev_id)
    addr = "0000:%02x:%02x.%x" % (d["bus"], d["slot"], d["function"])
    ids = "%04x:%04x" % (d["id"]["vendor"], d["id"]["device"])
    return addr, ids


def unplug(qmp, serial, proc, start, qdev_id, addr, ids):
    """device_del, then the two DEVICE_DELETED events and the guest's
    PCI- line. Returns the console index past the PCI- line."""
    path = "/machine/peripheral/%s" % qdev_id
    qmp.events = []
    qmp.cmd("device_del", id=qdev_id)
    # One event for the device itself (with "device"), one for its
    # virtio backend child (path only); either may come first.
    qmp.wait_events(lambda e: e["event"] == "DEVICE_DELETED" and
                    e["data"].get("device") == qdev_id and
                    e["data"].get("path") == path, 1, STEP_TIMEOUT)
    qmp.wait_events(lambda e: e["event"] == "DEVICE_DELETED" and
                    "device" not in e["data"] and
                    e["data"].get("path") == path + "/virtio-backend",
                    1, STEP_TIMEOUT)
    i, _ = serial.wait(r"^PCI- %s %s$" % (re.escape(addr), ids), start,
                       STEP_TIMEOUT, proc)
    return i + 1


def run_machine(tmp, guest, machine):
    name = machine
    run = os.path.join(tmp, machine)
    os.mkdir(run)
    qmp_path = os.path.join(run, "qmp.sock")
    log = os.path.join(run, "serial.log")
    argv = [QEMU, "-machine", "%s,accel=tcg" % machine,
            "-nodefaults", "-display", "none", "-m", "256", "-no-reboot",
            "-kernel", os.path.join(guest, "vmlinuz"),
            "-initrd", os.path.join(guest, "initrd.img"),
            # no_timer_check: under TCG on a loaded host the kernel's
            # check that the 8254 timer reaches the IO-APIC can see no
            # tick in its busy-wait and panic ("IO-APIC + timer doesn't
            # work"); it did, on pc, with tools/check's lanes side by
            # side. The check is about real hardware, not this test.
            "-append", "console=ttyS0 quiet panic=-1 no_timer_check",
            "-serial", "file:" + log,
            "-qmp", "unix:%s,server=on,wait=off" % qmp_path]
    if machine == "q35":
        # q35's root bus does not hotplug: devices go into root ports.
        argv += ["-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x5",
                 "-device", "pcie-root-port,id=rp2,bus=pcie.0,chassis=2,addr=0x6"]
    # One root port each, so a NIC left behind by a failure cannot push
    # the disk to a slot of the port that the guest never scans.
    nic_bus = {"bus": "rp1"} if machine == "q35" else {}
    disk_bus = {"bus": "rp2"} if machine == "q35" else {}
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                            stderr=open(os.path.join(run, "qemu.err"), "w"))
    qmp = None
    serial = Serial(log)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        qmp = Qmp(qmp_path, deadline, proc)
        i, _ = serial.wait(r"^GUEST-READY$", 0, BOOT_TIMEOUT, proc)
        report(True, "%s: guest boots to GUEST-READY" % name)
        pos = i + 1

        # NIC: a user-mode netdev needs no host set-up.
        try:
            qmp.cmd("netdev_add", type="user", id="hn1")
            qmp.cmd("device_add", driver="virtio-net-pci", id="net1",
                    netdev="hn1", mac="52:54:00:12:34:01", **nic_bus)
            addr, ids = find_pci(qmp, "net1")
            i, _ = serial.wait(r"^PCI\+ %s %s$" % (re.escape(addr), ids),
                               pos, STEP_TIMEOUT, proc)
            serial.wait(r"^NET\+ eth\d+ 52:54:00:12:34:01$", pos,
                        STEP_TIMEOUT, proc)
            report(True, "%s: guest sees hot-added NIC at %s (%s)"
                   % (name, addr, ids))
            pos = i + 1
            pos = unplug(qmp, serial, proc, pos, "net1", addr, ids)
            qmp.cmd("netdev_del", id="hn1")
            report(True, "%s: NIC unplug: two DEVICE_DELETED, guest PCI-"
                   % name)
        except Failed as e:
            report(False, "%s: NIC hotplug" % name, str(e))

        # Disk: a 1 MiB raw image is 2048 sectors in the guest.
        try:
            img = os.path.join(run, "disk.raw")
            subprocess.run(["qemu-img", "create", "-q", "-f", "raw", img,
                            "1M"], check=True)
            qmp.cmd("blockdev-add", **{"node-name": "d1", "driver": "raw",
                                       "file": {"driver": "file",
                                                "filename": img}})
            qmp.cmd("device_add", driver="virtio-blk-pci", id="disk1",
                    drive="d1", **disk_bus)
            addr, ids = find_pci(qmp, "disk1")
            i, _ = serial.wait(r"^PCI\+ %s %s$" % (re.escape(addr), ids),
                               pos, STEP_TIMEOUT, proc)
            j, m = serial.wait(r"^BLK\+ (vd[a-z]+) 2048$", pos,
                               STEP_TIMEOUT, proc)
            disk = m.group(1)
            report(True, "%s: guest sees hot-added disk %s at %s (%s)"
                   % (name, disk, addr, ids))
            pos = i + 1
            pos = unplug(qmp, serial, proc, pos, "disk1", addr, ids)
            # The disk may go before or after its PCI function does.
            serial.wait(r"^BLK- %s$" % disk, j + 1, STEP_TIMEOUT, proc)
            qmp.cmd("blockdev-del", **{"node-name": "d1"})
            left = [b for b in qmp.cmd("query-named-block-nodes")
                    if b.get("node-name") == "d1"]
            if left:
                raise Failed("node d1 still there after blockdev-del")
            report(True, "%s: disk unplug: two DEVICE_DELETED, guest "
                   "PCI- and BLK-" % name)
        except Failed as e:
            report(False, "%s: disk hotplug" % name, str(e))

        qmp.cmd("quit")
        try:
            rc = proc.wait(timeout=STEP_TIMEOUT)
            report(rc == 0, "%s: quit ends QEMU" % name, "exit %s" % rc)
        except subprocess.TimeoutExpired:
            report(False, "%s: quit ends QEMU" % name, "still running")
    except (Failed, OSError, ValueError) as e:
        report(False, "%s: boot" % name, str(e))
    finally:
        if qmp:
            qmp.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if failures:
            try:
                with open(os.path.join(run, "qemu.err")) as f:
                    err = f.read().strip()
                if err:
                    print("# qemu stderr (%s): %s" % (name, err))
            except OSError:
                pass


def main():
    if shutil.which(QEMU) is None:
        print("# %s not installed: skip" % QEMU)
        return 77
    if os.environ.get("QB_SANITIZER") or os.environ.get("QB_DAEMON_WRAPPER"):
        # Nothing of ours runs here: sanitizer builds would only repeat it.
        print("# only QEMU and the guest run here: skipped in %s phase"
              % (os.environ.get("QB_SANITIZER") or "valgrind"))
        return 77
    tmp = tempfile.mkdtemp(prefix="qb-guest-")
    try:
        try:
            out = subprocess.run([os.path.join(SRCDIR, "tools/guest/build")],
                                 stdout=subprocess.PIPE, check=True,
                                 timeout=600)
        except (OSError, subprocess.CalledProcessError,
                subprocess.TimeoutExpired) as e:
            report(False, "build the test guest", str(e))
            return 1
        guest = out.stdout.decode().strip()
        report(True, "build the test guest (%s)" % guest)
        for machine in ("pc", "q35"):
            run_machine(tmp, guest, machine)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
