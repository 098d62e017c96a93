#!/usr/bin/env python
"""Training overhead of pruning on every Keras 3 backend, and mask-update time vs tfmot.

The Keras backend is fixed per process, so this script starts one subprocess per
backend (`overhead_worker.py`, `KERAS_BACKEND` set), each doing its own
interleaved measurements, and collects their JSON into one table:

1. Epoch time of the seed MLP (Dense 1000-1000-500-200-10 on flattened 784-pixel
   MNIST, no biases, relu, softmax output; Adam(1e-3), batch 128, sparse
   categorical cross-entropy + accuracy), plain Keras 3 vs
   `tfprune.prune_low_magnitude` of it, on the same backend and compile mode:

       TF graph     KERAS_BACKEND=tensorflow, compile(jit_compile=False)
       TF + XLA     KERAS_BACKEND=tensorflow, compile(jit_compile=True)
       JAX          KERAS_BACKEND=jax (Keras's jitted stateless train step)
       torch        KERAS_BACKEND=torch (eager)
       tfmot        tf_keras vs tfmot on tf_keras, in the TensorFlow process (reference)

   Every variant starts from the same initial weights (drawn here with NumPy and
   shared through a file) and trains on the same batches in the same order (the
   first `--samples` MNIST images, no shuffling). Pruned models use
   PolynomialDecay(0 -> 0.9, begin_step=0, end_step = the steps of the whole run
   rounded down to a multiple of 100, frequency=100); an epoch is 200 batches, so
   every timed epoch holds exactly two mask updates, the rate of a real run. Each
   variant trains one warm-up epoch (tracing/compiling, excluded), then
   `--repeats` rounds train one epoch of each, plain and pruned back to back in an
   order rotated every round. Reported per backend/mode: median ms/epoch (wall),
   the ratio of medians, the median of the per-round paired ratios (the verdict:
   a burst of load from other processes hits both epochs of a pair), and the same
   two for process CPU time. Targets: <= 1.05, and <= 1.02 under XLA.
   `--breakdown` adds three diagnostic pruned variants per mode, each with a
   schedule that never updates (only objects in the worker process are changed,
   never tfprune's code): `noupdate` keeps the whole per-step cost (the mask
   multiply in every pruned kernel's constraint, the driver's step counting and
   its untaken update conditional); `countonly` drops the mask multiply;
   `stepsonly` also drops the conditional (the step counter is all that is left).
   So tfprune - noupdate = the mask updates, noupdate - countonly = the multiply,
   countonly - stepsonly = the conditional. `--masksonly` adds a variant on the
   real schedule whose update conditional writes only the masks and pruning state
   (the kernels pass through it no more; the new masks reach them one step late, so
   timing only). `--modes` limits the epoch timing to some compile modes (a
   breakdown of one mode is cheaper).

2. One mask update at 90% on a 1000x1000 and a 25088x4096 (VGG-16 fc6) kernel,
   compiled the way each backend's train step is (TF: `tf.function` and
   `tf.function(jit_compile=True)`; JAX: `jax.jit`; torch: eager):
   `tfprune.masks.select([weight_scores(w)], 0.9)` and the mask written, vs
   tfmot's own `pruning_impl.Pruning(...).conditional_mask_update()` (schedule
   check + `top_k(k=n)` full sort, threshold at index k-1, mask assigned) in a
   `tf.function` in the same process, calls alternating. Target: >= 5x faster.
   A tfmot warm-up call on a kernel over 2^24 weights only traces (one full sort
   of 25088x4096 takes about a minute here). With `--breakdown`, torch also times
   `eager+bincount`: tfprune's radix histograms as `ops.bincount` instead of
   `ops.segment_sum` (patched in the worker process only).

3. With `--steps` (`overhead_steps.py`): the same plain/pruned pairs timed step by
   step, the two models of a mode alternating one step each and driven as `fit`
   drives them (callbacks, Keras's train function, tfprune's lean dispatch), after a
   warm-up `fit` epoch; `--step-blocks` blocks of `--frequency` steps, each holding
   exactly one mask update. A burst of load from elsewhere now hits both models of a
   pair; the verdict is the median of the per-block ratios pruned/plain, with a
   bootstrap 95% interval, beside the ratio of the totals, the median paired ratio
   of the steps that update no mask and the median time of an update step. With
   `--breakdown` the diagnostic variants of item 1 are timed step by step too.

Run:  TFPRUNE_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/overhead.py
      (--quick for a smoke run; --backends tensorflow for one backend; see --help)
"""

import argparse
import csv
import io
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import overhead_steps  # noqa: E402
RESULTS = HERE / "results"
BACKENDS = ("tensorflow", "jax", "torch")
SIZES = (784, 1000, 1000, 500, 200, 10)
FINAL_SPARSITY = 0.9
FREQUENCY = 100
TARGETS = {"graph": 1.05, "xla": 1.02, "jit": 1.05, "eager": 1.05}
TARGET_MASK_SPEEDUP = 5.0
LABELS = {
    ("tensorflow", "graph"): "TF graph",
    ("tensorflow", "xla"): "TF + XLA (jit_compile=True)",
    ("tensorflow", "tf_keras"): "tfmot on tf_keras, graph (reference)",
    ("jax", "jit"): "JAX (jit)",
    ("torch", "eager"): "torch (eager)",
}
MASK_LABELS = {
    ("tensorflow", "graph"): "TF tf.function",
    ("tensorflow", "xla"): "TF tf.function(jit_compile=True)",
    ("jax", "jit"): "JAX jax.jit",
    ("torch", "eager"): "torch eager",
    ("torch", "eager+bincount"): "torch eager, histograms by ops.bincount (diagnostic patch)",
}


def log(msg):
    print(msg, flush=True)


def _label(backend, mode, variant):
    """A table row's name: the mode's, with a diagnostic variant's name after it."""
    if variant in ("tfprune", "tfmot"):
        return LABELS[(backend, mode)]
    return f"{LABELS[(backend, mode)]}: {variant} (diagnostic)"


def initial_weights(seed):
    """Glorot-uniform kernels of the seed MLP (NumPy, so every backend gets the same)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        out[f"kernel_{i}"] = rng.uniform(-limit, limit, (fan_in, fan_out)).astype("float32")
    return out


def uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None


def run_workers(args, cfg, tmp):
    """One `overhead_worker.py` per backend, one after another; their JSON."""
    out = {}
    for backend in args.backends:
        path = pathlib.Path(tmp) / f"{backend}.json"
        env = dict(os.environ, KERAS_BACKEND=backend)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        log(f"\n== {backend}: {uptime()}")
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(HERE / "overhead_worker.py"), "--config", cfg,
             "--out", str(path)], env=env)
        if proc.returncode != 0:
            raise SystemExit(f"the {backend} worker failed (exit {proc.returncode})")
        out[backend] = json.loads(path.read_text())
        out[backend]["wall_s"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------- analysis


def quartiles(values):
    """`(q1, q3)` (inclusive method; the values themselves for fewer than 2)."""
    if len(values) < 2:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def _pair(times, pruned, plain):
    a, b = times[pruned], times[plain]
    paired = [x / y for x, y in zip(a, b)]
    q1, q3 = quartiles(paired)
    return {"ratio_of_medians": statistics.median(a) / statistics.median(b),
            "median_paired_ratio": statistics.median(paired),
            "paired_min": min(paired), "paired_q1": q1, "paired_q3": q3,
            "paired_max": max(paired), "pairs": len(paired), "paired_ratios": paired}


def overhead_rows(backends):
    """One row per backend/mode (+ diagnostic rows), from the workers' epochs."""
    rows = []
    for backend, res in backends.items():
        e = res.get("epochs")
        if not e:
            continue
        steps = e["steps_per_epoch"]
        for mode in e["modes"]:
            variants = e["variants"][mode]
            pruned_variants = [v for v in variants if v != "plain"]
            for v in pruned_variants:
                pruned, plain = f"{mode}:{v}", f"{mode}:plain"
                wall = _pair(e["epoch_s"], pruned, plain)
                cpu = _pair(e["epoch_cpu_s"], pruned, plain)
                target = TARGETS.get(mode) if v == "tfprune" else None
                rows.append({
                    "backend": backend, "mode": mode, "variant": v,
                    "samples": e["samples"], "steps_per_epoch": steps,
                    "mask_updates_per_epoch": e["mask_updates_per_epoch"],
                    "label": _label(backend, mode, v),
                    "plain_ms_per_epoch": 1000 * statistics.median(e["epoch_s"][plain]),
                    "pruned_ms_per_epoch": 1000 * statistics.median(e["epoch_s"][pruned]),
                    "plain_ms_per_step": 1000 * statistics.median(e["epoch_s"][plain]) / steps,
                    "pruned_ms_per_step": 1000 * statistics.median(e["epoch_s"][pruned]) / steps,
                    "wall": wall, "cpu": cpu, "target": target,
                    "pass": None if target is None else wall["median_paired_ratio"] <= target,
                    "final_state": e["final_state"].get(pruned),
                    "loadavg_per_round": e["loadavg_per_round"],
                })
    order = {"tfprune": 0, "tfmot": 1, "noupdate": 2, "countonly": 2, "stepsonly": 2,
             "masksonly": 2}
    return sorted(rows, key=lambda r: order[r["variant"]])  # stable: backend order kept


def step_rows(backends):
    """One row per backend/mode from the per-step interleaved timing (`--steps`)."""
    rows = []
    for backend, res in backends.items():
        st = res.get("steps")
        if not st:
            continue
        for mode in st["modes"]:
            got = st["results"][mode]
            plain = got["plain"]
            for v in [v for v in st["variants"][mode] if v != "plain"]:
                r = got[v]
                paired = [a / b for a, b in zip(r["block_s"], plain["block_s"])]
                q1, q3 = quartiles(paired)
                lo, hi = overhead_steps.bootstrap_median_ci(paired)
                target = TARGETS.get(mode) if v == "tfprune" else None
                med = statistics.median(paired)
                upd = r["update_step_s"]
                rows.append({
                    "backend": backend, "mode": mode, "variant": v,
                    "label": _label(backend, mode, v), "blocks": len(paired),
                    "steps_per_block": st["frequency"], "due_steps": r["due_steps"],
                    "plain_ms_per_step": 1000 * plain["total_s"] / plain["steps"],
                    "pruned_ms_per_step": 1000 * r["total_s"] / r["steps"],
                    "ratio_of_totals": r["total_s"] / plain["total_s"],
                    "median_block_ratio": med, "ci95": [lo, hi], "block_q1": q1,
                    "block_q3": q3,
                    "other_steps_median_paired_ratio": r["other_steps_median_paired_ratio"],
                    "update_step_ms_median": 1000 * statistics.median(upd) if upd else None,
                    "plain_step_ms_median": 1000 * plain["median_step_s"],
                    "target": target,
                    "pass": None if target is None else med <= target,
                    "pass_ci": None if target is None else hi <= target,
                    "final_state": st["final_state"].get(f"{mode}:{v}"),
                })
    return sorted(rows, key=lambda r: r["variant"] != "tfprune")


def mask_rows(backends):
    rows = []
    for backend, res in backends.items():
        for m in res.get("mask_update", []):
            for mode, speedup in m["speedup_vs_tfmot"].items():
                diagnostic = (backend, mode) == ("torch", "eager+bincount")
                rows.append({
                    "backend": backend, "mode": mode, "label": MASK_LABELS[(backend, mode)],
                    "shape": m["shape"], "weights": m["weights"],
                    "tfprune_ms": m["median_ms"][mode], "tfmot_ms": m["median_ms"]["tfmot"],
                    "speedup": speedup, "diagnostic": diagnostic,
                    "pass": None if diagnostic else speedup >= TARGET_MASK_SPEEDUP,
                    "kept_target": m["kept"]["target"], "kept_tfprune": m["kept"][mode],
                    "kept_tfmot": m["kept"]["tfmot"], "repeats": m["repeats"],
                    "masks_differ_from_tfmot": m["masks_differ_from_tfmot"][mode],
                })
    return rows


def verdicts(result):
    out = {}
    for r in result.get("overhead", []):
        if r["target"] is not None:
            out[f"{r['label']}: tfprune/plain <= {r['target']} (median paired wall ratio)"] = {
                "value": r["wall"]["median_paired_ratio"], "pass": r["pass"]}
    for r in result.get("steps", []):
        if r["target"] is not None:
            out[f"{r['label']}: tfprune/plain <= {r['target']} (per-step interleaved, "
                f"median of {r['steps_per_block']}-step block ratios)"] = {
                "value": r["median_block_ratio"], "ci95": r["ci95"], "pass": r["pass"]}
    for r in result.get("mask_update", []):
        if r.get("diagnostic"):
            continue
        out[f"mask update {r['shape'][0]}x{r['shape'][1]}, {r['label']}: >= 5x tfmot"] = {
            "value": r["speedup"], "pass": r["pass"]}
    return out


# --------------------------------------------------------------------------- report


def table(rows, header):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)


def markdown(rows, header):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def _verdict(ok):
    return "" if ok is None else ("PASS" if ok else "MISS")


def overhead_table(result):
    rows = []
    for r in result["overhead"]:
        w = r["wall"]
        rows.append((r["label"], f"{r['steps_per_epoch']}/{r['mask_updates_per_epoch']:g}",
                     w["pairs"], f"{r['plain_ms_per_epoch']:.0f}", f"{r['pruned_ms_per_epoch']:.0f}",
                     f"{w['ratio_of_medians']:.3f}", f"{w['median_paired_ratio']:.3f}",
                     f"{w['paired_q1']:.3f}-{w['paired_q3']:.3f}",
                     f"{w['paired_min']:.3f}-{w['paired_max']:.3f}",
                     f"{r['cpu']['median_paired_ratio']:.3f}",
                     "" if r["target"] is None else f"<= {r['target']}", _verdict(r["pass"])))
    header = ("backend / mode", "steps/updates per epoch", "pairs", "plain ms/epoch",
              "pruned ms/epoch", "wall: ratio of medians", "wall: median paired ratio",
              "paired IQR", "paired min-max", "CPU: median paired", "target",
              "verdict (median paired wall)")
    return rows, header


def step_table(result):
    rows = []
    for r in result["steps"]:
        upd = r["update_step_ms_median"]
        rows.append((r["label"],
                     f"{r['blocks']}x{r['steps_per_block']}/{r['due_steps']}",
                     f"{r['plain_ms_per_step']:.2f}", f"{r['pruned_ms_per_step']:.2f}",
                     f"{r['ratio_of_totals']:.3f}", f"{r['median_block_ratio']:.3f}",
                     f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}",
                     f"{r['block_q1']:.3f}-{r['block_q3']:.3f}",
                     f"{r['other_steps_median_paired_ratio']:.3f}",
                     "" if upd is None else f"{upd:.1f} / {r['plain_step_ms_median']:.1f}",
                     "" if r["target"] is None else f"<= {r['target']}", _verdict(r["pass"])))
    header = ("backend / mode", "blocks x steps/updates", "plain ms/step", "pruned ms/step",
              "ratio of totals", "median block ratio", "95% CI (bootstrap)", "block IQR",
              "other steps: median paired", "update step / plain step ms (median)",
              "target", "verdict (median block ratio)")
    return rows, header


STEPS_TEXT = (
    "Per-step interleaved (`--steps`): the plain and the pruned model of one mode train "
    "alternately, one step each (order swapped every step), driven as `fit` drives them "
    "(callbacks, Keras's train function, tfprune's lean dispatch); each step timed to its "
    "completion. Blocks of {f} steps hold one mask update each (the real rate); ratio = "
    "pruned/plain sum of a block's step times; the verdict is the median block ratio:")


def mask_table(result):
    rows = []
    for r in result["mask_update"]:
        rows.append((f"{r['shape'][0]}x{r['shape'][1]}", r["label"], r["repeats"],
                     f"{r['tfprune_ms']:.2f}", f"{r['tfmot_ms']:.2f}", f"{r['speedup']:.1f}x",
                     _verdict(r["pass"]),
                     f"{r['kept_target']}/{r['kept_tfprune']}/{r['kept_tfmot']}",
                     r["masks_differ_from_tfmot"]))
    header = ("kernel", "tfprune compiled as", "calls", "tfprune ms", "tfmot ms", "speedup",
              f">= {TARGET_MASK_SPEEDUP:.0f}x", "kept target/tfprune/tfmot",
              "mask entries differing from tfmot")
    return rows, header


def describe(result):
    a = result["args"]
    lines = []
    epochs = {k: b["epochs"] for k, b in result["backends"].items() if "epochs" in b}
    if epochs:
        per = "; ".join(f"{k} {e['samples']} samples = {e['steps_per_epoch']} steps, "
                        f"{e['mask_updates_per_epoch']:g} mask update(s), "
                        f"{e['timed_epochs_per_variant']} timed epochs per variant"
                        for k, e in epochs.items())
        lines.append(
            f"Epoch time, seed MLP, batch {a['batch_size']}, mask update every "
            f"{a['frequency']} steps (the same rate everywhere); per epoch: {per}. Warm-up "
            "epoch excluded; plain and pruned epochs interleaved in one process; ratios "
            "pruned/plain on the same backend and mode; the verdict is the median of the "
            "per-round paired wall ratios (IQR and min-max show how noisy the machine was):")
    return lines


def summarize(result):
    out = describe(result)
    if result.get("overhead"):
        out.append(table(*overhead_table(result)))
        states = [f"{r['backend']}/{r['mode']} {r['final_state']['kernel_sparsity']:.4f}"
                  for r in result["overhead"] if r["variant"] in ("tfprune", "tfmot")
                  and r["final_state"]]
        out.append("final kernel sparsity after the run: " + ", ".join(states))
    if result.get("steps"):
        out.append("")
        out.append(STEPS_TEXT.format(f=result["steps"][0]["steps_per_block"]))
        out.append(table(*step_table(result)))
    if result.get("mask_update"):
        out.append("")
        out.append("One mask update at 90% sparsity (median; tfmot = its own "
                   "pruning_impl.Pruning.conditional_mask_update, full sort, tf.function, "
                   "timed in the same process, calls alternating):")
        out.append(table(*mask_table(result)))
    loads = [f"{b}: {res['loadavg_before'][0]:.1f} -> {res['loadavg_after'][0]:.1f}"
             for b, res in result["backends"].items()]
    out.append("")
    out.append(f"load average (1 min) before -> after each backend: {'; '.join(loads)}; "
               f"{result['environment'].get('cpu_count')} CPUs")
    return "\n".join(out)


def write_tables(result, path):
    """`overhead.md`: both tables in Markdown, the command, the load; and a CSV."""
    rows, header = overhead_table(result) if result.get("overhead") else ([], ())
    srows, sheader = step_table(result) if result.get("steps") else ([], ())
    mrows, mheader = mask_table(result) if result.get("mask_update") else ([], ())
    env = result["environment"]
    md = ["# overhead.py results", "",
          f"Command: `{result['command']}`  ",
          f"tfprune measured: `{env['tfprune_source'].get('path')}`, sources sha256 "
          f"{env['tfprune_source'].get('sha256')} (equal to commit "
          f"{env['tfprune_source'].get('repo_commit')}: "
          f"{env['tfprune_source'].get('equals_repo_commit')}); "
          f"{env['cpu_count']} CPUs; `uptime` before: `{env['uptime_before']}`, after: "
          f"`{env['uptime_after']}`.", ""]
    if rows:
        md += describe(result) + ["", markdown(rows, header), ""]
    if srows:
        md += [STEPS_TEXT.format(f=result["steps"][0]["steps_per_block"]), "",
               markdown(srows, sheader), ""]
    if mrows:
        md += ["One mask update at 90% sparsity (median ms; tfmot in the same process):", "",
               markdown(mrows, mheader), ""]
    path.with_suffix(".md").write_text("\n".join(md))
    buf = io.StringIO()
    w = csv.writer(buf)
    if rows:
        w.writerow(["table", *header])
        w.writerows([("overhead", *r) for r in rows])
    if srows:
        w.writerow(["table", *sheader])
        w.writerows([("steps", *r) for r in srows])
    if mrows:
        w.writerow(["table", *mheader])
        w.writerows([("mask_update", *r) for r in mrows])
    path.with_suffix(".csv").write_text(buf.getvalue())


# --------------------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default=",".join(BACKENDS),
                   help=f"comma-separated Keras backends, one subprocess each "
                        f"(default {','.join(BACKENDS)})")
    p.add_argument("--samples", type=int, default=25600,
                   help="training samples per epoch (default 25600 = 200 batches: 2 mask "
                        "updates per epoch at frequency 100)")
    p.add_argument("--batch-size", type=int, default=128, help="default 128")
    p.add_argument("--frequency", type=int, default=FREQUENCY,
                   help=f"mask update frequency in steps (default {FREQUENCY})")
    p.add_argument("--repeats", type=int, default=10,
                   help="timed epochs per variant (default 10)")
    p.add_argument("--torch-samples", type=int, default=12800,
                   help="training samples per epoch on torch, whose eager epochs are ~10x "
                        "slower (default 12800 = 100 batches: 1 mask update per epoch, the "
                        "same rate)")
    p.add_argument("--torch-repeats", type=int, default=5,
                   help="timed epochs per variant on torch (default 5)")
    p.add_argument("--mask-repeats", type=int, default=20,
                   help="timed calls per implementation for the 1000x1000 kernel (default 20)")
    p.add_argument("--big-repeats", type=int, default=2,
                   help="timed calls per implementation for the big kernel (default 2; "
                        "one tfmot sort of 25088x4096 takes about a minute here)")
    p.add_argument("--big-shape", default="25088x4096", help="big kernel shape, RxC "
                   "(default 25088x4096)")
    p.add_argument("--breakdown", action="store_true",
                   help="also time the diagnostic variants noupdate, countonly and "
                        "stepsonly per mode, and torch's eager+bincount mask update "
                        "(default off)")
    p.add_argument("--masksonly", action="store_true",
                   help="also time the diagnostic variant masksonly: the real schedule, "
                        "but the update conditional writes only masks and state, not the "
                        "kernels (default off)")
    p.add_argument("--modes", default=None,
                   help="comma-separated compile modes to time epochs in, among graph, xla, "
                        "tf_keras (tfmot), jit, eager (default: all of each backend's)")
    p.add_argument("--steps", action="store_true",
                   help="also time steps one by one, plain and pruned alternating "
                        "(overhead_steps.py; per mode: a warm-up epoch, then --step-blocks "
                        "blocks of --frequency steps; default off)")
    p.add_argument("--step-blocks", type=int, default=30,
                   help="timed blocks per mode with --steps, each holding one mask update "
                        "(default 30)")
    p.add_argument("--skip-epochs", action="store_true", help="no epoch timing")
    p.add_argument("--skip-masks", action="store_true", help="epoch timing only")
    p.add_argument("--seed", type=int, default=0, help="initial weights' seed (default 0)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2560 samples (20 steps, frequency 10), 2 repeats, "
                        "4096x4096 big kernel; writes no file unless --output is given")
    p.add_argument("--output", default=None,
                   help="JSON file (default benchmarks/results/overhead.json); .md and .csv "
                        "tables are written beside it")
    p.add_argument("--summarize", metavar="JSON", default=None,
                   help="print the tables of an earlier run's JSON file and exit")
    args = p.parse_args(argv)
    if args.summarize:
        saved = json.loads(pathlib.Path(args.summarize).read_text())
        print(summarize(saved))
        return saved
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.modes is not None:
        args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        bad = [m for m in args.modes if m not in ("graph", "xla", "tf_keras", "jit", "eager")]
        if bad:
            p.error("argument --modes: must be among graph, xla, tf_keras, jit, eager. "
                    f"Received: {bad}")
    bad = [b for b in args.backends if b not in BACKENDS]
    if bad:
        p.error(f"argument --backends: must be among {BACKENDS}. Received: {bad}")
    if args.quick:
        args.samples, args.repeats, args.frequency = 2560, 2, 10
        args.torch_samples, args.torch_repeats = 2560, 2
        args.mask_repeats, args.big_repeats, args.big_shape = 5, 2, "4096x4096"
        args.step_blocks = 2
    output = args.output or (None if args.quick else str(RESULTS / "overhead.json"))
    big = [int(s) for s in args.big_shape.lower().split("x")]
    t0 = time.perf_counter()
    result = {
        "command": " ".join(["benchmarks/overhead.py", *(argv if argv is not None
                                                          else sys.argv[1:])]),
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpu_count": os.cpu_count(), "uptime_before": uptime(),
                        "loadavg_before": os.getloadavg()},
        "args": vars(args),
    }
    with tempfile.TemporaryDirectory(prefix="tfprune_overhead_") as tmp:
        weights = pathlib.Path(tmp) / "weights.npz"
        np.savez(weights, **initial_weights(args.seed))
        cfg = pathlib.Path(tmp) / "config.json"
        cfg.write_text(json.dumps({
            "samples": args.samples, "batch_size": args.batch_size, "repeats": args.repeats,
            "samples_for": {"torch": args.torch_samples},
            "repeats_for": {"torch": args.torch_repeats},
            "frequency": args.frequency, "final_sparsity": FINAL_SPARSITY,
            "breakdown": args.breakdown, "modes": args.modes, "skip_epochs": args.skip_epochs,
            "masksonly": args.masksonly, "steps": args.steps,
            "step_blocks": args.step_blocks,
            "skip_masks": args.skip_masks, "mask_repeats": args.mask_repeats,
            "big_repeats": args.big_repeats, "big_shape": big, "seed": args.seed,
            "weights": str(weights),
        }))
        result["backends"] = run_workers(args, str(cfg), tmp)
    first = next(iter(result["backends"].values()))["environment"]
    result["environment"].update(
        tfprune_source=first["tfprune_source"], uptime_after=uptime(),
        loadavg_after=os.getloadavg(),
        versions={b: r["environment"] for b, r in result["backends"].items()})
    result["overhead"] = overhead_rows(result["backends"])
    result["steps"] = step_rows(result["backends"])
    result["mask_update"] = mask_rows(result["backends"])
    result["targets"] = verdicts(result)
    result["total_s"] = time.perf_counter() - t0
    log("")
    log(summarize(result))
    log(f"\ntotal {result['total_s']:.0f} s; {result['environment']['uptime_after']}")
    if output:
        out = pathlib.Path(output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        write_tables(result, out)
        log(f"wrote {out} and {out.with_suffix('.md').name}, {out.with_suffix('.csv').name}")
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
