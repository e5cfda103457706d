#!/usr/bin/env python3
"""One multi-host run of the real mdeliver binary against one shared maildir.

Called by scripts/test-multihost.sh once per filesystem and strategy, after it has mounted the
filesystem on every "host" (a network + UTS namespace with its own host name). Deliverers on
the first hosts deliver unique messages concurrently, like an MTA: exit 75 or death by a
signal is retried (with --dedup, so a retry after a publish is not stored twice); a reader on
the last host moves messages new/ -> cur/ and flips flags with `mdeliver flag`; `mdeliver
list` loops on a host and every listing must hold every message acknowledged before it
started. Faults: the deliverer SIGKILLs a fraction of its own mdeliver processes; a fault
thread runs the server-side commands it is given in turn (a TCP-reset burst, then each daemon
fault: --fault NAME=COMMAND, counted as fault_NAME) every --fault-every seconds. At the end
the maildir is read from the server's side and checked: nothing lost, duplicated, overwritten
or partial. Prints one JSON object; exit status 1 on any violation.
"""
import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time


def message(mid):
    """The exact bytes of message `mid` (deterministic, so the check can rebuild them)."""
    size = (300, 1500, 6000)[int(hashlib.sha256(mid.encode()).hexdigest()[:8], 16) % 3]
    head = f"Message-ID: <{mid}@multihost.test>\nSubject: {mid}\n\n".encode()
    seed = hashlib.sha256(mid.encode()).hexdigest()
    line = (seed + "\n").encode()
    body = (line * (size // len(line) + 1))[: max(size - len(head), 1)]
    return head + body


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {}
        self.acked = {}  # key -> mid
        self.sent = {}  # (host, worker) -> messages sent
        self.errors = []
        self.violations = []
        self.durations = []  # seconds of each mdeliver delivery process
        self.held = set()  # mids the MTA gave up retrying (still queued at a real MTA)

    def took(self, seconds):
        with self.lock:
            self.durations.append(seconds)

    def timing(self):
        """Where the deliverers' time went: the median and slowest attempts, and the share of
        all attempt time spent in attempts slower than 5 s (stalled on a fault)."""
        d = sorted(self.durations)
        if not d:
            return {}
        q = lambda f: round(d[min(len(d) - 1, int(len(d) * f))], 3)
        slow = [x for x in d if x > 5]
        return {"attempt_p50": q(0.5), "attempt_p99": q(0.99), "attempt_max": round(d[-1], 1),
                "attempts_over_5s": len(slow),
                "share_over_5s": round(sum(slow) / sum(d), 2) if sum(d) else 0}

    def add(self, k, n=1):
        with self.lock:
            self.c[k] = self.c.get(k, 0) + n

    def error(self, what):
        with self.lock:
            if len(self.errors) < 20:
                self.errors.append(what)
            self.c["errors"] = self.c.get("errors", 0) + 1


def key_of(path):
    return os.path.basename(path.strip()).split(":")[0]


def unmet(a, counters):
    """The --require counters that are short: ["fault_reset 3 < 20", ...]."""
    short = []
    for k, n in a.required.items():
        if counters.get(k, 0) < n:
            short.append(f"{k} {counters.get(k, 0)} < {n}")
    return short


def more(a, stats, i):
    """Whether a deliverer that has sent `i` messages sends another: --per-worker of them, and
    more (up to 20 times as many) until every --require counter is met, so that a run meets
    every fault kind as often as it must."""
    if a.stop_at and time.time() >= a.stop_at:
        return False
    if i < a.per_worker:
        return True
    with stats.lock:
        short = unmet(a, stats.c)
    return bool(short) and i < a.per_worker * 20


def deliverer(a, host, w, stats, env):
    rnd = random.Random(f"{host}-{w}")
    i = 0
    while more(a, stats, i):
        mid = f"{host}-{w}-{i}"
        i += 1
        with stats.lock:
            stats.sent[(host, w)] = i
        msg = message(mid)
        attempt = 0
        first = time.monotonic()
        while True:
            attempt += 1
            cmd = a.prefix[host] + [a.bin, "-c", "-v", "--dedup", a.maildir[host]]
            began = time.monotonic()
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=env)
            if a.kill_rate and attempt == 1 and rnd.random() < a.kill_rate:
                try:
                    p.stdin.write(msg)
                    p.stdin.close()
                except BrokenPipeError:
                    pass
                time.sleep(rnd.random() * a.kill_delay)
                p.kill()  # by its own pid: the MTA's child dies with SIGKILL
                p.wait()
                out, err, rc = p.stdout.read(), p.stderr.read(), p.returncode
                p.stdout.close()
                p.stderr.close()
                if rc == -9:
                    stats.add("kills")
                    continue  # the MTA retries
            else:
                try:
                    out, err = p.communicate(msg, timeout=a.timeout)
                    rc = p.returncode
                except subprocess.TimeoutExpired:
                    # Like an MTA's time limit: killed, and retried later.
                    p.kill()
                    out, err = p.communicate()
                    stats.add("timeouts")
                    stats.error(f"{mid}: no answer in {a.timeout} s (killed, retried)")
                    rc = -9
                stats.took(time.monotonic() - began)
            if rc == 0:
                line = out.decode(errors="replace").strip().splitlines()
                if not line:
                    stats.error(f"{mid}: exit 0 but no path printed")
                    break
                with stats.lock:
                    stats.acked[key_of(line[-1])] = mid
                stats.add("delivered")
                break
            if rc == 75 or rc < 0:
                stats.add("retries")
                # An MTA keeps a deferred message queued for days, retrying less and less
                # often: here the pause grows from 50 ms to 5 s, and the harness stops after
                # --give-up-after seconds. A message given up was never acknowledged: it is
                # counted as held (still in a real MTA's queue), not as lost.
                if time.monotonic() - first > a.give_up_after:
                    with stats.lock:
                        stats.held.add(mid)
                    stats.error(f"{mid}: held by the MTA after {attempt} attempts in "
                                f"{a.give_up_after:.0f} s: {err.decode()[-300:]}")
                    break
                time.sleep(min(5.0, 0.05 * 1.2 ** min(attempt, 40)) * (0.5 + rnd.random()))
                continue
            stats.error(f"{mid}: exit {rc}: {err.decode()[-300:]}")
            break


def run_limited(a, stats, cmd, env):
    """Runs a reader's command with the --timeout limit; None (counted) when it had to be
    killed."""
    try:
        return subprocess.run(cmd, capture_output=True, env=env, timeout=a.timeout)
    except subprocess.TimeoutExpired:
        stats.add("timeouts")
        stats.error(f"{' '.join(cmd[-3:])}: no answer in {a.timeout} s (killed)")
        return None


def lister(a, host, stats, stop, env):
    while not stop.is_set():
        with stats.lock:
            before = dict(stats.acked)
        r = run_limited(a, stats, a.prefix[host] + [a.bin, "list", a.maildir[host]], env)
        stop.wait(a.list_pause)
        if r is None:
            stats.add("listings_failed")
            continue
        if r.returncode != 0:
            stats.add("listings_unsettled" if r.returncode == 75 else "listings_failed")
            continue
        keys = [l.split("\t")[0] for l in r.stdout.decode(errors="replace").splitlines() if l]
        stats.add("listings")
        if len(keys) != len(set(keys)):
            stats.add("listings_with_duplicates")
        missing = set(before) - set(keys)
        if missing:
            stats.add("listings_incomplete")
            stats.error(f"listing on {host} misses {len(missing)} acknowledged, e.g. {sorted(missing)[:2]}")


def reader(a, host, stats, stop, env):
    rnd = random.Random(host)
    while not stop.is_set():
        r = run_limited(a, stats, a.prefix[host] + [a.bin, "list", a.maildir[host]], env)
        if r is None:
            continue
        rows = [l.split("\t") for l in r.stdout.decode(errors="replace").splitlines() if l]
        for row in rnd.sample(rows, min(len(rows), 8)):
            key, sub, flags = row[0], row[1], row[2]
            change = "+S" if sub == "new" else ("-F" if "F" in flags else "+F")
            f = run_limited(a, stats, a.prefix[host] + [a.bin, "flag", a.maildir[host], key,
                                                       change], env)
            if f is None:
                continue
            if f.returncode == 0:
                stats.add("moved_to_cur" if sub == "new" else "flag_flips")
            elif f.returncode in (66, 74, 75):
                stats.add("flag_retryable")
            else:
                stats.error(f"flag {key} {change}: exit {f.returncode}: {f.stderr.decode()[-200:]}")
        stop.wait(max(0.05, a.list_pause))


def faulter(a, stats, stop):
    """Injects the server faults in turn: a reset burst, then each --fault, then again."""
    kinds = ([("reset", None)] if a.reset_on else []) + a.faults
    if not a.fault_every:
        kinds = []
    n = 0
    while kinds and not stop.wait(a.fault_every) and not (a.max_faults and n >= a.max_faults):
        kind, cmd = kinds[n % len(kinds)]
        n += 1
        started = time.monotonic()
        if kind == "reset":
            subprocess.run(a.reset_on, shell=True, check=False)
            time.sleep(a.fault_len)
            subprocess.run(a.reset_off, shell=True, check=False)
        else:
            r = subprocess.run(cmd, shell=True, check=False)
            if r.returncode != 0:
                stats.error(f"fault {kind}: the command failed (exit {r.returncode})")
            stats.add("fault_restart")
        stats.add(f"fault_{kind}")
        stats.add("fault_seconds", round(time.monotonic() - started, 1))


def check(a, stats):
    """Reads every file of new/ and cur/ from the server's side."""
    expected = {}
    for (host, w), sent in stats.sent.items():
        for i in range(sent):
            mid = f"{host}-{w}-{i}"
            expected[mid] = message(mid)
    found = {}
    where = {}  # mid -> the names it is stored under
    partial = 0
    unreadable = 0
    names = {}
    for sub in ("new", "cur"):
        d = os.path.join(a.final, sub)
        for name in (os.listdir(d) if os.path.isdir(d) else []):
            data = None
            for _ in range(3):
                try:
                    data = open(os.path.join(d, name), "rb").read()
                    break
                except OSError as e:
                    err = e
                    time.sleep(1)
            if data is None:
                # Listed but cannot be opened, three times over three seconds.
                unreadable += 1
                if len(stats.violations) < 10:
                    stats.violations.append(f"{sub}/{name}: listed, but {err}")
                continue
            mid = None
            if data.startswith(b"Message-ID: <"):
                mid = data[13:data.index(b"@")].decode(errors="replace") if b"@" in data else None
            if mid in expected and data == expected[mid]:
                found[mid] = found.get(mid, 0) + 1
                where.setdefault(mid, []).append(f"{sub}/{name}")
            else:
                partial += 1
                if len(stats.violations) < 10:
                    stats.violations.append(
                        f"{sub}/{name}: {len(data)} bytes that are no expected message: {data[:80]!r}")
            names[key_of(name)] = names.get(key_of(name), 0) + 1
    t = os.path.join(a.final, "tmp")
    tmp = os.listdir(t) if os.path.isdir(t) else []
    # Not stored and never acknowledged, because the MTA gave up: held, not lost.
    held = [m for m in expected if m not in found and m in stats.held]
    lost = [m for m in expected if m not in found and m not in stats.held]
    dup = sum(c - 1 for c in found.values() if c > 1)
    for mid, c in found.items():
        if c > 1 and len(stats.violations) < 10:
            stats.violations.append(f"{mid} stored {c} times: {', '.join(where[mid])}")
    acked_missing = [k for k in stats.acked if k not in names]
    # Left by SIGKILLed deliverers, like their tmp files: garbage, not mail (a stale lock is
    # broken by the next delivery after MDELIVER_TEST_LOCK_STALE, which leaves its empty claim,
    # mdeliver.lock.break.<mtime>).
    root = [n for n in os.listdir(a.final) if n.startswith("mdeliver.lock")] \
        if os.path.isdir(a.final) else []
    return {
        "expected": len(expected), "stored": sum(found.values()), "lost": len(lost),
        "held": len(held),
        "dup": dup, "partial": partial, "unreadable": unreadable, "acked_missing": len(acked_missing),
        "tmp_left": len(tmp), "lock_left": len(root),
        "lost_ids": lost[:5],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--host", action="append", required=True,
                    help="NAME|MAILDIR[|PREFIX] (prefix: a command to run mdeliver under)")
    ap.add_argument("--final", required=True, help="the maildir as the server stores it")
    ap.add_argument("--strategy", default="")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--per-worker", type=int, default=50)
    ap.add_argument("--kill-rate", type=float, default=0.0)
    ap.add_argument("--kill-delay", type=float, default=0.03)
    ap.add_argument("--give-up-after", type=float, default=1800.0,
                    help="seconds the MTA retries one deferred message before it gives up "
                    "(the message then counts as held: never acknowledged, still queued)")
    ap.add_argument("--fault-every", type=float, default=2.0)
    ap.add_argument("--fault-len", type=float, default=1.0)
    ap.add_argument("--reset-on", default="")
    ap.add_argument("--reset-off", default="")
    ap.add_argument("--fault", action="append", default=[],
                    help="NAME=COMMAND: a daemon fault (counted as fault_NAME and fault_restart)")
    ap.add_argument("--no-readers", action="store_true")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="seconds an mdeliver process may take before it is killed (and a "
                    "delivery retried), like an MTA's time limit")
    ap.add_argument("--stop-at", type=float, default=0,
                    help="a Unix time after which no new message is sent (a run that must end "
                    "by then reports what it delivered; stopped_early says so)")
    ap.add_argument("--list-pause", type=float, default=0.0,
                    help="seconds the list loop and the reader wait after each listing: a "
                    "listing reads the whole maildir, so back to back on a growing maildir they "
                    "can take the server from the deliverers (0: back to back)")
    ap.add_argument("--max-faults", type=int, default=0,
                    help="stop injecting server faults after this many (0: never)")
    ap.add_argument("--require", default="",
                    help="COUNTER=N,...: deliver past --per-worker until each counter (kills, "
                    "fault_reset, fault_NAME) reached N; a violation if one did not")
    a = ap.parse_args()
    a.faults = [tuple(f.split("=", 1)) for f in a.fault]
    a.required = {k: int(n) for k, n in (r.split("=") for r in filter(None, a.require.split(",")))}
    a.prefix, a.maildir, hosts = {}, {}, []
    for h in a.host:
        name, md, *prefix = h.split("|", 2)
        hosts.append(name)
        a.maildir[name] = md
        a.prefix[name] = prefix[0].split() if prefix and prefix[0] else []
    a.deliver_hosts = hosts[:2] if len(hosts) > 2 else hosts
    env = dict(os.environ)
    env.pop("MDELIVER_DISABLE", None)
    if a.strategy:
        env["MDELIVER_TEST_STRATEGY"] = a.strategy
    # A SIGKILLed holder of the maildir lock or of a duplicate-index lease: go on after
    # seconds, not the production five minutes.
    env["MDELIVER_TEST_LOCK_STALE"] = "3"
    env["MDELIVER_TEST_DEDUP_LEASE"] = "3"
    stats = Stats()
    stop = threading.Event()
    side = []
    if not a.no_readers and len(hosts) > 2:
        side.append(threading.Thread(target=reader, args=(a, hosts[2], stats, stop, env)))
        side.append(threading.Thread(target=lister, args=(a, hosts[1], stats, stop, env)))
    side.append(threading.Thread(target=faulter, args=(a, stats, stop)))
    workers = [threading.Thread(target=deliverer, args=(a, h, w, stats, env))
               for h in a.deliver_hosts for w in range(a.workers)]
    started = time.monotonic()
    for t in side + workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - started
    stop.set()
    for t in side:
        t.join()
    time.sleep(1.5)  # FUSE attribute and entry caches (GlusterFS: 1 s)
    r = {"label": a.label, "strategy": a.strategy or "auto", "seconds": round(elapsed, 2),
         "msg_per_s": round(stats.c.get("delivered", 0) / elapsed, 1)}
    r.update(stats.c)
    if a.stop_at and time.time() >= a.stop_at:
        r["stopped_early"] = 1
    r.update(stats.timing())
    r.update(check(a, stats))
    r["errors_seen"] = stats.violations + stats.errors
    r["fault_kinds"] = (["reset"] if a.reset_on else []) + [k for k, _ in a.faults]
    short = unmet(a, r)
    if short:
        r["errors_seen"].insert(0, "faults not exercised: " + ", ".join(short))
    print(json.dumps(r))
    bad = (r["lost"] or r["dup"] or r["partial"] or r["unreadable"] or r["acked_missing"]
           or r.get("listings_incomplete", 0) or r.get("listings_with_duplicates", 0) or short)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
