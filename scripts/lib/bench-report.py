#!/usr/bin/python3
"""The report of scripts/bench: reads what the runs left in DIR, prints the
table and writes DIR/results.json and DIR/ratios.png.

    bench-report.py --dir DIR [--criterion DIR --since EPOCH]
    bench-report.py --self-test

DIR holds (tab-separated, one header line each):
  meta.tsv     key, value: the machine, the commit, quick or not, ...
  configs.tsv  workload, config, qemu, vm_type, mode, plain, target,
               description, command: one line per configuration of a workload
  samples.tsv  workload, config, run, wall_s, user_s, sys_s, work, unit: one
               line per timed run

--criterion adds the model's benchmarks: every criterion result
(new/benchmark.json and new/estimates.json) written at or after --since.

Runs on Debian's /usr/bin/python3 with python3-matplotlib (scripts/setup).
"""

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import textwrap

SCHEMA = "cvmem-bench/1"
BASELINE = "baseline"
# Issue 22's target for the model: every stage-2 lookup within 25 ns.
LOOKUP_GROUP = "stage2_lookup"
LOOKUP_TARGET_NS = 25.0
# Zap of a 1 GiB slot (slot leafs only): the same slot with 4 GiB and with
# 1 GiB mapped. Proportional to the slot means a ratio near 1.
ZAP_GROUP = "delete_1g_slot_4k"
ZAP_4G = "slot_leafs"
ZAP_1G = "slot_leafs_1g_mapped"


def read_tsv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("\t")
            meta[key] = value
    for key in ("quick", "runs", "nproc", "elapsed_s"):
        if key in meta:
            meta[key] = int(meta[key])
    meta["quick"] = bool(meta.get("quick"))
    return meta


def summary(values):
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
        "samples": values,
    }


def analyse(configs, samples):
    """Per workload: its configurations with statistics and ratios."""
    workloads = []
    by_key = {}
    for s in samples:
        by_key.setdefault((s["workload"], s["config"]), []).append(s)
    for c in configs:
        w = c["workload"]
        if not workloads or workloads[-1]["name"] != w:
            workloads.append({"name": w, "description": c["description"], "configs": []})
        runs = by_key.get((w, c["config"]), [])
        if not runs:
            raise SystemExit(f"bench-report: no samples of {w}/{c['config']}")
        wall = [float(r["wall_s"]) for r in runs]
        cpu = [float(r["user_s"]) + float(r["sys_s"]) for r in runs]
        work = {(int(r["work"]), r["unit"]) for r in runs}
        workloads[-1]["configs"].append({
            "name": c["config"],
            "qemu": c["qemu"],
            "vm_type": c["vm_type"],
            "mode": c["mode"],
            "plain": c["plain"],
            "command": c["command"],
            "target": parse_target(c["target"]),
            "runs": len(runs),
            "wall_s": summary(wall),
            "cpu_s": summary(cpu),
            "_work": work,
        })
    for w in workloads:
        works = set().union(*(c.pop("_work") for c in w["configs"]))
        if len(works) != 1:
            raise SystemExit(f"bench-report: {w['name']}: the runs did different work: {sorted(works)}")
        w["work"], w["unit"] = works.pop()
        cs = {c["name"]: c for c in w["configs"]}
        if BASELINE not in cs:
            raise SystemExit(f"bench-report: {w['name']}: no {BASELINE} configuration")
        base = cs[BASELINE]
        bw, bc = base["wall_s"]["median"], base["cpu_s"]["median"]
        w["baseline"] = BASELINE
        for c in w["configs"]:
            c["ratio"] = c["wall_s"]["median"] / bw
            c["ratio_min"] = c["wall_s"]["min"] / bw
            c["ratio_max"] = c["wall_s"]["max"] / bw
            c["cpu_ratio"] = c["cpu_s"]["median"] / bc if bc > 0 else None
            plain = cs.get(c["plain"])
            c["vs_plain"] = (c["wall_s"]["median"] / plain["wall_s"]["median"]
                             if plain is not None and c["mode"] != "none" else None)
            c["extra_ns_per_unit"] = ((c["wall_s"]["median"] - bw) * 1e9 / w["work"]
                                      if c["name"] != BASELINE and w["work"] > 0 else None)
            c["target_met"] = target_met(c)
    return workloads


def parse_target(text):
    """A configuration's target: {"ratio": R} (the wall-time median over the
    baseline's) or {"extra_ns": N} (written +Nus: the most the median may
    exceed the baseline's per unit of work), or None."""
    if not text:
        return None
    if text.startswith("+") and text.endswith("us"):
        return {"extra_ns": float(text[1:-2]) * 1000}
    return {"ratio": float(text)}


def target_met(c):
    t = c["target"]
    if t is None:
        return None
    if "ratio" in t:
        return c["ratio"] <= t["ratio"]
    return c["extra_ns_per_unit"] is not None and c["extra_ns_per_unit"] <= t["extra_ns"]


def target_text(t):
    return f"<= {t['ratio']:.2f}" if "ratio" in t else f"<= +{t['extra_ns'] / 1000:g} us/unit"


def read_criterion(root, since):
    """Every criterion result under root written at or after since."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        est_path = os.path.join(dirpath, "estimates.json")
        if since is not None and os.path.getmtime(est_path) < since:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(est_path) as f:
            est = json.load(f)
        out.append({
            "id": bench["full_id"],
            "group": bench["group_id"],
            "function": bench.get("function_id"),
            "median_ns": est["median"]["point_estimate"],
            "mean_ns": est["mean"]["point_estimate"],
            "median_abs_dev_ns": est["median_abs_dev"]["point_estimate"],
        })
    out.sort(key=lambda b: b["id"])
    by_id = {b["id"]: b for b in out}
    for b in out:
        b["target_ns"] = LOOKUP_TARGET_NS if b["group"] == LOOKUP_GROUP else None
        b["target_met"] = b["median_ns"] <= b["target_ns"] if b["target_ns"] else None
    model = {"source": "cargo bench -p cvmem-model (criterion)", "benchmarks": out}
    z4, z1 = by_id.get(f"{ZAP_GROUP}/{ZAP_4G}"), by_id.get(f"{ZAP_GROUP}/{ZAP_1G}")
    if z4 and z1:
        model["zap_slot_leafs_4g_over_1g_mapped"] = z4["median_ns"] / z1["median_ns"]
    return model


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def table(meta, workloads, model):
    lines = []
    kind = "quick" if meta.get("quick") else "full"
    lines.append(f"cvmem bench ({kind}, {meta.get('runs')} runs of each configuration, "
                 f"{meta.get('nproc')} CPUs, load {meta.get('loadavg_start')} -> "
                 f"{meta.get('loadavg_end')}, commit {meta.get('commit')})")
    lines.append("wall time of the whole QEMU run; ratio = median / baseline median; "
                 "vs plain = median / the same QEMU without the plugin")
    for w in workloads:
        lines.append("")
        lines.append(f"{w['name']}: {w['description']}; work {w['work']} {w['unit']}")
        per = f"extra/{w['unit'].split()[-1].rstrip('s')}" if w["unit"] else "extra/unit"
        head = (f"  {'config':<13} {'median s':>9} {'min s':>8} {'max s':>8} {'ratio':>7} "
                f"{'cpu ratio':>9} {'vs plain':>8} {per:>16}  target")
        lines.append(head)
        for c in w["configs"]:
            vs = f"{c['vs_plain']:.3f}" if c["vs_plain"] is not None else "-"
            cr = f"{c['cpu_ratio']:.3f}" if c["cpu_ratio"] is not None else "-"
            extra = "-"
            if c["extra_ns_per_unit"] is not None:
                extra = ("+" if c["extra_ns_per_unit"] >= 0 else "-") + fmt_time(abs(c["extra_ns_per_unit"]))
            target = ""
            if c["target"] is not None:
                target = f"{target_text(c['target'])}: " + ("met" if c["target_met"] else "MISSED")
            lines.append(f"  {c['name']:<13} {c['wall_s']['median']:9.3f} {c['wall_s']['min']:8.3f} "
                         f"{c['wall_s']['max']:8.3f} {c['ratio']:7.3f} {cr:>9} {vs:>8} {extra:>16}  {target}")
    if model:
        lines.append("")
        lines.append(f"model: {model['source']}, medians")
        for b in model["benchmarks"]:
            target = ""
            if b["target_ns"] is not None:
                target = f"  <= {b['target_ns']:.0f} ns: " + ("met" if b["target_met"] else "MISSED")
            lines.append(f"  {b['id']:<58} {fmt_time(b['median_ns']):>10}{target}")
        r = model.get("zap_slot_leafs_4g_over_1g_mapped")
        if r is not None:
            lines.append(f"  zap of a 1 GiB slot (slot leafs), 4 GiB mapped / 1 GiB mapped: {r:.2f} "
                         "(1: proportional to the slot, 4: to all mapped memory)")
    return "\n".join(lines)


def plot(meta, workloads, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [len(w["configs"]) - 1 for w in workloads]
    fig, axes = plt.subplots(len(workloads), 1, squeeze=False,
                             figsize=(8, 1.2 + 0.45 * sum(max(r, 1) for r in rows) + 0.9 * len(workloads)),
                             gridspec_kw={"height_ratios": [max(r, 1) for r in rows]})
    for ax, w in zip(axes[:, 0], workloads):
        cs = [c for c in w["configs"] if c["name"] != BASELINE]
        names = [c["name"] for c in cs][::-1]
        ratios = [c["ratio"] for c in cs][::-1]
        lo = [c["ratio"] - c["ratio_min"] for c in cs][::-1]
        hi = [c["ratio_max"] - c["ratio"] for c in cs][::-1]
        colors = [{"enforcing": "tab:blue", "audit": "tab:orange"}.get(c["mode"], "tab:gray")
                  for c in cs][::-1]
        ax.barh(names, ratios, xerr=[lo, hi], color=colors, capsize=3)
        ax.axvline(1.0, color="black", linewidth=1)
        ratio_targets = [c["target"]["ratio"] for c in cs
                         if c["target"] is not None and "ratio" in c["target"]]
        for t, style in sorted({(t, "--") for t in ratio_targets}):
            ax.axvline(t, color="tab:red", linestyle=style, linewidth=1)
            ax.text(t, len(names) - 0.5, f" target {t:g}", color="tab:red", fontsize=8, va="bottom")
        # The label right of the whisker, not on it.
        for y, (r, h) in enumerate(zip(ratios, hi)):
            ax.text(r + h, y, f"  {r:.2f}x", va="center", fontsize=8)
        ax.set_xlim(0, max(ratios + [c["ratio_max"] for c in cs] + ratio_targets + [1.2]) * 1.15)
        ax.set_title(textwrap.fill(f"{w['name']}: {w['description']}", 100), fontsize=8, loc="left")
        ax.set_xlabel("median wall time / baseline median (bars: min..max)", fontsize=8)
        ax.tick_params(labelsize=8)
    kind = "quick" if meta.get("quick") else "full"
    fig.suptitle(f"cvmem cost against the patched QEMU without the plugin ({kind}, "
                 f"{meta.get('runs')} runs, {meta.get('nproc')} CPUs, {meta.get('date', '')})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(d, criterion=None, since=None):
    meta = read_meta(os.path.join(d, "meta.tsv"))
    workloads = analyse(read_tsv(os.path.join(d, "configs.tsv")),
                        read_tsv(os.path.join(d, "samples.tsv")))
    model = read_criterion(criterion, since) if criterion else None
    results = {"schema": SCHEMA, "meta": meta, "workloads": workloads, "model": model}
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    plot(meta, workloads, os.path.join(d, "ratios.png"))
    return table(meta, workloads, model)


def self_test():
    """The whole report path on made-up samples whose answers are known."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "meta.tsv"), "w") as f:
            f.write("quick\t1\nruns\t3\nnproc\t2\ncommit\ttest\nloadavg_start\t0 0 0\n"
                    "loadavg_end\t0 0 0\nelapsed_s\t1\n")
        configs = [
            ("w1", "baseline", "patched", "none", "none", "baseline", ""),
            ("w1", "default", "patched", "default", "enforcing", "baseline", "1.10"),
            ("w1", "debian", "debian", "none", "none", "debian", ""),
            ("w1", "audit", "debian", "default", "audit", "debian", "2.5"),
            ("w2", "baseline", "patched", "none", "none", "baseline", ""),
            ("w2", "tdx", "patched", "tdx", "enforcing", "baseline", ""),
            ("w2", "snp", "patched", "snp", "enforcing", "baseline", "+250000us"),
        ]
        with open(os.path.join(d, "configs.tsv"), "w") as f:
            f.write("workload\tconfig\tqemu\tvm_type\tmode\tplain\ttarget\tdescription\tcommand\n")
            for c in configs:
                f.write("\t".join(c) + f"\tdescription of {c[0]}\tqemu -m 1G\n")
        walls = {
            ("w1", "baseline"): [2.0, 1.9, 2.5], ("w1", "default"): [2.4, 2.2, 2.3],
            ("w1", "debian"): [1.0, 1.0, 1.0], ("w1", "audit"): [3.0, 3.2, 2.9],
            ("w2", "baseline"): [1.0, 1.0, 1.0], ("w2", "tdx"): [3.0, 3.0, 3.0],
            ("w2", "snp"): [2.0, 2.0, 2.0],
        }
        with open(os.path.join(d, "samples.tsv"), "w") as f:
            f.write("workload\tconfig\trun\twall_s\tuser_s\tsys_s\twork\tunit\n")
            for (w, c), ws in walls.items():
                for i, v in enumerate(ws):
                    work = 1000 if w == "w1" else 4
                    f.write(f"{w}\t{c}\t{i + 1}\t{v}\t{v / 2}\t{v / 4}\t{work}\tpage visits\n")
        crit = os.path.join(d, "criterion")
        for group, fn, ns in ((LOOKUP_GROUP, "fast", 20.0), (LOOKUP_GROUP, "slow", 45.0),
                              (ZAP_GROUP, ZAP_4G, 2e6), (ZAP_GROUP, ZAP_1G, 1e6)):
            nd = os.path.join(crit, group, fn, "new")
            os.makedirs(nd)
            with open(os.path.join(nd, "benchmark.json"), "w") as f:
                json.dump({"group_id": group, "function_id": fn, "full_id": f"{group}/{fn}"}, f)
            with open(os.path.join(nd, "estimates.json"), "w") as f:
                json.dump({k: {"point_estimate": ns} for k in ("mean", "median", "median_abs_dev")}, f)
        text = report(d, crit, 0)
        with open(os.path.join(d, "results.json")) as f:
            r = json.load(f)
        with open(os.path.join(d, "ratios.png"), "rb") as f:
            png = f.read(8)

    def check(cond, what):
        if not cond:
            raise SystemExit(f"bench-report self-test: {what}")

    check(r["schema"] == SCHEMA, "schema")
    w1 = {c["name"]: c for c in r["workloads"][0]["configs"]}
    w2 = {c["name"]: c for c in r["workloads"][1]["configs"]}
    check(r["workloads"][0]["work"] == 1000 and r["workloads"][0]["unit"] == "page visits", "work")
    check(abs(w1["default"]["ratio"] - 2.3 / 2.0) < 1e-9, "ratio of medians")
    check(abs(w1["default"]["ratio_min"] - 2.2 / 2.0) < 1e-9, "ratio of the minimum")
    check(w1["default"]["target_met"] is False, "a missed target")
    check(abs(w1["audit"]["vs_plain"] - 3.0) < 1e-9 and w1["audit"]["target_met"] is True,
          "audit against its own QEMU")
    check(w1["debian"]["vs_plain"] is None and w1["baseline"]["extra_ns_per_unit"] is None,
          "no ratio to itself")
    check(abs(w1["default"]["extra_ns_per_unit"] - 0.3e9 / 1000) < 1e-3, "extra per unit")
    check(abs(w1["default"]["cpu_ratio"] - 1.15) < 1e-9, "cpu ratio")
    check(w2["tdx"]["target"] is None and w2["tdx"]["target_met"] is None, "no target")
    # 1 s more over 4 units: 250 ms per unit, exactly the +250000us target.
    check(w2["snp"]["target"] == {"extra_ns": 250e6} and w2["snp"]["target_met"] is True,
          "a per-unit target")
    check("<= +250000 us/unit: met" in text, "a per-unit target in the table")
    m = {b["id"]: b for b in r["model"]["benchmarks"]}
    check(m[f"{LOOKUP_GROUP}/fast"]["target_met"] is True
          and m[f"{LOOKUP_GROUP}/slow"]["target_met"] is False, "lookup target")
    check(abs(r["model"]["zap_slot_leafs_4g_over_1g_mapped"] - 2.0) < 1e-9, "zap proportionality")
    check(png == b"\x89PNG\r\n\x1a\n", "ratios.png is not a PNG")
    check("MISSED" in text and "1.150" in text, "table")
    print("bench-report self-test passed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir")
    ap.add_argument("--criterion")
    ap.add_argument("--since", type=float)
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        self_test()
        return
    if not a.dir:
        ap.error("--dir is required")
    print(report(a.dir, a.criterion, a.since))


if __name__ == "__main__":
    sys.exit(main())
