"""The job tests' layer over the shared harness (qb.py): a qmpbrokerd of
their own and QMP clients that wait for JOB_STATUS_CHANGE."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback

import qb

BUILDDIR = qb.BUILDDIR
SRCDIR = qb.SRCDIR
GUARD = max(60.0, 2 * qb.TIMEOUT)  # deadlock guard, never a speed check
FINAL = ("concluded", "failed", "cancelled")


class Failed(Exception):
    pass


def check(cond, why):
    if not cond:
        raise Failed(why)


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(GUARD)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.next_id = 1
        greeting = self._read()
        check("QMP" in greeting, "no greeting: %r" % greeting)
        r = self.execute("qmp_capabilities")
        check("return" in r, "negotiation failed: %r" % r)

    def close(self):
        self.sock.close()

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Failed("broker closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def send(self, name, args=None):
        return self.send_batch([(name, args)])[0]

    def send_batch(self, cmds):
        """Sends [(name, args)] in one write, so the broker reads them
        in one go (no job can end between them); returns their ids."""
        ids, data = [], b""
        for name, args in cmds:
            ids.append(self.next_id)
            msg = {"execute": name, "id": self.next_id}
            self.next_id += 1
            if args is not None:
                msg["arguments"] = args
            data += json.dumps(msg).encode() + b"\r\n"
        self.sock.sendall(data)
        return ids

    def execute(self, name, args=None):
        i = self.send(name, args)
        while True:
            m = self._read()
            if "event" in m:
                self.events.append(m)
            elif m.get("id") == i:
                return m

    def ok(self, name, args=None):
        r = self.execute(name, args)
        check("return" in r, "%s %r: %r" % (name, args, r))
        return r["return"]

    def err(self, name, args=None):
        r = self.execute(name, args)
        check("error" in r, "%s %r should fail: %r" % (name, args, r))
        return r["error"]

    def wait_event(self, pred, guard=GUARD):
        end = time.monotonic() + guard
        while True:
            for e in self.events:
                if pred(e):
                    self.events.remove(e)
                    return e
            left = end - time.monotonic()
            if left <= 0:
                raise Failed("event never came")
            self.sock.settimeout(left)
            try:
                m = self._read()
            except socket.timeout:
                raise Failed("event never came")
            finally:
                self.sock.settimeout(GUARD)
            if "event" in m:
                self.events.append(m)

    def job(self, name, args=None):
        """Starts a job and waits for its end; returns the final
        JOB_STATUS_CHANGE data."""
        r = self.ok(name, args)
        check(isinstance(r.get("job"), int), "no job id: %r" % r)
        return self.wait_job(r["job"])

    def wait_job(self, jid, guard=GUARD):
        e = self.wait_event(lambda e: e["event"] == "JOB_STATUS_CHANGE" and
                            e["data"]["id"] == jid and
                            e["data"]["status"] in FINAL, guard)
        return e["data"]


class Broker:
    """A qmpbrokerd on the shared harness (qb.py: its dirs, log, wrapper,
    teardown), with job-minded clients. env goes to the daemon (and so to
    the tools it runs)."""

    def __init__(self, args=(), env=None):
        self.h = qb.Harness("qb-jobs")
        self.dir = self.h.dir
        cfg = self.h.path("qmpbrokerd.conf")
        open(cfg, "w").close()
        # Daemon() takes no env: the child inherits ours.
        os.environ.update(env or {})
        try:
            self.d = qb.Daemon(self.h, args=list(args), config=cfg,
                               pid_file=self.h.path("pid"))
        except BaseException:
            self.h.cleanup()
            raise
        self.proc = self.d.p
        self.control = self.d.control
        self.clients = []

    def log(self):
        return self.d.output()[-20000:]

    def client(self, subscribe=True):
        c = Client(self.control)
        self.clients.append(c)
        if subscribe:
            c.ok("subscribe", {"events": ["JOB_STATUS_CHANGE"]})
        return c

    def stop(self, sig=signal.SIGTERM):
        for c in self.clients:
            c.close()
        self.clients = []
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(GUARD)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return self.proc.returncode

    def restart(self, sig=signal.SIGKILL):
        """Kills the broker (SIGKILL: a crash) and starts another on the
        same state dir, args and config; fresh run dir and control
        socket, so nothing the dead one left is in the way."""
        self.stop(sig)
        self.restarts = getattr(self, "restarts", 0) + 1
        tag = "r%d" % self.restarts
        self.d = qb.Daemon(self.h, args=self.d.extra, config=self.d.config,
                           pid_file=self.h.path(tag + ".pid"),
                           state_dir=self.d.state_dir, tag=tag)
        self.proc = self.d.p
        self.control = self.d.control

    def close(self):
        # TERM first even on failure paths: the broker reaps its children.
        rc = self.stop(signal.SIGTERM)
        log = self.log()
        self.h.cleanup()
        # A sanitizer, leak or valgrind report is a failure, whatever the
        # cases said; so is any unclean exit.
        for bad in ("Sanitizer", "runtime error:", "LeakSanitizer"):
            if bad in log:
                print("not ok - broker sanitizer report (exit %r): %s" %
                      (rc, log[max(0, log.find(bad) - 200):][:1500]
                       .replace("\n", " | ")), flush=True)
                sys.exit(1)
        if rc != 0:
            print("not ok - broker exit status %r: %s" %
                  (rc, log[-1500:].replace("\n", " | ")), flush=True)
            sys.exit(1)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def run(cases):
    """cases: list of (name, fn). Prints one line each; exits 0/1."""
    bad = 0
    for name, fn in cases:
        try:
            fn()
            print("ok - %s" % name, flush=True)
        except Exception as ex:
            bad += 1
            why = str(ex) if isinstance(ex, Failed) else \
                traceback.format_exc().strip().replace("\n", " | ")
            print("not ok - %s: %s" % (name, why), flush=True)
    sys.exit(1 if bad else 0)
