#!/usr/bin/env python3
"""Kamailio CPU per call, by where it goes, from the perf profiles of kamailio/cps-sweep.sh.

    python3 kamailio/perf-breakdown.py OUT MODE... [--calls N] [--freq F]

Reads OUT/perf-MODE.data (perf record -F F -g of all of one Kamailio's processes while it
carried N calls) and OUT/psx-MODE.txt (`kamcmd core.psx`: which process is which), and prints
Markdown tables of milliseconds of CPU per call, one column per mode:
  1. by process role (SIP receivers, http_async_client workers, timers, ...);
  2. by shared object (the core, each module, libcurl, jansson, libc, the kernel);
  3. kernel time by system call (the frame under do_syscall_64), or interrupt/scheduling;
  4. the user-space functions whose time differs most between the first two modes.
A sample is 1/F s of CPU (perf's cpu-clock event); user-space call chains are not used (Debian's
binaries have no frame pointers), kernel chains are.
"""
import collections
import os
import re
import subprocess
import sys


def roles(path):
    r = {}
    if not os.path.exists(path):
        return r
    for line in open(path):
        # kamcmd core.psx prints "IDX: n / PID: p / DSC: text" blocks, or "p\ttext"
        m = re.search(r"PID:\s*(\d+)", line)
        if m:
            pid = m.group(1)
            continue
        m = re.search(r"DSC:\s*(.*)", line)
        if m and pid:
            d = m.group(1).strip()
            if "http async" in d.lower() or "http_async" in d.lower():
                role = "http_async_client workers"
            elif "receiver" in d.lower():
                role = "SIP receivers"
            elif "timer" in d.lower():
                role = "timers"
            elif "main" in d.lower() or "attendant" in d.lower():
                role = "main"
            else:
                role = "other (ctl, ...)"
            r[pid] = role
            pid = None
    return r


def samples(data):
    """Yield (pid, frames) per sample; frames leaf first as (sym, dso)."""
    out = subprocess.run(["perf", "script", "-i", data, "-F", "pid,ip,sym,dso"],
                         capture_output=True, text=True, check=False).stdout
    pid, frames = None, []
    for line in out.split("\n"):
        if not line.strip():
            if pid is not None:
                yield pid, frames
            pid, frames = None, []
            continue
        if pid is None and re.match(r"^\s*\d+\s*$", line):
            pid = line.split()[0]
            continue
        m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if m:
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            frames.append((sym, os.path.basename(m.group(2))))
    if pid is not None:
        yield pid, frames


def kernel_class(frames):
    names = [sym for sym, _ in frames]
    for sym in names:
        m = re.match(r"__x64_sys_(\w+)", sym)
        if m:
            proto = ""
            for x in names:
                if x.startswith(("tcp_", "inet_stream")):
                    proto = " (TCP)"; break
                if x.startswith(("udp_", "__udp", "__skb_recv_udp")):
                    proto = " (UDP)"; break
                if x.startswith("unix_"):
                    proto = " (unix socket)"; break
            return "syscall " + m.group(1) + proto
    for sym, _ in frames:
        if "softirq" in sym or sym.startswith(("asm_", "irqentry", "sysvec")):
            return "interrupts, softirq, return to user"
    return "other kernel"


def main():
    args = sys.argv[1:]
    calls, freq = None, 2999
    if "--calls" in args:
        i = args.index("--calls"); calls = int(args[i + 1]); del args[i:i + 2]
    if "--freq" in args:
        i = args.index("--freq"); freq = int(args[i + 1]); del args[i:i + 2]
    out, modes = args[0], args[1:]
    by_role, by_dso, by_kernel, by_sym, total = (collections.defaultdict(collections.Counter) for _ in range(5))
    for m in modes:
        tag = re.sub(r"[^A-Za-z0-9_.-]", "_", m)
        rl = roles(os.path.join(out, "psx-%s.txt" % tag))
        for pid, frames in samples(os.path.join(out, "perf-%s.data" % tag)):
            if not frames:
                continue
            total[m]["all"] += 1
            by_role[m][rl.get(pid, "unknown")] += 1
            sym, dso = frames[0]
            kernel = dso.startswith("[kernel") or dso == "kallsyms"
            by_dso[m]["kernel" if kernel else dso] += 1
            if kernel:
                by_kernel[m][kernel_class(frames)] += 1
            else:
                by_sym[m]["%s %s" % (dso, sym if sym != "[unknown]" else "?")] += 1
    n = calls or 1
    scale = 1000.0 / freq / n

    def table(title, d, top=None, diff=False):
        keys = set()
        for m in modes:
            keys |= set(d[m])
        if diff and len(modes) >= 2:
            a, b = modes[1], modes[0]
            keys = sorted(keys, key=lambda k: -abs(d[a][k] - d[b][k]))
        else:
            keys = sorted(keys, key=lambda k: -max(d[m][k] for m in modes))
        if top:
            keys = keys[:top]
        print("| %s | %s |%s" % (title, " | ".join(modes), " %s − %s |" % (modes[1], modes[0]) if len(modes) >= 2 else ""))
        print("|---|%s%s" % ("---:|" * len(modes), "---:|" if len(modes) >= 2 else ""))
        for k in keys:
            vals = [d[m][k] * scale for m in modes]
            extra = " %+.4f |" % (vals[1] - vals[0]) if len(modes) >= 2 else ""
            print("| %s | %s |%s" % (k, " | ".join("%.4f" % v for v in vals), extra))
        print()

    print("Milliseconds of Kamailio CPU per call (perf samples / %d Hz / %d calls)." % (freq, n))
    print()
    table("total", total)
    table("process", by_role)
    table("shared object", by_dso)
    table("kernel time by system call", by_kernel, top=14)
    table("user-space function (largest differences)", by_sym, top=30, diff=True)


if __name__ == "__main__":
    main()
