#!/usr/bin/env python3
"""The job runner inside qmpbrokerd: many jobs at once, cancel in each
phase, children past their deadline or dying by signal, shutdown with jobs
in flight, retention, no fd leak. Children are a stand-in losetup
(tests/integration/fake-tool) whose behaviour a file selects."""
import os
import signal
import tempfile
import time

import qb
from jobsh import Broker, SRCDIR, GUARD, check, fd_count, run

tmp = tempfile.mkdtemp(prefix="qb-runner-")
os.makedirs(tmp + "/images")
IMG = tmp + "/images/disk.raw"
for n in ("disk.raw", "a.raw", "b.raw", "c.raw"):
    with open(tmp + "/images/" + n, "wb") as f:
        f.truncate(1 << 20)
MODE = tmp + "/mode"
PIDS = tmp + "/pids"
TOOL = os.path.join(SRCDIR, "tests/integration/fake-tool")


def mode(m):
    with open(MODE, "w") as f:
        f.write(m)


def tool_pids():
    try:
        with open(PIDS) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie not yet reaped by init counts as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids):
    end = time.monotonic() + GUARD
    while any(alive(p) for p in pids):
        check(time.monotonic() < end, "children left: %r" %
              [p for p in pids if alive(p)])
        time.sleep(0.05)


# The tool deadline that child_deadline runs into: 1.5 s, scaled as the
# guards are. Unscaled, a fake losetup that merely started slowly on a
# loaded machine (tools/check's lanes side by side, load 20) was killed
# as "timed out" where out_of_loop_devices wanted its answer.
TOOL_TIMEOUT_MS = int(1500 * qb.TIMEOUT / 30)


def broker(extra=()):
    return Broker(["--image-root", tmp + "/images", "--losetup", TOOL,
                   "--tool-timeout-ms", str(TOOL_TIMEOUT_MS),
                   "--workers", "3"] +
                  list(extra),
                  env={"FAKE_TOOL_MODE_FILE": MODE, "FAKE_TOOL_PIDS": PIDS})


b = broker()


def many_jobs():
    c = b.client()
    xml = ("<domain type='test'><name>many%d</name><memory>65536</memory>"
           "<os><type>hvm</type></os></domain>")
    ids = [c.ok("domain-define", {"xml": xml % i})["job"] for i in range(60)]
    check(len(set(ids)) == 60, "duplicate ids")
    for i in ids:
        check(c.wait_job(i)["status"] == "concluded", "job %d" % i)
    ids = [c.ok("domain-undefine", {"domain": "many%d" % i})["job"]
           for i in range(60)]
    for i in ids:
        check(c.wait_job(i)["status"] == "concluded", "job %d" % i)
    jobs = {j["id"]: j for j in c.ok("query-jobs")}
    for i in ids:
        j = jobs[i]
        check(j["status"] == "concluded" and j["kind"] == "domain-undefine"
              and "finished" in j and "created" in j, "%r" % j)
    check(c.ok("query-jobs", {"id": ids[0]})[0]["id"] == ids[0], "by id")


def job_command_errors():
    c = b.client()
    e = c.err("query-jobs", {"id": 123456})
    check("not found" in e["desc"], "%r" % e)
    e = c.err("job-cancel", {"id": "x"})
    check(e["class"] == "GenericError", "%r" % e)
    e = c.err("job-dismiss", {})
    check(e["class"] == "GenericError", "%r" % e)
    mode("sleep")
    jid = c.ok("image-attach", {"path": IMG, "mode": "loop"})["job"]
    e = c.err("job-dismiss", {"id": jid})
    check("still" in e["desc"], "%r" % e)
    c.ok("job-cancel", {"id": jid})
    check(c.wait_job(jid)["status"] == "cancelled", "not cancelled")
    e = c.err("job-cancel", {"id": jid})
    check("already" in e["desc"], "%r" % e)
    c.ok("job-dismiss", {"id": jid})
    c.err("query-jobs", {"id": jid})


def cancel_running_child():
    c = b.client()
    mode("sleep")
    open(PIDS, "w").close()
    jid = c.ok("image-attach", {"path": IMG, "mode": "loop"})["job"]
    c.wait_event(lambda e: e["event"] == "JOB_STATUS_CHANGE" and
                 e["data"]["id"] == jid and e["data"]["status"] == "running")
    end = time.monotonic() + GUARD
    while not tool_pids():
        check(time.monotonic() < end, "child never started")
        time.sleep(0.02)
    c.ok("job-cancel", {"id": jid})
    d = c.wait_job(jid)
    check(d["status"] == "cancelled", "%r" % d)
    # Reported cancelled only after the reap: the child is gone now.
    check(not any(alive(p) for p in tool_pids()), "child alive after cancel")


def child_deadline():
    c = b.client()
    for m in ("sleep", "stubborn"):
        mode(m)
        open(PIDS, "w").close()
        d = c.job("image-attach", {"path": IMG, "mode": "loop"})
        check(d["status"] == "failed" and "timed out" in d["error"]["desc"],
              "%s: %r" % (m, d))
        wait_gone(tool_pids())


def child_signal():
    c = b.client()
    mode("segv")
    d = c.job("image-attach", {"path": IMG, "mode": "loop"})
    check(d["status"] == "failed" and "signal 11" in d["error"]["desc"],
          "%r" % d)


def out_of_loop_devices():
    c = b.client()
    mode("nofree")
    open(PIDS, "w").close()
    d = c.job("image-attach", {"path": IMG, "mode": "loop"})
    check(d["status"] == "failed" and "free loop device" in
          d["error"]["desc"], "%r" % d)
    check(len(tool_pids()) == 5, "tries: %d, want 5" % len(tool_pids()))
    # Cancel while waiting between two tries: nothing attached, at once.
    open(PIDS, "w").close()
    jid = c.ok("image-attach", {"path": IMG, "mode": "loop"})["job"]
    end = time.monotonic() + GUARD
    while len(tool_pids()) < 2:
        check(time.monotonic() < end, "no retry")
        time.sleep(0.02)
    c.ok("job-cancel", {"id": jid})
    d = c.wait_job(jid)
    check(d["status"] == "cancelled", "%r" % d)
    wait_gone(tool_pids())


def no_fd_leak():
    c = b.client()
    mode("segv")
    c.job("image-attach", {"path": IMG, "mode": "loop"})   # warm up
    c.ok("query-domains")
    before = fd_count(b.proc.pid)
    for i in range(10):
        mode("segv" if i % 2 else "sleep")
        jid = c.ok("image-attach", {"path": IMG, "mode": "loop"})["job"]
        if i % 2 == 0:
            c.ok("job-cancel", {"id": jid})
        c.wait_job(jid)
        c.ok("query-domains")
    after = fd_count(b.proc.pid)
    check(after == before, "fds %d -> %d" % (before, after))


def retention():
    b2 = broker(["--job-keep-s", "1"])
    try:
        c = b2.client()
        mode("segv")
        d = c.job("image-attach", {"path": IMG, "mode": "loop"})
        c.ok("query-jobs", {"id": d["id"]})
        end = time.monotonic() + GUARD
        while "return" in c.execute("query-jobs", {"id": d["id"]}):
            check(time.monotonic() < end, "job never expired")
            time.sleep(0.1)
    finally:
        b2.close()


def shutdown_in_flight():
    b2 = broker(["--tool-timeout-ms", "600000"])
    try:
        c = b2.client()
        open(PIDS, "w").close()
        ids = []
        # One job per image at a time: three images.
        for m, img in (("sleep", "a"), ("stubborn", "b"), ("sleep", "c")):
            mode(m)
            ids.append(c.ok("image-attach", {
                "path": tmp + "/images/%s.raw" % img, "mode": "loop"})["job"])
            end = time.monotonic() + GUARD
            while len(tool_pids()) < len(ids):
                check(time.monotonic() < end, "child never started")
                time.sleep(0.02)
        # a libvirt job in flight too
        ids.append(c.ok("query-domains") and
                   c.ok("domain-start", {"domain": "test"})["job"])
        pids = tool_pids()
        b2.proc.send_signal(signal.SIGTERM)
        ends = {}
        try:
            while len(ends) < len(ids):
                e = c.wait_event(lambda e: e["event"] == "JOB_STATUS_CHANGE"
                                 and e["data"]["status"] in
                                 ("concluded", "failed", "cancelled"))
                ends[e["data"]["id"]] = e["data"]["status"]
        except Exception:
            pass
        rc = b2.proc.wait(GUARD)
        check(rc == 0, "broker exit status %r: %s" % (rc, b2.log()))
        for i in ids[:3]:
            check(ends.get(i) in ("failed", "cancelled"),
                  "job %d ended %r" % (i, ends.get(i)))
        wait_gone(pids)
    finally:
        b2.close()


try:
    run([
        ("60 jobs at once, ids and query-jobs", many_jobs),
        ("job command errors, cancel then dismiss", job_command_errors),
        ("cancel a running child: cancelled after reap", cancel_running_child),
        ("child past deadline killed (TERM, then KILL)", child_deadline),
        ("child dying by signal", child_signal),
        ("out of loop devices: retried, then failed; cancel between tries",
         out_of_loop_devices),
        ("no fd leak over jobs and children", no_fd_leak),
        ("finished jobs expire", retention),
        ("shutdown with jobs in flight", shutdown_in_flight),
    ])
finally:
    b.close()
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
