#!/usr/bin/env python3
"""Domain lifecycle against a real libvirtd this test starts itself (or
the system one, if it runs), with a TCG QEMU domain: define, start,
suspend, resume, reboot, snapshot, destroy, undefine; the domain's QMP
events reach a subscriber through libvirt-qemu while it happens."""
import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from jobsh import Broker, GUARD, check, run
import qb
from qb import try_connect as usable

LIBVIRTD = shutil.which("libvirtd") or "/usr/sbin/libvirtd"
VIRTLOGD = shutil.which("virtlogd") or "/usr/sbin/virtlogd"
QEMU = shutil.which("qemu-system-x86_64")
if os.geteuid() != 0 or not os.path.exists(LIBVIRTD) or QEMU is None:
    print("needs root, libvirtd and qemu-system-x86_64")
    sys.exit(77)

tmp = tempfile.mkdtemp(prefix="qb-libvirtd-")
os.chmod(tmp, 0o755)    # QEMU runs as libvirt-qemu and opens the disk
NAME = "qb-" + os.path.basename(tmp).split("-")[-1]
procs = []
uri = None
b = None


def wait_for(path, proc):
    end = time.monotonic() + GUARD
    while not usable(path):
        if proc.poll() is not None:
            with open(tmp + "/libvirtd.log") as f:
                raise RuntimeError("%s exited: %s" % (proc.args[0],
                                   f.read()[-800:]))
        if time.monotonic() > end:
            raise RuntimeError("%s never appeared" % path)
        time.sleep(0.05)


def machine_lock():
    """One privileged libvirtd per machine: test runs of other trees or
    builds (plain and ASan in parallel) wait for each other here."""
    import fcntl
    f = open("/run/lock/qmpbroker-test-libvirtd.lock", "w")
    end = time.monotonic() + 1800      # deadlock guard only
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.monotonic() > end:
                raise RuntimeError("another libvirtd test holds the lock")
            time.sleep(0.5)


def libvirtd_running():
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/comm" % pid) as f:
                if f.read().strip() == "libvirtd":
                    return True
        except (OSError, ValueError):
            pass
    return False


def start_libvirtd():
    global uri
    sep = qb.privsep_user()
    if usable("/run/libvirt/libvirt-sock"):
        if sep is not None:
            # The system libvirtd admits whom its admin says (group,
            # polkit): not this test's to change.
            print("1..0 # SKIP separated, and a system libvirtd runs")
            sys.exit(77)
        uri = "qemu:///system"
        return "system libvirtd"
    # A private one: own config, own socket dir.
    sockdir = tmp + "/sock"
    os.makedirs(sockdir, exist_ok=True)
    conf = tmp + "/libvirtd.conf"
    # Separated, the daemon connects as its own user: the socket's
    # group is that user's (as a host would add it to group libvirt).
    perms = '"0700"'
    if sep is not None:
        perms = '"0770"\nunix_sock_group = "%s"' % grp.getgrgid(
            pwd.getpwnam(sep).pw_gid).gr_name
    with open(conf, "w") as f:
        f.write('unix_sock_dir = "%s"\nunix_sock_rw_perms = %s\n'
                'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
                % (sockdir, perms))
    log = open(tmp + "/libvirtd.log", "a")
    if not usable("/run/libvirt/virtlogd-sock"):
        p = subprocess.Popen([VIRTLOGD], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL)
        procs.append(p)
        wait_for("/run/libvirt/virtlogd-sock", p)
    # A second privileged libvirtd cannot run next to another (drivers'
    # pid files), and a half-started one may touch the other's state: wait
    # until none runs (another tree's test that predates the lock).
    end = time.monotonic() + 900        # deadlock guard only
    while libvirtd_running():
        check(time.monotonic() < end, "another libvirtd never went away")
        time.sleep(1)
    p = subprocess.Popen([LIBVIRTD, "-f", conf, "-p", tmp + "/libvirtd.pid"],
                         stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    wait_for(sockdir + "/libvirt-sock", p)
    # The socket comes before the drivers: up means a listing works.
    u = "qemu:///system?socket=%s/libvirt-sock" % sockdir
    end = time.monotonic() + GUARD
    while subprocess.run(["virsh", "-q", "-c", u, "list", "--all"],
                         stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL).returncode != 0:
        if p.poll() is not None or time.monotonic() > end:
            with open(tmp + "/libvirtd.log") as f:
                raise RuntimeError("libvirtd not usable: %s" %
                                   f.read()[-800:])
        time.sleep(0.2)
    procs.append(p)
    uri = "qemu:///system?socket=%s/libvirt-sock" % sockdir
    return "private libvirtd"


XML = """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <emulator>%s</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>"""


def state(c):
    for d in c.ok("query-domains"):
        if d["name"] == NAME:
            return d["state"]
    return "gone"


def ok(c, cmd, args):
    d = c.job(cmd, args)
    check(d["status"] == "concluded", "%s: %r" % (cmd, d))
    return d.get("result", {})


def wait_vm(c, want):
    """Waits until the domain's VM is in state want (None: absent)."""
    end = time.monotonic() + GUARD
    while True:
        vms = {v["name"]: v for v in c.ok("query-vms")}
        v = vms.get(NAME)
        if (v is None and want is None) or (v is not None and
                                             v["state"] == want):
            return v
        check(time.monotonic() < end, "VM %r, want %r" % (v, want))
        time.sleep(0.05)


def qmp_event(ev, names):
    """Waits for one of the domain's QMP events, delivered as the VM's."""
    return ev.wait_event(lambda e: e.get("vm") == NAME and
                         e["event"] in names)


def lifecycle():
    disk = tmp + "/disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "16M"],
                   check=True)
    c = b.client()
    ev = b.client(subscribe=False)
    ev.ok("subscribe", {"vms": [NAME]})

    r = ok(c, "domain-define", {"xml": XML % (NAME, QEMU, disk)})
    check(r["domain"] == NAME, "%r" % r)
    check(state(c) == "shutoff", "defined but %s" % state(c))
    r = ok(c, "domain-start", {"domain": NAME})
    check(r["state"] == "running", "%r" % r)

    # The running domain is a VM of the broker, its QMP through libvirt.
    v = wait_vm(c, "ready")
    check("libvirt" in v["origin"] and v["qemu"]["major"] >= 2, "%r" % v)
    st = c.ok("vm-execute", {"vm": NAME, "command": "query-status"})
    check(st["status"] == "running", "%r" % st)
    e = c.err("vm-execute", {"vm": NAME, "command": "no-such-command"})
    check(e["class"] == "CommandNotFound", "QEMU's own error: %r" % e)

    ok(c, "domain-suspend", {"domain": NAME})
    check(state(c) == "paused", "after suspend")
    st = c.ok("vm-execute", {"vm": NAME, "command": "query-status"})
    check(st["status"] == "paused", "%r" % st)
    e = qmp_event(ev, ("STOP",))
    check("timestamp" in e and isinstance(e.get("data", {}), dict), "%r" % e)

    ok(c, "domain-resume", {"domain": NAME})
    check(state(c) == "running", "after resume")
    qmp_event(ev, ("RESUME",))

    ok(c, "domain-reboot", {"domain": NAME})
    # Without a guest OS the ACPI request is all there is: QEMU reports it.
    qmp_event(ev, ("POWERDOWN", "RESET"))
    check(state(c) == "running", "after reboot")

    r = ok(c, "domain-snapshot", {"domain": NAME, "name": "s1"})
    check(r["snapshot"] == "s1", "%r" % r)
    ok(c, "domain-snapshot-revert", {"domain": NAME, "name": "s1"})
    check(state(c) == "running", "after revert")

    r = ok(c, "domain-destroy", {"domain": NAME})
    check(r["state"] == "shutoff" and state(c) == "shutoff", "%r" % r)
    wait_vm(c, None)    # no QEMU, no VM
    ok(c, "domain-destroy", {"domain": NAME})   # already off: success
    ok(c, "domain-undefine", {"domain": NAME})
    check(state(c) == "gone", "after undefine")


def forget_domain():
    """A failed case may leave the domain behind: the next starts clean."""
    if uri is not None:
        for cmd in (["destroy", NAME],
                    ["undefine", NAME, "--snapshots-metadata"]):
            subprocess.run(["virsh", "-q", "-c", uri] + cmd,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


def shutdown_not_forced():
    # No guest OS: the graceful shutdown cannot complete; it must be
    # reported as timed out, not forced, unless force is asked.
    forget_domain()
    disk = tmp + "/disk2.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "16M"],
                   check=True)
    c = b.client()
    ok(c, "domain-define", {"xml": XML % (NAME, QEMU, disk)})
    ok(c, "domain-start", {"domain": NAME})
    d = c.job("domain-shutdown", {"domain": NAME, "timeout": 1})
    check(d["status"] == "failed" and "did not shut down" in
          d["error"]["desc"], "%r" % d)
    check(state(c) == "running", "unforced shutdown killed it")
    # Cancel while waiting for the guest: the request went out and stays
    # out, the job says so and where the domain is.
    jid = c.ok("domain-shutdown", {"domain": NAME, "timeout": 600})["job"]
    c.wait_event(lambda e: e["event"] == "JOB_STATUS_CHANGE" and
                 e["data"]["id"] == jid and e["data"]["status"] == "running")
    c.ok("job-cancel", {"id": jid})
    d = c.wait_job(jid)
    # Cancelled before a worker made the call: no result, nothing done.
    # Cancelled after: the request is out; the result says so and where
    # the domain is. Either way the domain still runs.
    check(d["status"] == "cancelled", "%r" % d)
    if "result" in d:
        check(d["result"]["state"] == "running" and
              d["result"].get("requested") is True, "%r" % d)
    check(state(c) == "running", "cancelled shutdown stopped it")
    r = ok(c, "domain-shutdown", {"domain": NAME, "timeout": 1,
                                  "force": True})
    check(r.get("forced") is True and state(c) == "shutoff", "%r" % r)
    ok(c, "domain-undefine", {"domain": NAME})


def connection_lost():
    # Only with our own libvirtd: we may stop and restart it.
    if len(procs) == 0 or procs[-1].args[0] != LIBVIRTD:
        print("# system libvirtd: connection loss not tested")
        return
    forget_domain()
    disk = tmp + "/disk3.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "16M"],
                   check=True)
    c = b.client()
    ev = b.client(subscribe=False)
    ev.ok("subscribe", {"events": ["LIBVIRT_DISCONNECTED"]})
    ok(c, "domain-define", {"xml": XML % (NAME, QEMU, disk)})
    ok(c, "domain-start", {"domain": NAME})
    wait_vm(c, "ready")
    lv = procs.pop()
    lv.send_signal(signal.SIGTERM)
    lv.wait(GUARD)
    e = ev.wait_event(lambda e: e["event"] == "LIBVIRT_DISCONNECTED")
    check("reason" in e["data"], "%r" % e)
    wait_vm(c, "disconnected")
    d = c.job("domain-suspend", {"domain": NAME})
    check(d["status"] == "failed" and "libvirt" in d["error"]["desc"],
          "%r" % d)
    # QEMU outlives libvirtd; a new libvirtd finds it, the broker
    # reconnects by itself and the VM is ready again.
    start_libvirtd()
    wait_vm(c, "ready")
    st = c.ok("vm-execute", {"vm": NAME, "command": "query-status"})
    check(st["status"] == "running", "%r" % st)
    ok(c, "domain-destroy", {"domain": NAME})
    ok(c, "domain-undefine", {"domain": NAME})


def cleanup():
    forget_domain()
    if b is not None:
        b.close()
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(GUARD)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    shutil.rmtree(tmp, ignore_errors=True)


try:
    lock = machine_lock()
    which = start_libvirtd()
    print("# using %s at %s" % (which, uri))
    b = Broker(["--libvirt-uri", uri])
    run([
        ("define, start, suspend, resume, reboot, snapshot, revert, "
         "destroy, undefine on real libvirtd with QMP events", lifecycle),
        ("graceful shutdown times out unless forced", shutdown_not_forced),
        ("libvirtd lost and back: jobs fail clearly, VM returns",
         connection_lost),
    ])
finally:
    cleanup()
