#!/usr/bin/env python3
"""Domain lifecycle on libvirt's test driver (test:///default, the
broker's default URI): every command, through the control socket, with
the state checked by query-domains after each job."""
from jobsh import Broker, check, run

XML = ("<domain type='test'><name>%s</name><memory>65536</memory>"
       "<os><type>hvm</type></os></domain>")

b = Broker()


def state(c, name):
    for d in c.ok("query-domains"):
        check(set(d) >= {"name", "uuid", "state", "persistent"}, "%r" % d)
        if d["name"] == name:
            return d["state"]
    return "gone"


def ok(c, cmd, args):
    d = c.job(cmd, args)
    check(d["status"] == "concluded", "%s %r: %r" % (cmd, args, d))
    check(d["kind"] == cmd, "kind %r" % d["kind"])
    return d.get("result", {})


def every_command():
    c = b.client()
    r = ok(c, "domain-define", {"xml": XML % "d1"})
    check(r["domain"] == "d1", "%r" % r)
    check(state(c, "d1") == "shutoff", "after define")
    ok(c, "domain-destroy", {"domain": "d1"})      # already off: success
    r = ok(c, "domain-start", {"domain": "d1"})
    check(r["state"] == "running" and state(c, "d1") == "running", "%r" % r)
    r = ok(c, "domain-suspend", {"domain": "d1"})
    check(state(c, "d1") == "paused", "after suspend")
    ok(c, "domain-resume", {"domain": "d1"})
    check(state(c, "d1") == "running", "after resume")
    ok(c, "domain-reboot", {"domain": "d1"})
    check(state(c, "d1") == "running", "after reboot")
    ok(c, "domain-snapshot", {"domain": "d1", "name": "snap1"})
    ok(c, "domain-snapshot-revert", {"domain": "d1", "name": "snap1"})
    d = c.job("domain-snapshot-revert", {"domain": "d1", "name": "nope"})
    check(d["status"] == "failed" and d["error"]["desc"], "%r" % d)
    ok(c, "domain-save", {"domain": "d1"})
    check(state(c, "d1") == "shutoff", "after save")
    ok(c, "domain-start", {"domain": "d1"})
    r = ok(c, "domain-shutdown", {"domain": "d1", "timeout": 30,
                                  "force": False})
    check(state(c, "d1") == "shutoff", "after shutdown")
    ok(c, "domain-start", {"domain": "d1"})
    d = c.job("domain-migrate", {"domain": "d1", "uri": "test:///default",
                                 "live": True, "bandwidth": 100})
    check(d["status"] == "failed" and "migration" in d["error"]["desc"],
          "test driver cannot migrate, must say so: %r" % d)
    r = ok(c, "domain-destroy", {"domain": "d1"})
    check(r["state"] == "shutoff", "%r" % r)
    ok(c, "domain-undefine", {"domain": "d1"})
    check(state(c, "d1") == "gone", "after undefine")


def bad_arguments():
    c = b.client()
    for cmd, args in (("domain-start", {}),
                      ("domain-start", {"domain": 3}),
                      ("domain-start", {"domain": "x", "bogus": 1}),
                      ("domain-shutdown", {"domain": "x", "timeout": "s"}),
                      ("domain-snapshot", {"domain": "x", "name": "a/b"}),
                      ("domain-migrate", {"domain": "x"}),
                      ("domain-define", {"xml": "<domain/>"}),
                      ("query-domains", {"x": 1})):
        e = c.err(cmd, args)
        check(e["class"] == "GenericError" and e["desc"], "%s: %r" % (cmd, e))
    d = c.job("domain-start", {"domain": "no-such-domain"})
    check(d["status"] == "failed" and "no-such-domain" in
          d["error"]["desc"], "%r" % d)


def one_job_per_domain():
    c = b.client()
    ok(c, "domain-define", {"xml": XML % "d2"})
    # One write: the test driver's start can end before a second read.
    first, second = c.send_batch([("domain-start", {"domain": "d2"}),
                                  ("domain-suspend", {"domain": "d2"})])
    replies = {}
    while len(replies) < 2:
        m = c._read()
        if "event" in m:
            c.events.append(m)
        else:
            replies[m["id"]] = m
    check("return" in replies[first], "%r" % replies[first])
    check("error" in replies[second] and "busy" in
          replies[second]["error"]["desc"], "%r" % replies[second])
    c.wait_job(replies[first]["return"]["job"])
    ok(c, "domain-destroy", {"domain": "d2"})
    ok(c, "domain-undefine", {"domain": "d2"})


def events_sequence():
    c = b.client()
    jid = c.ok("domain-define", {"xml": XML % "d3"})["job"]
    seen = []
    while True:
        e = c.wait_event(lambda e: e["event"] == "JOB_STATUS_CHANGE" and
                         e["data"]["id"] == jid)
        check("vm" not in e and "timestamp" in e, "%r" % e)
        seen.append(e["data"]["status"])
        if seen[-1] in ("concluded", "failed", "cancelled"):
            break
    check(seen == ["created", "running", "concluded"], "%r" % seen)
    ok(c, "domain-undefine", {"domain": "d3"})


try:
    run([
        ("every lifecycle command on test:///default", every_command),
        ("bad arguments refused at once; unknown domain fails the job",
         bad_arguments),
        ("one lifecycle job per domain", one_job_per_domain),
        ("JOB_STATUS_CHANGE created, running, concluded", events_sequence),
    ])
finally:
    b.close()
