#!/usr/bin/env python3
"""Workload runner of scripts/bench.sh (python3 standard library only).

bench.sh starts the servers and hands over a JSON file naming them (port or
URL, server PID, data dir); this script runs the same workloads against each,
interleaved (run 1: A B C, run 2: B C A, ...), measures the server side from
/proc, and writes results.json and table.md into the results folder.

Per measured operation:
  * wall time of the client command(s) (time.monotonic);
  * server CPU: utime+stime+cutime+cstime summed over the server's process
    tree (/proc/PID/stat), after minus before; children that exit during the
    operation are counted through their parent's cutime/cstime once reaped;
  * server peak RSS: VmHWM is reset (echo 5 > /proc/PID/clear_refs) for every
    process of the tree before the operation and read after it, with a 0.2 s
    sampler for processes that come and go (sshd's per-connection children);
    "peak RSS" is the largest single process, "tree" is the largest sum of
    VmRSS over the tree seen by the sampler.
"""

import json
import math
import os
import random
import resource
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
MB = 1_000_000
MIB = 1 << 20
GIB = 1 << 30


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def env_str(name, default):
    v = os.environ.get(name, "")
    return v if v.strip() else default


CFG = {
    "runs": env_int("BENCH_RUNS", 3),
    "warmup": env_int("BENCH_WARMUP", 1),
    "workloads": env_str("BENCH_WORKLOADS", "big,small,conc,randio,list,rss,link").split(","),
    "big_mb": env_int("BENCH_BIG_MB", 1024),
    "huge_mb": env_int("BENCH_HUGE_MB", 4096),
    "rss_runs": env_int("BENCH_RSS_RUNS", 1),
    "small_count": env_int("BENCH_SMALL_COUNT", 2000),
    "small_min_kb": env_int("BENCH_SMALL_MIN_KB", 4),
    "small_max_kb": env_int("BENCH_SMALL_MAX_KB", 64),
    "conc_mb": env_int("BENCH_CONC_MB", 64),
    "conc_clients": [int(x) for x in env_str("BENCH_CONC_CLIENTS", "1 8 32").split()],
    "randio_mb": env_int("BENCH_RANDIO_MB", 256),
    "randio_secs": float(env_str("BENCH_RANDIO_SECS", "3")),
    "randio_bs": env_int("BENCH_RANDIO_BS", 4096),
    "list_count": env_int("BENCH_LIST_COUNT", 10000),
    "cipher": env_str("BENCH_CIPHER", "aes128-gcm@openssh.com"),
    "kex": env_str("BENCH_KEX", "curve25519-sha256"),
    "tls13_cipher": env_str("BENCH_TLS13_CIPHER", "TLS_AES_128_GCM_SHA256"),
    "rclone_copy": env_str("BENCH_RCLONE_COPY", "0") == "1",
    "pprof": env_str("BENCH_PPROF", "0") == "1",
    "timeout": env_int("BENCH_OP_TIMEOUT", 900),
    "list_timeout": env_int("BENCH_LIST_TIMEOUT", 120),
    "list_setup_timeout": env_int("BENCH_LIST_SETUP_TIMEOUT", 300),
}


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ /proc accounting

def _stat(pid):
    """(ppid, cpu ticks incl. reaped children) of pid, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
    return int(fields[1]), sum(int(x) for x in fields[11:15])


def proc_tree(root):
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(d)
            if st:
                children.setdefault(st[0], []).append(int(d))
    out, i = [root], 0
    while i < len(out):
        out.extend(children.get(out[i], ()))
        i += 1
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        st = _stat(p)
        if st:
            total += st[1]
    return total / CLK_TCK


def mem_kib(pid):
    hwm = rss = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return hwm, rss


def cpu_busy_ticks():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])
    return total - idle, total


def reset_hwm(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class Monitor:
    """Server CPU seconds and peak memory of one process tree during a block."""

    def __init__(self, root, interval=0.2):
        self.root, self.interval = root, interval
        self.cpu = 0.0
        self.hwm_kib = 0
        self.tree_kib = 0
        self._stop = threading.Event()

    def _sample(self):
        pids = proc_tree(self.root)
        total = 0
        for p in pids:
            hwm, rss = mem_kib(p)
            self.hwm_kib = max(self.hwm_kib, hwm)
            total += rss
        self.tree_kib = max(self.tree_kib, total)
        return pids

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        pids = proc_tree(self.root)
        for p in pids:
            reset_hwm(p)
        # What the largest process already held when the operation started.
        self.start_kib = max((mem_kib(p)[1] for p in pids), default=0)
        self._cpu0 = cpu_seconds(pids)
        self._busy0 = cpu_busy_ticks()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        pids = self._sample()
        self.cpu = cpu_seconds(pids) - self._cpu0
        b1 = cpu_busy_ticks()
        busy, total = b1[0] - self._busy0[0], b1[1] - self._busy0[1]
        # Machine CPU busy (all processes, all cores) in core-seconds; minus
        # the server's own share it says how much else ran: clients and noise.
        self.machine_busy = busy / CLK_TCK
        self.machine_util = busy / total if total else 0.0
        return False


# ------------------------------------------------------------ targets and clients

class Target:
    def __init__(self, d):
        self.name = d["name"]
        self.label = d.get("label", self.name)
        self.proto = d.get("proto", "none")
        self.port = d.get("port")
        self.user = d.get("user", "bench")
        self.url = d.get("url", "")
        self.pid = d.get("pid")
        self.data_dir = d.get("data_dir")
        self.subject = bool(d.get("subject"))
        self.unavailable = d.get("unavailable", "")
        self.pprof = d.get("pprof", "")
        self.tls = self.url.startswith("https:")
        self.bin = d.get("bin", "")  # securefsd: its binary and data dir, for `share create`
        self.sfd_data_dir = d.get("sfd_data_dir", "")


class Bench:
    def __init__(self, spec):
        self.spec = spec
        self.tmp = spec["tmp"]
        self.work = os.path.join(self.tmp, "work")
        self.out = spec["results"]
        self.key = spec["key"]
        self.password = spec["password"]
        self.randio = spec["randio"]
        self.rclone_conf = spec["rclone_conf"]
        self.targets = [Target(s) for s in spec["servers"]]
        self.rows = []  # row dicts in table order
        self.samples = {}  # (row id, target name) -> [sample]
        self.warming = False  # in a warm-up run (runs): measure records nothing
        self.notes = []
        self.list_skip = {}  # target name -> why its listing rows are not measured
        self.link_groups = {}  # "link-https" -> [WebDAV GET target, share link target] (workload 7)
        self._obscured = None

    # -------------------------------------------------------- groups
    def group(self, name):
        """Targets of one protocol group, peers first, securefsd last."""
        if name.startswith("link-"):
            return self.link_groups.get(name, [])
        want = {
            "sftp": lambda t: t.name in ("openssh", "rclone-sftp", "securefsd-sftp"),
            "https": lambda t: t.name in ("nginx-https", "rclone-webdav-https", "securefsd-https"),
            "http": lambda t: t.name in ("nginx-http", "rclone-webdav-http", "securefsd-http"),
        }[name]
        ts = [t for t in self.targets if want(t)]
        return sorted(ts, key=lambda t: t.subject)

    # -------------------------------------------------------- clients
    def ssh_opts(self, t):
        return ["-F", "/dev/null", "-P", str(t.port), "-i", self.key, "-c", CFG["cipher"],
                "-o", f"KexAlgorithms={CFG['kex']}", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]

    def sftp_cmd(self, t, batch_file):
        return ["sftp", "-q", "-b", batch_file] + self.ssh_opts(t) + [f"{t.user}@127.0.0.1"]

    def batch(self, lines):
        fd, path = mkstemp_in(self.work, "batch")
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def sftp(self, t, lines, capture=False, timeout=None):
        """Run an sftp batch; returns (ok, stdout or '', stderr tail)."""
        b = self.batch(lines)
        timeout = timeout or CFG["timeout"]
        try:
            p = subprocess.run(self.sftp_cmd(t, b), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False, "", f"timeout after {timeout} s"
        finally:
            os.unlink(b)
        out = p.stdout.decode(errors="replace") if capture else ""
        return p.returncode == 0, out, p.stderr.decode(errors="replace")[-500:]

    def curl_base(self, t, auth=True):
        c = ["curl", "-sS", "--fail", "--http1.1", "-w", "%{http_code} %{size_download}"]
        if auth:
            c += ["-u", f"bench:{self.password}"]
        if t.tls:
            c += ["-k", "--tls13-ciphers", CFG["tls13_cipher"]]
        return c

    def curl(self, t, args, path, timeout=None, auth=True):
        """Run curl; returns (ok, http code, bytes downloaded, stderr tail)."""
        timeout = timeout or CFG["timeout"]
        try:
            p = subprocess.run(self.curl_base(t, auth) + args + [t.url + path], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False, 0, 0, f"timeout after {timeout} s"
        code, size = (p.stdout.decode().split() + ["0", "0"])[:2]
        return p.returncode == 0, int(code), int(float(size)), p.stderr.decode(errors="replace")[-500:]

    def rclone_env(self, t):
        if self._obscured is None:
            self._obscured = subprocess.run(["rclone", "obscure", self.password], capture_output=True,
                                            check=True, text=True).stdout.strip()
        env = dict(os.environ)
        env.update({"RCLONE_WEBDAV_URL": t.url, "RCLONE_WEBDAV_VENDOR": "other",
                    "RCLONE_WEBDAV_USER": "bench", "RCLONE_WEBDAV_PASS": self._obscured})
        return env

    def rclone(self, t, args):
        cmd = ["rclone", "--config", self.rclone_conf, "-q", "--no-check-certificate"] + args
        try:
            p = subprocess.run(cmd, env=self.rclone_env(t), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=CFG["timeout"])
        except subprocess.TimeoutExpired:
            return False, "timeout"
        return p.returncode == 0, p.stderr.decode(errors="replace")[-500:]

    def run_randio(self, t, args):
        cmd = [self.randio, "-addr", f"127.0.0.1:{t.port}", "-user", t.user, "-key", self.key,
               "-cipher", CFG["cipher"], "-kex", CFG["kex"]] + args
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=CFG["timeout"])
        except subprocess.TimeoutExpired:
            return None, "timeout"
        try:
            return json.loads(p.stdout), p.stderr.decode(errors="replace")[-500:]
        except ValueError:
            return None, p.stderr.decode(errors="replace")[-500:]

    def remove_remote(self, t, name, is_dir=False):
        """Best-effort removal between runs (not measured)."""
        if t.proto == "sftp":
            lines = [f"-rm {name}/*", f"-rmdir {name}"] if is_dir else [f"-rm {name}"]
            self.sftp(t, lines)
        elif t.proto == "webdav":
            self.curl(t, ["-X", "DELETE", "-o", "/dev/null"], name + ("/" if is_dir else ""))

    # -------------------------------------------------------- measurement
    def add_row(self, rid, title, kind, group):
        """kind: MBps (higher better), s (lower better) or ops (higher better)."""
        self.rows.append({"id": rid, "title": title, "kind": kind, "group": group})

    def measure(self, rid, t, fn):
        """Run fn() (returns dict: bytes, ops, errors, note, seconds?) under a Monitor."""
        if t.unavailable:
            return None
        if self.warming:
            t0 = time.monotonic()
            r = fn()
            os.sync()
            log(f"  {rid:<22} {t.name:<20} warm-up {time.monotonic() - t0:.3f} s (not counted)"
                + (f"  errors {r.get('errors')}" if r.get("errors") else ""))
            return None
        prev = self.samples.get((rid, t.name), [])
        if any("timeout after" in s["note"] for s in prev):
            log(f"  {rid:<22} {t.name:<20} skipped: timed out before")
            return None
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        with Monitor(t.pid) as m:
            t0 = time.monotonic()
            r = fn()
            wall = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        # Cores busy with anything but this server and our clients (other
        # users of the machine) on average during the operation.
        noise = max(0.0, m.machine_busy - m.cpu - client) / wall if wall > 0 else 0.0
        os.sync()  # start the next operation with no dirty pages of this one
        s = {
            "seconds": r.get("seconds", wall), "wall": wall, "bytes": r.get("bytes", 0),
            "ops": r.get("ops", 0), "errors": r.get("errors", 0), "note": r.get("note", ""),
            "cpu_s": round(m.cpu, 3), "peak_rss_kib": m.hwm_kib, "tree_rss_kib": m.tree_kib,
            "start_rss_kib": m.start_kib,
            "client_cpu_s": round(client, 3), "machine_busy_s": round(m.machine_busy, 2),
            "other_load_cores": round(noise, 2),
        }
        self.samples.setdefault((rid, t.name), []).append(s)
        val = self.value(rid, s)
        shown = "ERR " + s["note"][:200] if s["errors"] and val is None else f"{val:.3f}"
        log(f"  {rid:<22} {t.name:<20} {shown}  cpu {m.cpu:.2f}s  rss {m.hwm_kib // 1024} MiB  other load {noise:.2f}"
            + (f"  errors {s['errors']}" if s["errors"] else ""))
        return s

    def value(self, rid, s):
        kind = next(r["kind"] for r in self.rows if r["id"] == rid)
        if s["errors"] and not s["ops"] and not s["bytes"]:
            return None
        if s["seconds"] <= 0:
            return None
        if kind == "MBps":
            return s["bytes"] / s["seconds"] / MB
        if kind == "ops":
            return s["ops"] / s["seconds"]
        return s["seconds"]

    def runs(self, name):
        """The run numbers of a workload that warms up: BENCH_WARMUP
        unmeasured runs (negative numbers; self.warming is set while they
        run), then BENCH_RUNS measured ones. Why: the first operations of a
        bench meet a machine that nothing has written to yet (every peer
        ran faster in run 1 than in any later run) and a server that has not
        served yet; either would decide a median of five that the servers'
        steady state would not (docs/PERFORMANCE.md, "Warm-up runs")."""
        try:
            for run in range(-CFG["warmup"], CFG["runs"]):
                self.warming = run < 0
                if self.warming:
                    log(f"workload {name}: warm-up run {run + CFG['warmup'] + 1}/{CFG['warmup']} (not counted)")
                else:
                    log(f"workload {name}: run {run + 1}/{CFG['runs']}")
                yield run
        finally:
            self.warming = False  # also when the loop ends early

    @staticmethod
    def rotate(ts, run):
        if not ts:
            return ts
        k = run % len(ts)
        return ts[k:] + ts[:k]

    # -------------------------------------------------------- pprof
    def profiled(self, t, tag, seconds, fn):
        """Run fn() once (not measured) while fetching a CPU profile of securefsd."""
        if not (CFG["pprof"] and t.pprof):
            return
        d = os.path.join(self.out, "pprof")
        os.makedirs(d, exist_ok=True)
        base = f"http://{t.pprof}/debug/pprof"
        subprocess.run(["curl", "-sS", "-o", f"{d}/{tag}-allocs-before.pb.gz", f"{base}/allocs"], check=False)
        secs = max(1, math.ceil(seconds))
        prof = subprocess.Popen(["curl", "-sS", "-o", f"{d}/{tag}-cpu.pb.gz", f"{base}/profile?seconds={secs}"])
        # The live heap half way through, for peak-memory questions (inuse_space).
        heap = threading.Timer(seconds / 2, lambda: subprocess.run(
            ["curl", "-sS", "-o", f"{d}/{tag}-heap-mid.pb.gz", f"{base}/heap"], check=False))
        heap.start()
        fn()
        heap.join()
        prof.wait()
        subprocess.run(["curl", "-sS", "-o", f"{d}/{tag}-allocs-after.pb.gz", f"{base}/allocs"], check=False)
        # A readable summary next to the profiles: CPU top, live heap half way,
        # bytes allocated during the operation.
        with open(f"{d}/SUMMARY.txt", "a") as f:
            for title, args in (
                    ("CPU", ["-top", "-nodecount=25", f"{d}/{tag}-cpu.pb.gz"]),
                    ("live heap half way (inuse_space)",
                     ["-sample_index=inuse_space", "-top", "-nodecount=10", f"{d}/{tag}-heap-mid.pb.gz"]),
                    ("allocated during the operation (alloc_space)",
                     ["-sample_index=alloc_space", "-top", "-nodecount=10",
                      "-diff_base", f"{d}/{tag}-allocs-before.pb.gz", f"{d}/{tag}-allocs-after.pb.gz"])):
                p = subprocess.run(["go", "tool", "pprof"] + args, capture_output=True, text=True, check=False)
                f.write(f"==== {tag}: {title}\n{p.stdout or p.stderr}\n")
        log(f"  pprof {tag}: {d}/{tag}-cpu.pb.gz (+ heap-mid, allocs before/after)")

    def median_seconds(self, rid, t):
        ss = [s["seconds"] for s in self.samples.get((rid, t.name), []) if not s["errors"]]
        return statistics.median(ss) if ss else 5

    # -------------------------------------------------------- inputs
    def make_random_file(self, path, mb):
        if os.path.exists(path) and os.path.getsize(path) == mb * MIB:
            return path
        with open(path, "wb") as f:
            for _ in range(mb):
                f.write(os.urandom(MIB))
        return path

    # -------------------------------------------------------- workload 1
    def wl_big(self):
        mb = CFG["big_mb"]
        src = self.make_random_file(os.path.join(self.work, "big.bin"), mb)
        size = mb * MIB
        groups = [("sftp", "sftp (OpenSSH client)"), ("https", "WebDAV HTTPS (curl)"),
                  ("http", "WebDAV plain HTTP (curl)")]
        for g, how in groups:
            self.add_row(f"big-{g}-up", f"1 file {mb} MiB upload, {how}", "MBps", g)
            self.add_row(f"big-{g}-down", f"1 file {mb} MiB download, {how}", "MBps", g)
        # Each server uploads, downloads and removes its file before the next
        # one starts, so every upload finds the same memory state: the page
        # cache the previous file just gave back. On this project's VMs the
        # host backs guest pages lazily: a second GiB of page cache costs
        # 1-2 s more system time than reusing a freed one, charged to
        # whichever server uploads while the other's file is still cached.
        # With uploads batched A B, the second of every pair ran at half
        # speed (docs/PERFORMANCE.md, Caveats).
        for run in range(CFG["runs"]):
            log(f"workload big: run {run + 1}/{CFG['runs']}")
            for g, _ in groups:
                for t in self.rotate(self.group(g), run):
                    self.measure(f"big-{g}-up", t, lambda t=t: self.big_up(t, src, size))
                    self.measure(f"big-{g}-down", t, lambda t=t: self.big_down(t, size))
                    self.remove_remote(t, self.big_name(t))
        for g, _ in groups:
            for t in self.group(g):
                if t.pprof and not t.unavailable:
                    self.profiled(t, f"big-{g}-up", self.median_seconds(f"big-{g}-up", t),
                                  lambda t=t: self.big_up(t, src, size))
                    self.profiled(t, f"big-{g}-down", self.median_seconds(f"big-{g}-down", t),
                                  lambda t=t: self.big_down(t, size))
                    self.remove_remote(t, self.big_name(t))

    def big_name(self, t):
        return f"big-{t.name}.bin"

    def big_up(self, t, src, size):
        if t.proto == "sftp":
            ok, _, err = self.sftp(t, [f"put {src} {self.big_name(t)}"])
            return {"bytes": size if ok else 0, "errors": 0 if ok else 1, "note": err}
        ok, code, _, err = self.curl(t, ["-T", src, "-o", "/dev/null"], self.big_name(t))
        return {"bytes": size if ok else 0, "errors": 0 if ok else 1, "note": f"HTTP {code} {err}"}

    def big_down(self, t, size):
        if t.proto == "sftp":
            ok, _, err = self.sftp(t, [f"get {self.big_name(t)} /dev/null"])
            return {"bytes": size if ok else 0, "errors": 0 if ok else 1, "note": err}
        ok, code, got, err = self.curl(t, ["-o", "/dev/null"], self.big_name(t))
        ok = ok and got == size
        return {"bytes": got if ok else 0, "errors": 0 if ok else 1, "note": f"HTTP {code}, {got} bytes {err}"}

    # -------------------------------------------------------- workload 2
    def wl_small(self):
        n, lo, hi = CFG["small_count"], CFG["small_min_kb"], CFG["small_max_kb"]
        src = os.path.join(self.work, "small")
        if not os.path.isdir(src):
            os.makedirs(src)
            rng = random.Random(7)
            for i in range(n):
                with open(os.path.join(src, f"s{i:05d}.bin"), "wb") as f:
                    f.write(os.urandom(rng.randint(lo * 1024, hi * 1024)))
        total = sum(os.path.getsize(os.path.join(src, x)) for x in os.listdir(src))
        self.add_row("small-sftp-up", f"{n} files {lo}-{hi} KiB upload, sftp put -r", "MBps", "sftp")
        self.add_row("small-sftp-down", f"{n} files {lo}-{hi} KiB download, sftp get -r", "MBps", "sftp")
        self.add_row("small-curl-up", f"{n} files {lo}-{hi} KiB upload, curl PUT, 1 connection, HTTPS", "MBps", "https")
        self.add_row("small-curl-down", f"{n} files {lo}-{hi} KiB download, curl GET, 1 connection, HTTPS", "MBps", "https")
        kinds = [("sftp", "sftp"), ("curl", "https")]
        if CFG["rclone_copy"]:
            self.add_row("small-rclone-up", f"{n} files {lo}-{hi} KiB upload, rclone copy WebDAV HTTPS", "MBps", "https")
            self.add_row("small-rclone-down", f"{n} files {lo}-{hi} KiB download, rclone copy WebDAV HTTPS", "MBps", "https")
            kinds.append(("rclone", "https"))
        for run in self.runs("small"):
            for how, g in kinds:
                # One server at a time, as in wl_big.
                for t in self.rotate(self.group(g), run):
                    if how == "curl" and not t.unavailable:
                        self.curl(t, ["-X", "MKCOL", "-o", "/dev/null"], self.small_name(t) + "/")
                    self.measure(f"small-{how}-up", t, lambda t=t, how=how: self.small_up(t, how, src, n, total))
                    self.measure(f"small-{how}-down", t, lambda t=t, how=how: self.small_down(t, how, n, total))
                    self.remove_remote(t, self.small_name(t), is_dir=True)
        for how, g in kinds:
            for t in self.group(g):
                if t.pprof and not t.unavailable:
                    if how == "curl":
                        self.curl(t, ["-X", "MKCOL", "-o", "/dev/null"], self.small_name(t) + "/")
                    self.profiled(t, f"small-{how}-up", self.median_seconds(f"small-{how}-up", t),
                                  lambda t=t, how=how: self.small_up(t, how, src, n, total))
                    self.profiled(t, f"small-{how}-down", self.median_seconds(f"small-{how}-down", t),
                                  lambda t=t, how=how: self.small_down(t, how, n, total))
                    self.remove_remote(t, self.small_name(t), is_dir=True)

    def small_name(self, t):
        return f"small-{t.name}"

    def small_up(self, t, how, src, n, total):
        if how == "sftp":
            ok, _, err = self.sftp(t, [f"put -r {src} {self.small_name(t)}"])
        elif how == "curl":
            names = sorted(os.listdir(src))
            ok, err = self.curl_many(t, [(f"{self.small_name(t)}/{x}", "upload-file", os.path.join(src, x))
                                         for x in names])
        else:
            ok, err = self.rclone(t, ["copy", src, f":webdav:{self.small_name(t)}"])
        return {"bytes": total if ok else 0, "ops": n if ok else 0, "errors": 0 if ok else 1, "note": err}

    def small_down(self, t, how, n, total):
        dst = os.path.join(self.work, f"dl-{t.name}")
        shutil.rmtree(dst, ignore_errors=True)
        if how == "sftp":
            ok, _, err = self.sftp(t, [f"get -r {self.small_name(t)} {dst}"])
        elif how == "curl":
            os.makedirs(dst)
            names = sorted(os.listdir(os.path.join(self.work, "small")))
            ok, err = self.curl_many(t, [(f"{self.small_name(t)}/{x}", "output", os.path.join(dst, x))
                                         for x in names])
        else:
            ok, err = self.rclone(t, ["copy", f":webdav:{self.small_name(t)}", dst])
        got = dir_bytes(dst)
        if ok and got != (n, total):
            ok, err = False, f"downloaded {got[0]} files / {got[1]} bytes, want {n} / {total}; {err}"
        shutil.rmtree(dst, ignore_errors=True)
        return {"bytes": total if ok else 0, "ops": n if ok else 0, "errors": 0 if ok else 1, "note": err}

    def curl_many(self, t, items):
        """One curl process, one kept-alive connection, one request per item
        (path, "upload-file" or "output", local file); ok if all were 2xx."""
        fd, cfg = mkstemp_in(self.work, "curl")
        with os.fdopen(fd, "w") as f:
            for path, opt, local in items:
                f.write(f'url = "{t.url}{path}"\n{opt} = "{local}"\n')
                if opt == "upload-file":
                    f.write('output = "/dev/null"\n')
        cmd = [x for x in self.curl_base(t) if x not in ("--fail",)]
        cmd[cmd.index("-w") + 1] = "%{http_code}\\n"
        try:
            p = subprocess.run(cmd + ["-K", cfg], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=CFG["timeout"])
        except subprocess.TimeoutExpired:
            return False, "timeout"
        finally:
            os.unlink(cfg)
        codes = p.stdout.decode().split()
        bad = [c for c in codes if not c.startswith("2")]
        if p.returncode != 0 or bad or len(codes) != len(items):
            return False, (f"curl exit {p.returncode}, {len(codes)} responses, non-2xx: "
                           f"{sorted(set(bad))[:5]} {p.stderr.decode(errors='replace')[-300:]}")
        return True, ""

    # -------------------------------------------------------- workload 3
    def wl_conc(self):
        mb = CFG["conc_mb"]
        src = self.make_random_file(os.path.join(self.work, f"conc-{mb}.bin"), mb)
        for k in CFG["conc_clients"]:
            self.add_row(f"conc-{k}", f"{k} sftp client{'s' if k > 1 else ''} at once, each {mb} MiB up + down "
                                      "(aggregate)", "MBps", "sftp")
        for run in range(CFG["runs"]):
            log(f"workload conc: run {run + 1}/{CFG['runs']}")
            for k in CFG["conc_clients"]:
                for t in self.rotate(self.group("sftp"), run):
                    self.measure(f"conc-{k}", t, lambda t=t, k=k: self.conc(t, src, mb * MIB, k))
                    self.sftp(t, [f"-rm conc-{t.name}-*"])
        for t in self.group("sftp"):
            if t.pprof and not t.unavailable and CFG["conc_clients"]:
                k = max(CFG["conc_clients"])
                self.profiled(t, f"conc-{k}", self.median_seconds(f"conc-{k}", t),
                              lambda t=t: self.conc(t, src, mb * MIB, k))
                self.sftp(t, [f"-rm conc-{t.name}-*"])

    def conc(self, t, src, size, k):
        procs, batches = [], []
        for i in range(k):
            name = f"conc-{t.name}-{i}.bin"
            b = self.batch([f"put {src} {name}", f"get {name} /dev/null"])
            batches.append(b)
            procs.append(subprocess.Popen(self.sftp_cmd(t, b), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        errors, note = 0, ""
        for p in procs:
            try:
                _, err = p.communicate(timeout=CFG["timeout"])
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
            if p.returncode != 0:
                errors += 1
                note = note or err.decode(errors="replace")[-300:]
        for b in batches:
            os.unlink(b)
        return {"bytes": (k - errors) * 2 * size, "errors": errors, "note": note}

    # -------------------------------------------------------- workload 4
    def wl_randio(self):
        mb, secs, bs = CFG["randio_mb"], CFG["randio_secs"], CFG["randio_bs"]
        src = self.make_random_file(os.path.join(self.work, f"randio-{mb}.bin"), mb)
        self.add_row("randio-read", f"random {bs // 1024} KiB reads in a {mb} MiB file, SFTP, 1 in flight", "ops", "sftp")
        self.add_row("randio-write", f"random {bs // 1024} KiB writes in a {mb} MiB file, SFTP, 1 in flight", "ops", "sftp")
        ts = [t for t in self.group("sftp") if not t.unavailable]
        for t in ts:
            ok, _, err = self.sftp(t, [f"put {src} randio-{t.name}.bin"])
            if not ok:
                self.notes.append(f"randio: upload of the test file to {t.name} failed: {err}")
        # All reads before any write: a server that cannot write at random
        # offsets (rclone without a VFS cache) truncates the file on the attempt.
        for mode in ("read", "write"):
            for run in self.runs(f"randio {mode}"):
                for t in self.rotate(self.group("sftp"), run):
                    self.measure(f"randio-{mode}", t,
                                 lambda t=t, mode=mode: self.randio_op(t, mode, secs, bs, run))
        for t in ts:
            if t.pprof:
                for mode in ("read", "write"):
                    self.profiled(t, f"randio-{mode}", secs, lambda t=t, mode=mode: self.randio_op(t, mode, secs, bs, 99))
            self.remove_remote(t, f"randio-{t.name}.bin")

    def randio_op(self, t, mode, secs, bs, run):
        r, err = self.run_randio(t, ["-mode", mode, "-path", f"randio-{t.name}.bin", "-bs", str(bs),
                                     "-secs", str(secs), "-seed", str(run + 1)])
        if r is None:
            return {"errors": 1, "note": err}
        return {"ops": r["ops"], "bytes": r["bytes"], "seconds": r["seconds"], "errors": r["errors"],
                "note": r.get("first_error", "")}

    # -------------------------------------------------------- workload 5
    def wl_list(self):
        n = CFG["list_count"]
        self.add_row("list-sftp", f"sftp ls -l of a {n}-entry directory (incl. connect)", "s", "sftp")
        self.add_row("connect-sftp", "sftp connect + pwd (baseline for the row above)", "s", "sftp")
        self.add_row("list-propfind", f"PROPFIND Depth 1 of a {n}-entry directory, HTTPS (curl)", "s", "https")
        done = set()
        for t in self.group("sftp") + self.group("https"):
            if t.unavailable or t.data_dir or t.pid in done:
                continue  # peers got theirs on disk in prepare_list
            done.add(t.pid)
            via = next((s for s in self.group("sftp") if s.pid == t.pid), None)
            if via is None:
                self.notes.append(f"list: no SFTP port to fill {t.name}'s directory")
                continue
            log(f"list: creating {n} files on {t.name} through SFTP")
            r, err = self.run_randio(via, ["-mode", "mkfiles", "-path", "list", "-n", str(n), "-size", "64",
                                           "-max-secs", str(CFG["list_setup_timeout"])])
            if r is None or r["errors"] or r["ops"] < n:
                why = (f"made only {r['ops']} of {n} files in {r['seconds']:.0f} s through SFTP"
                       if r and not r["errors"] else f"creating the files failed: {r or err}")
                self.notes.append(f"list: {t.name}: {why}; its listing rows are skipped")
                for s in self.targets:
                    if s.pid == t.pid:
                        self.list_skip[s.name] = why
            else:
                log(f"list: {n} files on {t.name} in {r['seconds']:.0f} s")
        for run in range(CFG["runs"]):
            log(f"workload list: run {run + 1}/{CFG['runs']}")
            for t in self.rotate(self.group("sftp"), run):
                if t.name not in self.list_skip:
                    self.measure("list-sftp", t, lambda t=t: self.ls(t, n))
                self.measure("connect-sftp", t, lambda t=t: self.connect(t))
            for t in self.rotate(self.group("https"), run):
                if t.name not in self.list_skip:
                    self.measure("list-propfind", t, lambda t=t: self.propfind(t, n))
        for t in self.group("sftp") + self.group("https"):
            if t.pprof and not t.unavailable and t.name not in self.list_skip:
                rid = "list-sftp" if t.proto == "sftp" else "list-propfind"
                fn = (lambda t=t: self.ls(t, n)) if t.proto == "sftp" else (lambda t=t: self.propfind(t, n))
                self.profiled(t, rid, self.median_seconds(rid, t), fn)

    def ls(self, t, n):
        ok, out, err = self.sftp(t, ["ls -l list"], capture=True, timeout=CFG["list_timeout"])
        got = sum(1 for line in out.splitlines() if re.search(r"\bf\d{5}$", line))
        if ok and got != n:
            ok, err = False, f"listed {got} entries, want {n}; {err}"
        return {"ops": 1 if ok else 0, "errors": 0 if ok else 1, "note": err}

    def connect(self, t):
        ok, _, err = self.sftp(t, ["pwd"])
        return {"ops": 1 if ok else 0, "errors": 0 if ok else 1, "note": err}

    def propfind(self, t, n):
        body = os.path.join(self.work, f"propfind-{t.name}.xml")
        ok, code, _, err = self.curl(t, ["-X", "PROPFIND", "-H", "Depth: 1", "-o", body], "list/",
                                     timeout=CFG["list_timeout"])
        got = 0
        if os.path.exists(body):
            with open(body, "rb") as f:
                got = len(re.findall(rb"<(?:[A-Za-z0-9_]+:)?response[\s>]", f.read()))
            os.unlink(body)
        if ok and got != n + 1:
            ok, err = False, f"HTTP {code}: {got} responses, want {n + 1}; {err}"
        return {"ops": 1 if ok else 0, "errors": 0 if ok else 1, "note": f"HTTP {code} {err}"}

    def prepare_list(self):
        """Fill the peers' listing directories on disk before any client has
        listed their root: rclone's VFS caches directory listings (5 min), so
        files made behind its back later would not show up."""
        n = CFG["list_count"]
        for d in sorted({t.data_dir for t in self.targets if t.data_dir}):
            d = os.path.join(d, "list")
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
                    f.write(b"x" * 64)

    # -------------------------------------------------------- workload 6
    def wl_rss(self):
        mb, big = CFG["huge_mb"], CFG["big_mb"]
        if mb <= 0:
            return
        src = os.path.join(self.work, "huge.bin")
        if not (os.path.exists(src) and os.path.getsize(src) == mb * MIB):
            chunk = self.make_random_file(os.path.join(self.work, "big.bin"), big)
            with open(src, "wb") as out, open(chunk, "rb") as f:
                left = mb * MIB
                while left > 0:
                    f.seek(0)
                    buf = f.read(min(left, 64 * MIB))
                    while buf and left > 0:
                        out.write(buf[:left])
                        left -= len(buf[:left])
                        buf = f.read(min(left, 64 * MIB)) if left > 0 else b""
        ts = [t for t in self.group("sftp") if t.name in ("openssh", "securefsd-sftp")]
        # Both sizes back to back in this workload, so the two peaks are taken
        # in the same state of the server (Go returns freed heap to the OS
        # only minutes later; an earlier peak would otherwise linger).
        self.add_row("rss-big-up", f"1 file {big} MiB upload, sftp (memory check)", "MBps", "sftp")
        self.add_row("huge-sftp-up", f"1 file {mb} MiB upload, sftp (memory check)", "MBps", "sftp")
        small = os.path.join(self.work, "big.bin")
        for run in range(CFG["rss_runs"]):
            log(f"workload rss: run {run + 1}/{CFG['rss_runs']}")
            for t in self.rotate(ts, run):
                self.measure("rss-big-up", t, lambda t=t: self.big_up(t, small, big * MIB))
                self.remove_remote(t, self.big_name(t))
                self.measure("huge-sftp-up", t, lambda t=t: self.big_up(t, src, mb * MIB))
                self.remove_remote(t, self.big_name(t))
        os.unlink(src)

    # -------------------------------------------------------- workload 7
    def wl_link(self):
        """A share-link download (issue 17) next to a WebDAV GET of the same
        file from the same securefsd, interleaved: the link's cost over the
        plain download (token lookup, owner's record, the download count)."""
        mb = CFG["big_mb"]
        src = self.make_random_file(os.path.join(self.work, "big.bin"), mb)
        size = mb * MIB
        for g in ("https", "http"):
            t = next((x for x in self.targets if x.name == f"securefsd-{g}"), None)
            if t is None or t.unavailable:
                continue
            rid = f"link-{g}-down"
            self.add_row(rid, f"1 file {mb} MiB download, share link vs WebDAV GET, {g.upper()} (curl)", "MBps", f"link-{g}")
            ok, code, _, err = self.curl(t, ["-T", src, "-o", "/dev/null"], "link.bin")
            if not ok:
                self.notes.append(f"link workload ({g}): upload failed: HTTP {code} {err}")
                continue
            p = subprocess.run([t.bin, "--data-dir", t.sfd_data_dir, "share", "create", "bench", "/link.bin"],
                               capture_output=True, text=True, timeout=60)
            m = re.search(r"/s/[A-Za-z0-9_-]+", p.stdout)
            if p.returncode != 0 or not m:
                self.notes.append(f"link workload ({g}): share create failed: {p.stderr.strip()[-300:]}")
                continue
            base = {"proto": "webdav", "url": t.url, "pid": t.pid, "pprof": t.pprof}
            dav = Target(dict(base, name=f"securefsd-{g}-webdav", label=f"{t.label} WebDAV GET"))
            link = Target(dict(base, name=f"securefsd-{g}-link", label=f"{t.label} share link", subject=True))
            self.link_groups[f"link-{g}"] = [dav, link]
            path = m.group(0).lstrip("/") + "/download"
            for run in range(CFG["runs"]):
                log(f"workload link ({g}): run {run + 1}/{CFG['runs']}")
                for x in self.rotate([dav, link], run):
                    if x is dav:
                        self.measure(rid, x, lambda: self.link_down(dav, "link.bin", size, True))
                    else:
                        self.measure(rid, x, lambda: self.link_down(link, path, size, False))
            self.remove_remote(t, "link.bin")

    def link_down(self, t, path, size, auth):
        ok, code, n, err = self.curl(t, ["-o", "/dev/null"], path, auth=auth)
        ok = ok and n == size
        return {"bytes": size if ok else 0, "errors": 0 if ok else 1, "note": f"HTTP {code}, {n} bytes {err}"}

    # -------------------------------------------------------- report
    def aggregate(self):
        rows = []
        for r in self.rows:
            cells = []
            for t in self.group(r["group"]):
                if r["id"] in ("huge-sftp-up", "rss-big-up") and t.name not in ("openssh", "securefsd-sftp"):
                    continue
                cell = {"server": t.name, "label": t.label, "securefsd": t.subject}
                if t.unavailable:
                    cell["unavailable"] = t.unavailable
                    cells.append(cell)
                    continue
                ss = self.samples.get((r["id"], t.name), [])
                if not ss:
                    why = self.list_skip.get(t.name, "") if r["id"].startswith("list-") else ""
                    cell["unavailable"] = f"not measured: {why}" if why else "not measured"
                    cells.append(cell)
                    continue
                vals = [v for v in (self.value(r["id"], s) for s in ss) if v is not None]
                cell["runs"] = ss
                cell["errors"] = sum(s["errors"] for s in ss)
                cell["median"] = statistics.median(vals) if vals else None
                cell["min"] = min(vals) if vals else None
                cell["max"] = max(vals) if vals else None
                gib = [s["cpu_s"] / (s["bytes"] / GIB) for s in ss if s["bytes"] > 0]
                cell["cpu_s_per_gib"] = statistics.median(gib) if gib and r["kind"] == "MBps" else None
                cell["cpu_s"] = statistics.median([s["cpu_s"] for s in ss]) if ss else None
                cell["peak_rss_mib"] = max((s["peak_rss_kib"] for s in ss), default=0) / 1024
                top = max(ss, key=lambda s: s["peak_rss_kib"])
                cell["peak_held_at_start"] = top.get("start_rss_kib", 0) >= 0.9 * top["peak_rss_kib"] > 0
                cell["tree_rss_mib"] = max((s["tree_rss_kib"] for s in ss), default=0) / 1024
                if not vals and ss:
                    cell["error_note"] = next((s["note"] for s in ss if s["note"]), "")[:300]
                cells.append(cell)
            peers = [c for c in cells if not c["securefsd"] and c.get("median") is not None]
            sub = next((c for c in cells if c["securefsd"] and c.get("median") is not None), None)
            ratio = best = None
            if peers and sub:
                pick = max if r["kind"] in ("MBps", "ops") else min
                bestc = pick(peers, key=lambda c: c["median"])
                best = bestc["server"]
                ratio = sub["median"] / bestc["median"] if bestc["median"] else None
            rows.append(dict(r, cells=cells, ratio=ratio, best_peer=best))
        return rows

    def targets_check(self, rows):
        """The issue's targets, evaluated on this run."""
        by = {r["id"]: r for r in rows}

        def cell(rid, server):
            r = by.get(rid)
            return next((c for c in r["cells"] if c["server"] == server), None) if r else None

        def med(rid, server):
            c = cell(rid, server)
            return c.get("median") if c else None

        out = []

        def check(what, ok, detail):
            out.append({"target": what, "ok": ok, "detail": detail})

        for d in ("up", "down"):
            s, o = med(f"big-sftp-{d}", "securefsd-sftp"), med(f"big-sftp-{d}", "openssh")
            if s and o:
                check(f"1 file SFTP {d}load >= 0.9x OpenSSH", s / o >= 0.9, f"{s / o:.2f}x ({s:.0f} vs {o:.0f} MB/s)")
            cs, co = cell(f"big-sftp-{d}", "securefsd-sftp"), cell(f"big-sftp-{d}", "openssh")
            if cs and co and cs.get("cpu_s_per_gib") and co.get("cpu_s_per_gib"):
                q = cs["cpu_s_per_gib"] / co["cpu_s_per_gib"]
                check(f"1 file SFTP {d}load server CPU/GiB <= 1.5x OpenSSH", q <= 1.5,
                      f"{q:.2f}x ({cs['cpu_s_per_gib']:.2f} vs {co['cpu_s_per_gib']:.2f} s/GiB)")
            for g in ("https", "http"):
                s, o = med(f"big-{g}-{d}", f"securefsd-{g}"), med(f"big-{g}-{d}", f"nginx-{g}")
                if s and o:
                    check(f"1 file WebDAV {g.upper()} {d}load >= 1.0x nginx", s / o >= 1.0,
                          f"{s / o:.2f}x ({s:.0f} vs {o:.0f} MB/s)")
        ks = CFG["conc_clients"]
        if ks:
            k = max(ks)
            c = cell(f"conc-{k}", "securefsd-sftp")
            if c and "runs" in c:
                check(f"{k} clients: no errors", c["errors"] == 0, f"{c['errors']} failed clients")
                check(f"{k} clients: peak RSS < 256 MiB", c["peak_rss_mib"] < 256, f"{c['peak_rss_mib']:.0f} MiB")
                one = med("conc-1", "securefsd-sftp") if 1 in ks else None
                if one is None:
                    up, down = med("big-sftp-up", "securefsd-sftp"), med("big-sftp-down", "securefsd-sftp")
                    one = 2 / (1 / up + 1 / down) if up and down else None
                if one and c.get("median"):
                    check(f"{k} clients: aggregate >= single client", c["median"] >= one,
                          f"{c['median']:.0f} vs {one:.0f} MB/s")
        h, b = cell("huge-sftp-up", "securefsd-sftp"), cell("rss-big-up", "securefsd-sftp")
        if h and b and h.get("peak_rss_mib") and b.get("peak_rss_mib"):
            q = h["peak_rss_mib"] / b["peak_rss_mib"]
            check(f"peak RSS {CFG['huge_mb']} MiB vs {CFG['big_mb']} MiB upload within 10%", q <= 1.10,
                  f"{h['peak_rss_mib']:.0f} vs {b['peak_rss_mib']:.0f} MiB ({q:.2f}x)")
        for g in ("https", "http"):
            s, o = med(f"link-{g}-down", f"securefsd-{g}-link"), med(f"link-{g}-down", f"securefsd-{g}-webdav")
            if s and o:
                check(f"share link download {g.upper()} within noise of WebDAV GET (>= 0.9x)", s / o >= 0.9,
                      f"{s / o:.2f}x ({s:.0f} vs {o:.0f} MB/s)")
            # Server CPU per GiB: the same comparison, less swayed by other
            # load on the machine than MB/s.
            cs, co = cell(f"link-{g}-down", f"securefsd-{g}-link"), cell(f"link-{g}-down", f"securefsd-{g}-webdav")
            if cs and co and cs.get("cpu_s_per_gib") and co.get("cpu_s_per_gib"):
                q = cs["cpu_s_per_gib"] / co["cpu_s_per_gib"]
                check(f"share link download {g.upper()} server CPU/GiB <= 1.1x WebDAV GET", q <= 1.1,
                      f"{q:.2f}x ({cs['cpu_s_per_gib']:.2f} vs {co['cpu_s_per_gib']:.2f} s/GiB)")
        for rid, peer, what in (("list-propfind", "nginx-https", "PROPFIND within 2x nginx"),
                                ("list-sftp", "openssh", "sftp ls -l within 2x OpenSSH")):
            s = med(rid, "securefsd-https" if rid == "list-propfind" else "securefsd-sftp")
            o = med(rid, peer)
            if s and o:
                check(f"{CFG['list_count']} entries: {what}", s / o <= 2.0, f"{s / o:.2f}x ({s:.3f} vs {o:.3f} s)")
        return out

    def markdown(self, rows, checks, machine):
        unit = {"MBps": "MB/s ↑", "s": "s ↓", "ops": "ops/s ↑"}
        lines = ["| Workload | Server | Median | Min–max | Server CPU | Peak RSS MiB | Errors | securefsd / best peer |",
                 "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            first = True
            for c in r["cells"]:
                wl = f"{r['title']} ({unit[r['kind']]})" if first else ""
                first = False
                if c.get("unavailable"):
                    lines.append(f"| {wl} | {c['label']} | {c['unavailable']} | | | | | |")
                    continue
                n = len(c["runs"])
                if c["median"] is None:
                    note = (c.get("error_note") or "error").replace("|", "/").replace("\n", " ")[:120]
                    lines.append(f"| {wl} | {c['label']} | ERROR: {note} | | | | {c['errors']} in {n} runs | |")
                    continue
                cpu = (f"{c['cpu_s_per_gib']:.2f} s/GiB" if c.get("cpu_s_per_gib") is not None
                       else f"{c['cpu_s']:.2f} s")
                rss = f"{c['peak_rss_mib']:.0f}" + ("\\*" if c.get("peak_held_at_start") else "")
                if c["tree_rss_mib"] > 1.3 * c["peak_rss_mib"]:
                    rss += f" (tree {c['tree_rss_mib']:.0f})"
                ratio = ""
                if c["securefsd"] and r["ratio"] is not None:
                    ratio = f"**{r['ratio']:.2f}x** (vs {r['best_peer']})"
                lines.append(f"| {wl} | {c['label']} | {fmt(c['median'], r['kind'])} | "
                             f"{fmt(c['min'], r['kind'])}–{fmt(c['max'], r['kind'])} | {cpu} | {rss} | "
                             f"{c['errors']} in {n} runs | {ratio} |")
        md = ["## securefsd vs peers", "",
              f"{machine['date']} · {machine['nproc']} × {machine['cpu']} · Linux {machine['kernel']} · "
              f"{machine['go']} · runs per cell: {CFG['runs']} (median, min–max; small files and random I/O "
              f"after {CFG['warmup']} unmeasured warm-up run{'s' if CFG['warmup'] != 1 else ''}) · "
              f"SSH {CFG['cipher']}, {CFG['kex']} · TLS 1.3 {CFG['tls13_cipher']}, HTTP/1.1", ""]
        md += lines
        # Only operations of 1 s or more: /proc/stat counts in 10 ms ticks.
        loads = sorted(x["other_load_cores"] for ss in self.samples.values() for x in ss
                       if "other_load_cores" in x and x["wall"] >= 1)
        if loads:
            md += ["", f"Machine noise: cores busy with other processes (not the server, not our clients) during "
                       f"the measured operations: median {statistics.median(loads):.2f}, "
                       f"90th percentile {loads[int(0.9 * (len(loads) - 1))]:.2f}, max {loads[-1]:.2f} "
                       f"(of {machine['nproc']})."]
        md += ["", "MB/s = 10^6 bytes/s of file data. Server CPU = user+system seconds of the server process "
               "tree per GiB moved (or per operation batch). Peak RSS = largest VmHWM of one server process; "
               "\"tree\" = largest sum of RSS over the process tree (sshd forks per connection); "
               "\\* = the process already held at least 90% of that when the operation started (memory kept "
               "from an earlier operation, not taken by this one). "
               "securefsd / best peer: ratio of medians (> 1 is better for ↑ rows, worse for ↓ rows)."]
        if checks:
            md += ["", "### Targets (issues 7 and 17)", "", "| Target | Met | Measured |", "|---|---|---|"]
            md += [f"| {c['target']} | {'yes' if c['ok'] else '**no**'} | {c['detail']} |" for c in checks]
        if self.notes:
            md += ["", "Notes:"] + [f"- {n}" for n in self.notes]
        return "\n".join(md) + "\n"

    def run(self):
        os.makedirs(self.work, exist_ok=True)
        os.makedirs(self.out, exist_ok=True)
        machine = machine_info()
        log(f"machine: {machine['nproc']} x {machine['cpu']}, Linux {machine['kernel']}, {machine['go']}")
        for t in self.targets:
            log(f"target {t.name}: {t.label}" + (f" ({t.unavailable})" if t.unavailable else ""))
        blog = self.spec.get("securefsd_build_log", "")
        if any(t.unavailable for t in self.targets) and blog and os.path.getsize(blog if os.path.exists(blog) else os.devnull):
            with open(blog, errors="replace") as f:
                first = " ".join(f.read(400).split())
            self.notes.append(f"`go build ./cmd/securefsd`: {first}")
        started = time.time()
        if "list" in CFG["workloads"]:
            self.prepare_list()
        for wl in CFG["workloads"]:
            wl = wl.strip()
            if not wl:
                continue
            fn = getattr(self, f"wl_{wl}", None)
            if fn is None:
                sys.exit(f"bench: unknown workload {wl!r} (big, small, conc, randio, list, rss, link)")
            t0 = time.time()
            fn()
            log(f"workload {wl} took {time.time() - t0:.0f} s")
        rows = self.aggregate()
        checks = self.targets_check(rows)
        md = self.markdown(rows, checks, machine)
        result = {"machine": machine, "config": CFG, "elapsed_s": round(time.time() - started, 1),
                  "servers": self.spec["servers"], "rows": rows, "targets": checks, "notes": self.notes}
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(result, f, indent=1)
        with open(os.path.join(self.out, "table.md"), "w") as f:
            f.write(md)
        print(md)
        log(f"done in {time.time() - started:.0f} s: {self.out}/results.json, {self.out}/table.md")


def fmt(v, kind):
    if v is None:
        return "–"
    if kind == "s":
        return f"{v:.3f}"
    if kind == "ops":
        return f"{v:.0f}"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def dir_bytes(d):
    n = total = 0
    for root, _, files in os.walk(d):
        for x in files:
            n += 1
            total += os.path.getsize(os.path.join(root, x))
    return n, total


def mkstemp_in(d, prefix):
    return tempfile.mkstemp(prefix=prefix, dir=d)


def machine_info():
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(), "cpu": cpu, "mem": mem, "kernel": os.uname().release,
        "go": sh(["go", "version"]).replace("go version ", ""),
        "openssh": sh(["ssh", "-V"]) or subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip(),
        "rclone": sh(["rclone", "version"]).splitlines()[0] if sh(["rclone", "version"]) else "",
        "curl": sh(["curl", "--version"]).splitlines()[0] if sh(["curl", "--version"]) else "",
    }


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: run.py SERVERS.json (started by scripts/bench.sh)")
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    Bench(spec).run()


if __name__ == "__main__":
    main()
