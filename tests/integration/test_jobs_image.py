#!/usr/bin/env python3
"""image-attach / image-detach: loop devices for real (losetup), nbd
against a fake sysfs tree and a stand-in qemu-nbd (no nbd module here)."""
import json
import os
import subprocess
import sys
import time

import qb
from jobsh import Broker, Failed, SRCDIR, check, fd_count, run

if os.geteuid() != 0:
    print("not root: loop devices need root")   # cannot exist: skip
    sys.exit(77)

b = None
tmp = None


def setup():
    global b, tmp
    import tempfile
    tmp = tempfile.mkdtemp(prefix="qb-img-")
    os.makedirs(tmp + "/images")
    if qb.privsep_user() is not None:
        # Separated, the daemon checks image paths as its user: search
        # (not list) on the way to the images, as qb.py's harness dir.
        os.chmod(tmp, 0o711)
        os.chmod(tmp + "/images", 0o711)
    os.makedirs(tmp + "/sys/module/nbd")
    for i in range(4):
        os.makedirs(tmp + "/sys/block/nbd%d" % i)
    os.makedirs(tmp + "/dev")
    for i in range(4):
        open(tmp + "/dev/nbd%d" % i, "w").close()
    with open(tmp + "/images/disk.raw", "wb") as f:
        f.truncate(4 << 20)
    b = Broker(["--image-root", tmp + "/images",
                "--qemu-nbd", os.path.join(SRCDIR, "tests/integration/fake-qemu-nbd"),
                "--nbd-sysfs", tmp + "/sys", "--nbd-dev-dir", tmp + "/dev",
                "--nbd-lock-dir", tmp + "/locks", "--nbd-wait-ms", "1000"],
               env={"FAKE_NBD_SYSFS": tmp + "/sys",
                    "FAKE_NBD_MODE_FILE": tmp + "/nbdmode",
                    "FAKE_NBD_LOG": tmp + "/nbdlog"})


def backing(dev):
    p = "/sys/block/%s/loop/backing_file" % os.path.basename(dev)
    try:
        with open(p) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def backs(dev, img):
    """dev is attached to img. Not "dev is attached at all": loop devices
    are the machine's, and once ours is detached another process (a
    second test run, losetup --find elsewhere) may take the same number
    at once."""
    return backing(dev) in (img, img + " (deleted)")


def ro_flag(dev):
    with open("/sys/block/%s/ro" % os.path.basename(dev)) as f:
        return f.read().strip()


def loop_rw():
    c = b.client()
    img = tmp + "/images/disk.raw"
    d = c.job("image-attach", {"path": img, "mode": "loop"})
    check(d["status"] == "concluded", "attach: %r" % d)
    dev = d["result"]["device"]
    try:
        check(backing(dev) == img, "%s backs %r" % (dev, backing(dev)))
        check(ro_flag(dev) == "0", "rw device is read-only")
        check(d["result"]["readonly"] is False, "result says readonly")
        # Written through the device, read back from the file.
        with open(dev, "r+b", buffering=0) as f:
            f.write(b"qmpbroker-loop-rw")
            os.fsync(f.fileno())
        with open(img, "rb") as f:
            check(f.read(17) == b"qmpbroker-loop-rw", "write did not land")
    finally:
        d2 = c.job("image-detach", {"device": dev})
    check(d2["status"] == "concluded", "detach: %r" % d2)
    check(not backs(dev, img), "%s still attached" % dev)
    # Gone from the broker's table too.
    e = c.err("image-detach", {"device": dev})
    check(e["class"] == "DeviceNotFound", "%r" % e)


def loop_ro():
    c = b.client()
    img = tmp + "/images/disk.raw"
    d = c.job("image-attach", {"path": img, "mode": "loop", "readonly": True})
    check(d["status"] == "concluded", "attach: %r" % d)
    dev = d["result"]["device"]
    try:
        check(ro_flag(dev) == "1", "ro device is writable")
        try:
            with open(dev, "r+b") as f:
                f.write(b"x")
            raise Failed("wrote to a read-only loop device")
        except OSError:
            pass
    finally:
        d2 = c.job("image-detach", {"device": dev})
    check(d2["status"] == "concluded", "detach: %r" % d2)
    check(not backs(dev, img), "%s still attached" % dev)


def loop_missing_and_outside():
    c = b.client()
    e = c.err("image-attach", {"path": tmp + "/images/nope.raw",
                               "mode": "loop"})
    check(e["class"] == "GenericError" and e["desc"], "%r" % e)
    e = c.err("image-attach", {"path": "/etc/passwd", "mode": "loop"})
    check(e["desc"], "%r" % e)
    e = c.err("image-attach", {"path": tmp + "/images/disk.raw",
                               "mode": "floppy"})
    check("mode" in e["desc"], "%r" % e)
    e = c.err("image-attach", {"path": tmp + "/images/disk.raw",
                               "mode": "loop", "format": "qcow2"})
    check("nbd" in e["desc"], "%r" % e)
    e = c.err("image-detach", {"device": "/dev/sda"})
    check(e["class"] == "DeviceNotFound", "%r" % e)


def nbd_mode(m):
    with open(tmp + "/nbdmode", "w") as f:
        f.write(m)


def nbd_pids():
    return sorted(i for i in range(4)
                  if os.path.exists(tmp + "/sys/block/nbd%d/pid" % i))


def nbd_success():
    c = b.client()
    nbd_mode("ok")
    d = c.job("image-attach", {"path": tmp + "/images/disk.raw",
                               "mode": "nbd", "format": "raw",
                               "readonly": True})
    check(d["status"] == "concluded", "attach: %r" % d)
    dev = d["result"]["device"]
    n = int(dev.rsplit("nbd", 1)[1])
    check(nbd_pids() == [n], "pid files: %r" % nbd_pids())
    with open(tmp + "/nbdlog") as f:
        last = f.read().splitlines()[-1]
    img = tmp + "/images/disk.raw"
    if qb.privsep_user() is not None:
        # The helper's qemu-nbd gets the image the helper opened, as its
        # fd 3 (the fake says what that fd is).
        img = "/proc/self/fd/3 (= %s)" % img
    check(last == "-c %s -r -f raw -- %s" % (dev, img),
          "qemu-nbd argv: %r" % last)
    # Locked while ours: the lock file is held.
    check(os.path.exists(tmp + "/locks/nbd%d.lock" % n), "no lock file")
    d = c.job("image-detach", {"device": dev})
    check(d["status"] == "concluded", "detach: %r" % d)
    # The fake device is a plain file: BLKFLSBUF fails, and says so.
    check(d["result"].get("flushed") is False and
          "flush-error" in d["result"], "%r" % d)
    check(nbd_pids() == [], "still connected: %r" % nbd_pids())


def nbd_no_free():
    c = b.client()
    nbd_mode("ok")
    devs = []
    for i in range(4):
        d = c.job("image-attach", {"path": tmp + "/images/disk.raw",
                                   "mode": "nbd"})
        check(d["status"] == "concluded", "attach %d: %r" % (i, d))
        devs.append(d["result"]["device"])
    check(len(set(devs)) == 4, "same device twice: %r" % devs)
    d = c.job("image-attach", {"path": tmp + "/images/disk.raw",
                               "mode": "nbd"})
    check(d["status"] == "failed" and
          "no free nbd devices" in d["error"]["desc"], "%r" % d)
    for dev in devs:
        check(c.job("image-detach", {"device": dev})["status"] ==
              "concluded", "detach %s" % dev)
    check(nbd_pids() == [], "left connected: %r" % nbd_pids())


def nbd_no_pid():
    c = b.client()
    nbd_mode("nopid")
    d = c.job("image-attach", {"path": tmp + "/images/disk.raw",
                               "mode": "nbd"})
    check(d["status"] == "failed" and "did not connect" in
          d["error"]["desc"], "%r" % d)
    with open(tmp + "/nbdlog") as f:
        last = f.read().splitlines()[-1]
    check(last.startswith("-d "), "not disconnected after failure: %r" % last)


def nbd_tool_fails():
    c = b.client()
    nbd_mode("fail")
    d = c.job("image-attach", {"path": tmp + "/images/disk.raw",
                               "mode": "nbd"})
    check(d["status"] == "failed" and "Permission denied" in
          d["error"]["desc"], "%r" % d)
    check(nbd_pids() == [], "%r" % nbd_pids())


def nbd_cancel_hanging():
    c = b.client()
    nbd_mode("hang")
    jid = c.ok("image-attach", {"path": tmp + "/images/disk.raw",
                                "mode": "nbd"})["job"]
    c.wait_event(lambda e: e["event"] == "JOB_STATUS_CHANGE" and
                 e["data"]["id"] == jid and e["data"]["status"] == "running")
    c.ok("job-cancel", {"id": jid})
    d = c.wait_job(jid)
    check(d["status"] == "cancelled", "%r" % d)
    check("undone" in d.get("result", {}), "%r" % d)
    nbd_mode("ok")


def nbd_cancel_waiting_pid():
    c = b.client()
    nbd_mode("nopid")
    jid = c.ok("image-attach", {"path": tmp + "/images/disk.raw",
                                "mode": "nbd"})["job"]
    # qemu-nbd -c returned; the job now waits for the pid file.
    end = time.monotonic() + 30
    while True:
        with open(tmp + "/nbdlog") as f:
            if f.read().splitlines()[-1].startswith("-c "):
                break
        check(time.monotonic() < end, "qemu-nbd never ran")
        time.sleep(0.01)
    c.ok("job-cancel", {"id": jid})
    d = c.wait_job(jid)
    # Either cancelled (disconnected again) or, if the deadline won the
    # race, failed after disconnecting: never left connected.
    check(d["status"] in ("cancelled", "failed"), "%r" % d)
    with open(tmp + "/nbdlog") as f:
        last = f.read().splitlines()[-1]
    check(last.startswith("-d "), "not disconnected: %r" % last)
    nbd_mode("ok")


def nbd_module_missing():
    # A second broker whose sysfs has no nbd at all.
    import shutil
    os.makedirs(tmp + "/sys2/block", exist_ok=True)
    b2 = Broker(["--image-root", tmp + "/images",
                 "--nbd-sysfs", tmp + "/sys2", "--nbd-lock-dir",
                 tmp + "/locks2"])
    try:
        c = b2.client()
        d = c.job("image-attach", {"path": tmp + "/images/disk.raw",
                                   "mode": "nbd"})
        check(d["status"] == "failed" and "nbd module not loaded" in
              d["error"]["desc"], "%r" % d)
    finally:
        b2.close()
        shutil.rmtree(tmp + "/sys2", ignore_errors=True)


# ---- the image journal across a broker restart ----

def nbd_format_separated():
    """Separated, qemu-nbd runs as root: a format off the helper's list is
    refused at once, nothing attached, no job made."""
    c = b.client()
    jobs = len(c.ok("query-jobs"))
    e = c.err("image-attach", {"path": tmp + "/images/disk.raw",
                               "mode": "nbd", "format": "vmdk"})
    check(e["class"] == "GenericError" and "privilege separation" in
          e["desc"], "%r" % e)
    check(len(c.ok("query-jobs")) == jobs, "a job was made")
    check(nbd_pids() == [], "an nbd device connected")


def disguised_server(dev):
    """Separated, a helper after a restart disconnects a device whose
    sysfs pid is a qemu-nbd serving a /proc/self/fd/ image on it, as the
    real one's server stays running. The fake leaves none: this stands
    in for it (the configured name, its argv)."""
    return subprocess.Popen(["fake-qemu-nbd", "-c",
                             "import time; time.sleep(600)", "-c", dev,
                             "/proc/self/fd/3"], executable=sys.executable)


def rec_path(mode, dev):
    return os.path.join(b.d.state_dir, "images", mode,
                        os.path.basename(dev) + ".json")


def read_rec(mode, dev):
    try:
        with open(rec_path(mode, dev)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def write_rec(mode, dev, path, state):
    os.makedirs(os.path.dirname(rec_path(mode, dev)), exist_ok=True)
    with open(rec_path(mode, dev), "w") as f:
        json.dump({"path": path, "mode": mode, "device": dev,
                   "readonly": False, "state": state}, f)


def losetup_cleanup(devs, img):
    """Whatever a failed case left attached to img goes (never someone
    else's device)."""
    for dev in devs:
        if dev is not None and backs(dev, img):
            subprocess.run(["losetup", "--detach", dev])


def no_leak():
    """After a case: no child left (fds are counted around the detach
    in each case)."""
    end = time.monotonic() + 10
    while qb.children(b.d.pid) and time.monotonic() < end:
        time.sleep(0.05)
    check(not qb.children(b.d.pid), "children left: %r" %
          qb.children(b.d.pid))


def loop_restart_adopt():
    img = tmp + "/images/disk.raw"
    dev = None
    try:
        c = b.client()
        d = c.job("image-attach", {"path": img, "mode": "loop"})
        check(d["status"] == "concluded", "attach: %r" % d)
        dev = d["result"]["device"]
        r = read_rec("loop", dev)
        check(r is not None and r["state"] == "attached" and
              r["path"] == img and r["device"] == dev, "record: %r" % r)
        b.restart()
        check("image journal %s (%s): attached; adopted" % (dev, img) in
              b.log(), "adoption not logged")
        c = b.client()
        fds = fd_count(b.d.pid)
        d = c.job("image-detach", {"device": dev})
        check(d["status"] == "concluded", "detach after restart: %r" % d)
        check(not backs(dev, img), "%s still attached" % dev)
        check(read_rec("loop", dev) is None, "record left")
        check(fd_count(b.d.pid) == fds, "fds %d -> %d" %
              (fds, fd_count(b.d.pid)))
        no_leak()
    finally:
        losetup_cleanup([dev], img)


def loop_restart_attaching():
    img = tmp + "/images/disk.raw"
    dev = gone = None
    try:
        # What a broker killed between its attaching losetup and the
        # "attached" record leaves: the device attached, the record at
        # "attaching". And one whose losetup never ran.
        dev = subprocess.run(["losetup", "--find", "--show", "--", img],
                             check=True, capture_output=True,
                             text=True).stdout.strip()
        gone = "/dev/loop%d" % (int(dev[9:]) + 1000)
        write_rec("loop", dev, img, "attaching")
        write_rec("loop", gone, img, "attaching")
        b.restart()
        c = b.client()
        jobs = [j for j in c.ok("query-jobs")
                if j["kind"] == "image-detach" and j.get("target") == dev]
        check(len(jobs) == 1, "no image-detach job for %s: %r" %
              (dev, c.ok("query-jobs")))
        if jobs[0]["status"] not in ("concluded", "failed", "cancelled"):
            d = c.wait_job(jobs[0]["id"])
        else:
            d = jobs[0]
        check(d["status"] == "concluded", "detach at start: %r" % d)
        check(not backs(dev, img), "%s still attached" % dev)
        check(read_rec("loop", dev) is None, "record of %s left" % dev)
        check(read_rec("loop", gone) is None, "record of %s left" % gone)
        check("image journal %s (%s): attaching; interrupted, detaching" %
              (dev, img) in b.log(), "detach not logged")
        # Not ours any more: forgotten.
        e = c.err("image-detach", {"device": dev})
        check(e["class"] == "DeviceNotFound", "%r" % e)
        no_leak()
    finally:
        losetup_cleanup([dev], img)


def restart_job(c, dev):
    """The image-detach job the restart started for dev, waited for."""
    jobs = [j for j in c.ok("query-jobs")
            if j["kind"] == "image-detach" and j.get("target") == dev]
    check(len(jobs) == 1, "no image-detach job for %s: %r" %
          (dev, c.ok("query-jobs")))
    if jobs[0]["status"] in ("concluded", "failed", "cancelled"):
        return jobs[0]
    return c.wait_job(jobs[0]["id"])


def loop_restart_tool_running():
    # A broker killed while its "losetup DEV -- PATH" runs: that child has
    # its own process group, outlives the kill and attaches after the
    # next broker has started. The record must not be judged before it
    # is gone, or the device ends attached and unknown to the broker
    # ("not attached by this broker").
    img = tmp + "/images/disk.raw"
    mode, pids = tmp + "/toolmode", tmp + "/toolpids"
    with open(mode, "w") as f:
        f.write("slowattach")
    b2 = Broker(["--image-root", tmp + "/images", "--losetup",
                 os.path.join(SRCDIR, "tests/integration/fake-tool")],
                env={"FAKE_TOOL_MODE_FILE": mode, "FAKE_TOOL_PIDS": pids,
                     "FAKE_TOOL_DELAY": "3"})
    dev = None
    try:
        c = b2.client()
        c.ok("image-attach", {"path": img, "mode": "loop"})
        # --find, then the attaching losetup: killed once that runs
        end = time.monotonic() + 30
        while True:
            try:
                with open(pids) as f:
                    tools = [int(x) for x in f.read().split()]
            except FileNotFoundError:
                tools = []
            if len(tools) >= 2:
                break
            check(time.monotonic() < end, "losetup never ran")
            time.sleep(0.01)
        recs = os.listdir(os.path.join(b2.d.state_dir, "images", "loop"))
        dev = "/dev/" + [r for r in recs if r.endswith(".json")][0][:-5]
        b2.restart()
        c = b2.client()
        d = restart_job(c, dev)
        check(d["status"] == "concluded", "detach at start: %r" % d)
        for p in tools:     # long gone (the job waited): nothing to come
            while os.path.exists("/proc/%d" % p):
                check(time.monotonic() < end + 30, "losetup %d left" % p)
                time.sleep(0.05)
        check(not backs(dev, img), "%s left attached" % dev)
        check(not [r for r in os.listdir(os.path.join(
            b2.d.state_dir, "images", "loop")) if r.endswith(".json")],
              "record left")
        log = b2.log()
        check("image journal %s (%s): attaching; interrupted, detaching" %
              (dev, img) in log, "detach not logged: %s" % log[-2000:])
        if not qb.VALGRIND:     # else it may start after losetup ended
            check("still runs: waiting for it" in log, "no wait logged")
        e = c.err("image-detach", {"device": dev})
        check(e["class"] == "DeviceNotFound", "%r" % e)
    finally:
        b2.close()
        losetup_cleanup([dev], img)


def nbd_restart_tool_running():
    # The same for qemu-nbd -c: connected only after the restart.
    c = b.client()
    nbd_mode("slow")
    c.ok("image-attach", {"path": tmp + "/images/disk.raw", "mode": "nbd"})
    end = time.monotonic() + 30
    while True:
        with open(tmp + "/nbdlog") as f:
            if f.read().splitlines()[-1].startswith("-c "):
                break
        check(time.monotonic() < end, "qemu-nbd never ran")
        time.sleep(0.01)
    killed = time.monotonic()
    recs = [r for r in os.listdir(os.path.join(b.d.state_dir, "images",
            "nbd")) if r.endswith(".json")]
    dev = read_rec("nbd", recs[0][:-5])["device"]
    try:
        b.restart()
        c = b.client()
        d = restart_job(c, dev)
        check(d["status"] == "concluded", "detach at start: %r" % d)
        time.sleep(max(0, killed + 3.5 - time.monotonic()))
        check(nbd_pids() == [], "left connected: %r" % nbd_pids())
        check(read_rec("nbd", dev) is None, "record left")
    finally:
        nbd_mode("ok")
        for i in nbd_pids():
            os.unlink(tmp + "/sys/block/nbd%d/pid" % i)


def restart_corrupt_record():
    p = os.path.join(b.d.state_dir, "images", "nbd", "nbd2.json")
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write('{"path": tr')
    b.restart()
    check(b.proc.poll() is None, "broker did not start")
    check(not os.path.exists(p) and os.path.exists(p + ".bad"),
          "corrupt record not set aside")
    check("set aside as .bad" in b.log(), "not logged")
    b.client().ok("query-jobs")


def nbd_restart_adopt():
    import fcntl
    c = b.client()
    nbd_mode("ok")
    d = c.job("image-attach", {"path": tmp + "/images/disk.raw",
                               "mode": "nbd", "format": "raw"})
    check(d["status"] == "concluded", "attach: %r" % d)
    dev = d["result"]["device"]
    n = int(dev.rsplit("nbd", 1)[1])
    srv = None
    try:
        r = read_rec("nbd", dev)
        check(r is not None and r["state"] == "attached" and
              r.get("format") == "raw", "record: %r" % r)
        if qb.privsep_user() is not None:
            srv = disguised_server(dev)
            qb.wait_for(lambda: b"-c" in open("/proc/%d/cmdline" %
                        srv.pid, "rb").read(), "stand-in server")
            with open(tmp + "/sys/block/nbd%d/pid" % n, "w") as f:
                f.write("%d\n" % srv.pid)
        b.restart()
        check(nbd_pids() == [n], "pid files: %r" % nbd_pids())
        # The lock is the new broker's again.
        with open(tmp + "/locks/nbd%d.lock" % n, "w") as lf:
            try:
                fcntl.flock(lf, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise Failed("nbd%d lock not taken again" % n)
            except BlockingIOError:
                pass
        c = b.client()
        fds = fd_count(b.d.pid)
        d = c.job("image-detach", {"device": dev})
        check(d["status"] == "concluded", "detach after restart: %r" % d)
        check(nbd_pids() == [], "still connected: %r" % nbd_pids())
        check(read_rec("nbd", dev) is None, "record left")
        # The lock it held went with the attachment.
        check(fd_count(b.d.pid) == fds - 1, "fds %d -> %d" %
              (fds, fd_count(b.d.pid)))
        no_leak()
    finally:
        if srv is not None:
            srv.kill()
            srv.wait()
        try:
            os.unlink(tmp + "/sys/block/nbd%d/pid" % n)
        except FileNotFoundError:
            pass


try:
    setup()
    run_cases = [
        ("loop attach/detach read-write", loop_rw),
        ("loop attach/detach read-only", loop_ro),
        ("missing file, path outside roots, bad args", loop_missing_and_outside),
        ("nbd attach/detach on the fake sysfs", nbd_success),
        ("nbd: no free devices", nbd_no_free),
        ("nbd: pid file never appears", nbd_no_pid),
        ("nbd: qemu-nbd fails", nbd_tool_fails),
        ("nbd: cancel while qemu-nbd hangs", nbd_cancel_hanging),
        ("nbd: cancel while waiting for the pid file", nbd_cancel_waiting_pid),
        ("nbd: module not loaded", nbd_module_missing),
        ("restart: an attached loop device is adopted, detachable",
         loop_restart_adopt),
        ("restart: an interrupted loop attach is detached as a job",
         loop_restart_attaching),
        ("restart: a dead broker's losetup still running is waited for",
         loop_restart_tool_running),
        ("restart: a dead broker's qemu-nbd -c still running is waited "
         "for", nbd_restart_tool_running),
        ("restart: a corrupt record is set aside", restart_corrupt_record),
        ("restart: an attached nbd device is adopted", nbd_restart_adopt),
    ]
    if qb.privsep_user() is not None:
        # Separated there is no losetup child (the helper's ioctls, one
        # synchronous step) and qemu-nbd -c is the helper's child, killed
        # with it: no tool of a dead broker can still be running.
        run_cases = [(n, f) for n, f in run_cases
                     if f not in (loop_restart_tool_running,
                                  nbd_restart_tool_running)]
        run_cases.append(("separated: nbd format off the helper's list",
                          nbd_format_separated))
    try:
        run(run_cases)
    finally:
        pass
finally:
    if b is not None:
        b.close()
    if tmp is not None:
        subprocess.run(["rm", "-rf", tmp])
