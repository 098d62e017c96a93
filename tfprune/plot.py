"""Plots of sweep results: degradation curves and per-layer sensitivity.

Both functions take a `tfprune.sweep.SweepResult` (or its records, or the path of
a saved result), return a matplotlib `Figure`, and write it to `path` when given
(PNG, or SVG / PDF by the suffix). Figures are drawn on matplotlib's Agg canvas
(no display, no pyplot state), so they work on servers and in CI; in a notebook
the returned figure shows as the cell's output.

- `curves`: one line per granularity × method × fine-tuning, the mean over seeds
  with a ± std band when there are several, the dense model as a dotted reference
  line. `x="sparsity"` (requested), `"params"` (nonzero weights, log scale),
  `"flops"` (unit pruning after `shrink`, log scale; weight masks leave FLOPs
  unchanged, so weight curves are left out and the plot says so) or `"size"`
  (gzip bytes of the weights, log scale).
- `sensitivity`: each layer's metric against its own sparsity (others dense),
  next to the highest sparsity each layer takes within `tolerance` of dense.

Example:

```python
fig = tfprune.plot.curves(result, metric="accuracy", x="params", path="params.png")
tfprune.plot.sensitivity(sens, tolerance=0.01, path="sensitivity.png")
```
"""

import os
import pathlib

__all__ = ["curves", "sensitivity", "X_AXES"]

X_AXES = {
    "sparsity": ("sparsity", "sparsity of the pruned layers (fraction of weights or units removed)"),
    "params": ("nonzero_params", "nonzero parameters (log scale)"),
    "flops": ("shrunk_flops", "FLOPs per example after shrink (log scale)"),
    "size": ("gzip_bytes", "gzip size of the weights, bytes (log scale)"),
}
_DENSE_X = {"sparsity": None, "params": "nonzero_params", "flops": "flops", "size": "gzip_bytes"}
_COLORS = {("weight", False): "tab:blue", ("unit", False): "tab:orange",
           ("weight", True): "tab:green", ("unit", True): "tab:red"}
_SUFFIXES = (".png", ".svg", ".pdf")


def _result(result):
    from tfprune.sweep.result import SweepResult

    if isinstance(result, SweepResult):
        return result
    if isinstance(result, (str, os.PathLike)):
        return SweepResult.load(result)
    if isinstance(result, (list, tuple)) and all(isinstance(r, dict) for r in result):
        kind = "sensitivity" if any("layer" in r for r in result) else "sweep"
        return SweepResult(result, kind)
    if hasattr(result, "records"):
        return SweepResult(result.records, getattr(result, "kind", "sweep"))
    raise TypeError(f"Argument `result` must be a SweepResult, a list of records or a path. "
                    f"Received: result={type(result).__name__}")


def _check_path(path):
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"Argument `path` must be None or a file path ending in one of "
                        f"{_SUFFIXES}. Received: path={path!r}")
    path = pathlib.Path(path)
    if path.suffix.lower() not in _SUFFIXES:
        raise ValueError(f"Argument `path` must end in one of {_SUFFIXES}. Received: path={str(path)!r}")
    return path


def _figure(ncols=1, figsize=(7.5, 4.8), width_ratios=None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, width_ratios=width_ratios) if ncols > 1 else [fig.add_subplot()]
    return fig, list(axes)


def _save(fig, path):
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=150)
    os.replace(tmp, path)


def _check_metric(res, metric):
    metric = metric or res.default_metric()
    if metric not in res.metrics:
        raise ValueError(f"Argument `metric` must be one of {res.metrics}. Received: metric={metric!r}")
    return metric


def _is_fraction(res, metric):
    values = [r.get(metric) for r in res.records if r.get(metric) is not None]
    return "acc" in metric and values and all(0.0 <= v <= 1.0 for v in values)


def _metric_label(res, metric):
    data = str(res.config.get("data", ""))
    where = " (test)" if ":test" in data else ""
    return metric.replace("_", " ") + where


def _curve_label(g, m, ft, n):
    how = f"fine-tuned {ft} ep" if ft else "one-shot"
    seeds = f", mean ± std of {n} runs" if n > 1 else ""
    return f"{g}, {m}, {how}{seeds}"


def curves(result, metric=None, x="sparsity", path=None, title=None, figsize=(7.5, 4.8),
           ax=None):
    """Degradation curves of a sweep (see the module doc); returns the Figure.

    `ax`: draw into this matplotlib Axes (e.g. one panel of a larger figure)
    instead of a new figure."""
    from matplotlib.ticker import PercentFormatter

    res = _result(result)
    metric = _check_metric(res, metric)
    if x not in X_AXES:
        raise ValueError(f"Argument `x` must be one of {tuple(X_AXES)}. Received: x={x!r}")
    path = _check_path(path)
    field, xlabel = X_AXES[x]
    dense = res.dense
    if ax is None:
        fig, (ax,) = _figure(figsize=figsize)
    else:
        fig = ax.figure
    left_out = []
    for (g, m, ft), points in res.curves().items():
        if x == "flops" and g != "unit":
            left_out.append(g)
            continue
        pts = [p for p in points if p.get(field if x != "sparsity" else "sparsity") is not None
               and p.get(metric) is not None]
        if not pts:
            continue
        xs = [p[field] for p in pts]
        ys = [p[metric] for p in pts]
        sds = [p.get(f"{metric}_std") or 0.0 for p in pts]
        if dense is not None and dense.get(metric) is not None:
            dx = 0.0 if x == "sparsity" else dense.get(_DENSE_X[x])
            if dx is not None:
                xs, ys, sds = [dx] + xs, [dense[metric]] + ys, [0.0] + sds
        color = _COLORS.get((g, bool(ft)), None)
        n = max(p["seeds"] for p in pts)
        ax.plot(xs, ys, color=color, linestyle="-" if m == "magnitude" else "--",
                marker="s" if ft else "o", markersize=4, label=_curve_label(g, m, ft, n))
        if n > 1:
            lo = [y - s for y, s in zip(ys, sds)]
            hi = [y + s for y, s in zip(ys, sds)]
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0)
    if dense is not None and dense.get(metric) is not None:
        value = dense[metric]
        text = f"{value:.2%}" if _is_fraction(res, metric) else f"{value:.4g}"
        ax.axhline(value, color="0.35", linestyle=":", linewidth=1.5, label=f"dense model ({text})")
        if dense.get("seeds", 1) > 1 and dense.get(f"{metric}_std"):
            sd = dense[f"{metric}_std"]
            ax.axhspan(value - sd, value + sd, color="0.5", alpha=0.15, linewidth=0)
    if x == "sparsity":
        ax.set_xlim(0.0, 1.0)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    else:
        ax.set_xscale("log")
        ax.invert_xaxis()
    if _is_fraction(res, metric):
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(xlabel if x != "flops" or not left_out else
                  xlabel + "\n(weight masks leave FLOPs unchanged: weight curves not shown)")
    ax.set_ylabel(_metric_label(res, metric))
    ax.set_title(title or f"{metric.replace('_', ' ')} vs {x} — {res.config.get('model', 'model')}"
                 f" on {str(res.config.get('data', 'data')).split(':')[0]}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    _save(fig, path)
    return fig


def sensitivity(result, metric=None, tolerance=None, path=None, title=None, figsize=None):
    """Per-layer sensitivity (see the module doc); returns the Figure."""
    from matplotlib import colormaps
    from matplotlib.ticker import PercentFormatter

    res = _result(result)
    if res.kind != "sensitivity":
        raise ValueError("Argument `result` must come from `tfprune.sweep.sensitivity` "
                         f"(records with a `layer`). Received: a {res.kind} result")
    metric = _check_metric(res, metric)
    tolerance = res.config.get("tolerance", 0.01) if tolerance is None else float(tolerance)
    path = _check_path(path)
    lines = res.curves()
    rows = res.layer_summary(metric, tolerance)
    n = len(rows)
    fig, (ax, bar) = _figure(2, figsize or (11, max(4.8, 0.28 * n + 1.5)), width_ratios=(3, 2))
    cmap = colormaps["tab20" if n > 10 else "tab10"]
    dense = res.dense
    frac = _is_fraction(res, metric)
    for i, ((layer, g, m, ft), points) in enumerate(lines.items()):
        xs = [p["sparsity"] for p in points]
        ys = [p[metric] for p in points]
        if dense is not None:
            xs, ys = [0.0] + xs, [dense[metric]] + ys
        ax.plot(xs, ys, marker="o", markersize=3, color=cmap(i % cmap.N),
                linestyle="-" if m == "magnitude" else "--",
                label=layer if m == "magnitude" else f"{layer} ({m})")
    if dense is not None:
        value = dense[metric]
        ax.axhline(value, color="0.35", linestyle=":", linewidth=1.5,
                   label=f"dense ({value:.2%})" if frac else f"dense ({value:.4g})")
    ax.set_xlim(0.0, 1.0)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    if frac:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    granularity = res.config.get("granularity", "weight")
    ax.set_xlabel(f"sparsity of the one pruned layer ({granularity}s), all others dense")
    ax.set_ylabel(_metric_label(res, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small" if n > 8 else "small", ncol=2 if n > 10 else 1, loc="lower left")
    names = [r["layer"] if r["method"] == "magnitude" else f"{r['layer']} ({r['method']})"
             for r in rows]
    ypos = list(range(n))[::-1]
    bar.barh(ypos, [r["max_sparsity"] for r in rows], color=[cmap(i % cmap.N) for i in range(n)])
    bar.set_yticks(ypos, names, fontsize="small")
    bar.set_xlim(0.0, 1.0)
    bar.xaxis.set_major_formatter(PercentFormatter(1.0))
    drop = f"{tolerance:.1%}" if frac else f"{tolerance:g}"
    bar.set_xlabel(f"highest sparsity within {drop} of dense")
    bar.grid(axis="x", alpha=0.3)
    for y, r in zip(ypos, rows):
        bar.text(min(r["max_sparsity"] + 0.01, 0.85), y, f"{r['max_sparsity']:.0%}",
                 va="center", fontsize="x-small")
    fig.suptitle(title or f"Per-layer sensitivity: {res.config.get('model', 'model')} on "
                 f"{str(res.config.get('data', 'data')).split(':')[0]}")
    _save(fig, path)
    return fig
