#!/usr/bin/env python3
"""mdeliver against the C delivery agents of Debian, side by side in one run (see peers.sh).

Called by bench/peers.sh, which installs the peers, builds mdeliver and mounts the tmpfs.
Arguments: TMPFS_DIR DISK_DIR MDELIVER. Settings come from the environment (peers.sh documents
them). Prints markdown tables: msg/s per workload with the ratio of mdeliver to the best peer,
/bin/true spawned the same way as the floor; the CPU time (user + system) of the -M runs, which
the machine's load moves far less than their msg/s; system calls per delivery; peak RSS.

Every delivered file is checked byte for byte (the multiset of SHA-256 digests of new/ and cur/
must equal the corpus's), and files left in tmp/ are counted; a run that fails either check is
marked in the table and makes the script exit 1.
"""

import base64
import collections
import hashlib
import os
import random
import re
import subprocess
import sys
import time

N = int(os.environ.get("BENCH_N", "2000"))
MIN_KIB = int(os.environ.get("BENCH_MIN_KIB", "1"))
MAX_KIB = int(os.environ.get("BENCH_MAX_KIB", "200"))
P = int(os.environ.get("BENCH_P", "4"))
MBOX_N = int(os.environ.get("BENCH_MBOX_N", "20000"))
MBOX_MAX_KIB = int(os.environ.get("BENCH_MBOX_MAX_KIB", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
ONLY = os.environ.get("BENCH_ONLY", "")  # ";"-separated parts of workload names; empty: all


def wanted(workload):
    """Whether BENCH_ONLY selects `workload` (names contain commas, so the list is split on ";")."""
    return not ONLY or any(o.strip() and o.strip() in workload for o in ONLY.split(";"))

tmpfs, disk, mdeliver = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
# Another mdeliver binary (e.g. an older build) measured alongside, as "baseline".
BASELINE = os.environ.get("BENCH_BASELINE", "")
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def which(name):
    for d in ENV["PATH"].split(":"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    sys.exit(f"{name} is not installed (peers.sh installs it)")


# name -> argv builder for a maildir path. The peers run at their defaults: safecat and mblaze
# fsync the file, deliverquota and procmail as packaged; mdeliver flushes the file and new/.
TOOLS = {
    "true": lambda md: [which("true")],
    "safecat": lambda md: [which("safecat"), f"{md}/tmp", f"{md}/new"],
    "mblaze": lambda md: ["/usr/bin/mdeliver", md],
    "deliverquota": lambda md: [which("deliverquota"), md],
    "procmail": lambda md: [which("procmail"), "-m", f"DEFAULT={md}/", "/dev/null"],
    "mdeliver": lambda md: [mdeliver, md],
}
if BASELINE:
    TOOLS["baseline"] = lambda md: [os.path.abspath(BASELINE), md]
PEERS = ["safecat", "mblaze", "deliverquota", "procmail"]
MBOX_TOOLS = {
    "mblaze": lambda md: ["/usr/bin/mdeliver", "-M", md],
    "mdeliver": lambda md: [mdeliver, "-M", md],
}
if BASELINE:
    MBOX_TOOLS["baseline"] = lambda md: [os.path.abspath(BASELINE), "-M", md]


def message(rnd, i, size):
    """A message of exactly `size` bytes: a header and base64 lines (no body line starts with
    "From " or ">From ", so an mbox of them needs no quoting)."""
    head = (
        f"From: Sender {i} <s{i}@example.org>\nTo: you@example.org\n"
        f"Subject: bench message {i}\nMessage-ID: <{i}.{rnd.random()}@example.org>\n"
        "Date: Sat, 28 Nov 2026 18:03:09 +0000\n\n"
    ).encode()
    need = max(size - len(head), 1)
    raw = base64.encodebytes(rnd.randbytes(need * 3 // 4 + 3))  # 76-char lines, "\n"-ended
    body = raw[:need]
    body = body[:-1] + b"\n"
    return head + body


def make_corpus(dirpath, n, min_kib, max_kib, seed):
    os.makedirs(dirpath, exist_ok=True)
    rnd = random.Random(seed)
    paths, digests = [], collections.Counter()
    for i in range(n):
        data = message(rnd, i, rnd.randint(min_kib * 1024, max_kib * 1024))
        p = os.path.join(dirpath, f"{i:06d}.eml")
        with open(p, "wb") as f:
            f.write(data)
        paths.append(p)
        digests[hashlib.sha256(data).hexdigest()] += 1
    return paths, digests


def make_mbox(path, n, max_kib, seed):
    """The mbox, and the digests of its messages as mdeliver stores them and as mblaze does
    (mblaze keeps the separating empty line as the last line of each message)."""
    rnd = random.Random(seed)
    digests, mblaze = collections.Counter(), collections.Counter()
    with open(path, "wb") as f:
        for i in range(n):
            data = message(rnd, i, rnd.randint(1024, max_kib * 1024))
            f.write(b"From bench@example.org Sat Nov 28 18:03:09 2026\n")
            f.write(data)
            f.write(b"\n")
            digests[hashlib.sha256(data).hexdigest()] += 1
            mblaze[hashlib.sha256(data + b"\n").hexdigest()] += 1
    return digests, mblaze


def fresh_maildir(parent, name):
    md = os.path.join(parent, name)
    subprocess.run(["rm", "-rf", md], check=True)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(md, sub))
    return md


def spawn(argv, stdin_path):
    return os.posix_spawn(
        argv[0],
        argv,
        ENV,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, stdin_path, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        ],
    )


def run_many(argv, inputs, parallel, cpu=None):
    """Runs argv once per input, `parallel` at a time: (seconds, failures). With `cpu` (a
    one-element list), adds the children's CPU time (user + system, from wait4) to cpu[0]."""
    failures, running = 0, 0

    def reap():
        nonlocal failures, running
        _, status, usage = os.wait4(-1, 0)
        running -= 1
        failures += status != 0
        if cpu is not None:
            cpu[0] += usage.ru_utime + usage.ru_stime

    t0 = time.perf_counter()
    for p in inputs:
        if running == parallel:
            reap()
        spawn(argv, p)
        running += 1
    while running:
        reap()
    return time.perf_counter() - t0, failures


def check(md, expected):
    """'ok', or what is wrong: stored files that differ from the corpus, leftovers in tmp/."""
    got = collections.Counter()
    for sub in ("new", "cur"):
        d = os.path.join(md, sub)
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                got[hashlib.sha256(f.read()).hexdigest()] += 1
    problems = []
    if got != expected:
        missing = sum((expected - got).values())
        extra = sum((got - expected).values())
        problems.append(f"{missing} missing/{extra} wrong")
    left = len(os.listdir(os.path.join(md, "tmp")))
    if left:
        problems.append(f"{left} left in tmp/")
    return "; ".join(problems) or "ok"


bad = False


def fmt_rate(rate, verdict):
    global bad
    if verdict != "ok":
        bad = True
        return f"{rate:.0f} ({verdict})"
    return f"{rate:.0f}"


def oneshot_table(paths, digests):
    rows = []
    for where, parent in (("tmpfs", tmpfs), (fs_label(disk), disk)):
        for label, par in (("sequential", 1), (f"{P} at once", P)):
            wl = f"{where}, {label}"
            if not wanted(wl):
                continue
            print(f"running: {wl}", file=sys.stderr, flush=True)
            rates = {}
            for _ in range(ROUNDS):
                # Interleave the tools round by round so machine noise hits all of them.
                for tool in TOOLS:
                    md = fresh_maildir(parent, f"md-{tool}")
                    os.sync()
                    secs, fails = run_many(TOOLS[tool](md), paths, par)
                    verdict = "ok" if tool == "true" else check(md, digests)
                    if fails:
                        verdict = f"{fails} failed" + ("" if verdict == "ok" else f"; {verdict}")
                    rate = len(paths) / secs
                    if tool not in rates or rate > rates[tool][0]:
                        rates[tool] = (rate, verdict)
                    subprocess.run(["rm", "-rf", md], check=True)
            best = max(rates[t][0] for t in PEERS)
            rows.append(
                [wl]
                + [fmt_rate(*rates[t]) for t in TOOLS]
                + [f"{rates['mdeliver'][0] / best:.2f}"]
            )
    return rows


# CPU seconds (user + system) of each -M run, the least over the rounds: unlike msg/s, hardly
# moved by the load of a shared machine. {workload: {tool: seconds}}
MBOX_CPU = {}


def mbox_table(mbox, mbox_digests):
    rows = []
    for where, parent in (("tmpfs", tmpfs), (fs_label(disk), disk)):
        wl = f"-M {MBOX_N} msgs, {where}"
        if not wanted(wl):
            continue
        print(f"running: {wl}", file=sys.stderr, flush=True)
        rates = {}
        cpus = MBOX_CPU.setdefault(wl, {})
        for _ in range(ROUNDS):
            for tool, argv in MBOX_TOOLS.items():
                md = fresh_maildir(parent, f"mbox-{tool}")
                os.sync()
                cpu = [0.0]
                secs, fails = run_many(argv(md), [mbox], 1, cpu)
                cpus[tool] = min(cpus.get(tool, cpu[0]), cpu[0])
                verdict = check(md, mbox_digests[tool == "mblaze"])
                if fails:
                    verdict = "failed" + ("" if verdict == "ok" else f"; {verdict}")
                rate = MBOX_N / secs
                if tool not in rates or rate > rates[tool][0]:
                    rates[tool] = (rate, verdict)
                subprocess.run(["rm", "-rf", md], check=True)
        row = {t: "—" for t in TOOLS}
        for t in MBOX_TOOLS:
            row[t] = fmt_rate(*rates[t])
        rows.append(
            [wl]
            + [row[t] for t in TOOLS]
            + [f"{rates['mdeliver'][0] / rates['mblaze'][0]:.2f}"]
        )
    return rows


SYSCALL = re.compile(r"^\d+ +([a-z_0-9]+)\(")


def syscalls(tool, msg):
    """(all system calls from execve to exit, those before the first read of stdin) of one
    delivery of `msg` into a fresh maildir on the tmpfs, counted by strace -f."""
    md = fresh_maildir(tmpfs, f"strace-{tool}")
    out = os.path.join(tmpfs, f"strace-{tool}.txt")
    with open(msg, "rb") as stdin:
        subprocess.run(
            ["strace", "-f", "-o", out] + TOOLS[tool](md), stdin=stdin,
            stdout=subprocess.DEVNULL, env=ENV, check=True,
        )
    total, before, seen_read = 0, None, False
    with open(out) as f:
        for line in f:
            m = SYSCALL.match(line)
            if not m or "resumed>" in line:
                continue
            total += 1
            is_stdin_read = m.group(1) in ("read", "pread64", "readv", "splice", "sendfile", "copy_file_range") and (
                re.match(r"^\d+ +[a-z_0-9]+\(0,", line) is not None
            )
            if is_stdin_read and before is None:
                before = total - 1
    subprocess.run(["rm", "-rf", md, out], check=True)
    return total, before


def fs_label(path):
    """The filesystem's name as people say it (stat calls ext4 "ext2/ext3"), and whether an
    ext4 has no journal (mdeliver then flushes each file by itself)."""
    t = fs_type(path)
    if t != "ext2/ext3":
        return t
    dev = os.stat(path).st_dev
    try:
        target = os.readlink(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
        journaled = os.path.exists(f"/proc/fs/jbd2/{os.path.basename(target)}-8")
    except OSError:
        journaled = False
    return "ext4" if journaled else "ext4 without a journal"


def fs_type(path):
    return subprocess.run(
        ["stat", "-f", "-c", "%T", path], capture_output=True, text=True, check=True
    ).stdout.strip()


def table(header, rows):
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()


def main():
    corpus = os.path.join(tmpfs, "corpus")
    t0 = time.perf_counter()
    paths, digests = make_corpus(corpus, N, MIN_KIB, MAX_KIB, 14)
    mbox = os.path.join(tmpfs, "corpus.mbox")
    mbox_digests = make_mbox(mbox, MBOX_N, MBOX_MAX_KIB, 15) if MBOX_N else None
    size = sum(os.path.getsize(p) for p in paths)
    print(
        f"corpus: {N} messages of {MIN_KIB}-{MAX_KIB} KiB ({size / 2**20:.0f} MiB), "
        f"{MBOX_N}-message mbox of 1-{MBOX_MAX_KIB} KiB messages; generated in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    print(f"tmpfs: {tmpfs}; disk: {disk} ({fs_type(disk)}); mdeliver: {mdeliver}")
    print(f"P={P}, best of {ROUNDS} round(s); msg/s (higher is better)\n")
    rows = oneshot_table(paths, digests)
    if MBOX_N:
        rows += mbox_table(mbox, mbox_digests)
    header = ["workload", "/bin/true"] + [t for t in TOOLS if t != "true"]
    table(header + ["mdeliver ÷ best peer"], rows)
    if MBOX_CPU:
        crows = [
            [wl] + [f"{c[t]:.2f}" for t in MBOX_TOOLS] + [f"{c['mblaze'] / max(c['mdeliver'], 1e-3):.2f}"]
            for wl, c in MBOX_CPU.items()
        ]
        table(
            ["-M, CPU seconds (user + system)"] + list(MBOX_TOOLS) + ["mblaze ÷ mdeliver"],
            crows,
        )

    # A small message for the system call counts.
    small = os.path.join(tmpfs, "small.eml")
    with open(small, "wb") as f:
        f.write(message(random.Random(1), 0, 2048))
    srows = []
    for tool in TOOLS:
        total, before = syscalls(tool, small)
        srows.append([tool, str(total), "—" if before is None else str(before)])
    table(["tool (one 2 KiB delivery)", "system calls, execve to exit", "before the first read of stdin"], srows)

    # Peak RSS of one delivery of the largest corpus message, by GNU time (a child of this
    # large Python process would report this process's RSS from before its exec).
    largest = max(paths, key=os.path.getsize)
    rrows = []
    for tool in TOOLS:
        md = fresh_maildir(tmpfs, f"rss-{tool}")
        with open(largest, "rb") as stdin:
            r = subprocess.run(
                ["/usr/bin/time", "-f", "%M"] + TOOLS[tool](md), stdin=stdin,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
            )
        subprocess.run(["rm", "-rf", md], check=True)
        rrows.append([tool, f"{int(r.stderr.split()[-1]) / 1024:.2f}"])
    table([f"tool ({os.path.getsize(largest) // 1024} KiB message)", "peak RSS, MiB"], rrows)
    if bad:
        print("FAILED: some run lost, changed or left behind files (see the table)")
        sys.exit(1)


main()
