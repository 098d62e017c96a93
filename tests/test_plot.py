"""tfprune.plot: curve and sensitivity figures from plain result objects, written to files."""

import matplotlib
import pytest
from matplotlib.collections import PolyCollection

from tfprune import plot
from tfprune.sweep import SweepResult


def sweep_records(seeds=(0, 1, 2)):
    rows = [dict(sparsity=0.0, granularity=None, method=None, scope="layer", seed=None,
                 finetune_epochs=0, accuracy=0.98, loss=0.07, params=1000, nonzero_params=1000,
                 flops=2000, shrunk_params=None, shrunk_flops=None, gzip_bytes=3900)]
    for g in ("weight", "unit"):
        for m in ("magnitude", "random"):
            for seed in (seeds if m == "random" else (None,)):
                for s in (0.5, 0.9):
                    drop = (0.02 if g == "weight" else 0.1) * s + (0.3 * s if m == "random" else 0)
                    rows.append(dict(
                        sparsity=s, granularity=g, method=m, scope="layer", seed=seed,
                        finetune_epochs=0, accuracy=0.98 - drop - 0.01 * (seed or 0),
                        loss=0.07 + drop, params=1000, nonzero_params=int(1000 * (1 - s)),
                        flops=2000, shrunk_params=int(1000 * (1 - s)) if g == "unit" else None,
                        shrunk_flops=int(2000 * (1 - s)) if g == "unit" else None,
                        gzip_bytes=int(3900 * (1 - s)) + 50))
    return rows


def sensitivity_records():
    rows = [dict(layer=None, sparsity=0.0, granularity=None, method=None, finetune_epochs=0,
                 accuracy=0.9)]
    for i, layer in enumerate(("conv1", "conv2", "fc")):
        for s in (0.5, 0.9):
            rows.append(dict(layer=layer, sparsity=s, granularity="weight", method="magnitude",
                             finetune_epochs=0, accuracy=0.9 - 0.05 * i * s))
    return rows


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_curves_have_labelled_axes_a_legend_a_dense_line_and_std_bands(tmp_path):
    result = SweepResult(sweep_records(), config=dict(model="mlp", data="mnist:test"))
    fig = plot.curves(result, path=tmp_path / "c.png")
    assert isinstance(fig, matplotlib.figure.Figure)
    (ax,) = fig.axes
    assert "sparsity" in ax.get_xlabel() and "accuracy" in ax.get_ylabel()
    texts = legend_texts(ax)
    assert "dense model (98.00%)" in texts
    assert "weight, random, one-shot, mean ± std of 3 runs" in texts
    assert "unit, magnitude, one-shot" in texts and len(texts) == 5
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2  # the random curves
    assert (tmp_path / "c.png").stat().st_size > 20_000


@pytest.mark.parametrize("suffix", [".svg", ".pdf"])
def test_curves_write_svg_and_pdf_by_suffix(tmp_path, suffix):
    plot.curves(sweep_records(), path=tmp_path / f"c{suffix}")
    head = (tmp_path / f"c{suffix}").read_bytes()[:200]
    assert (b"<svg" in head or b"<?xml" in head) if suffix == ".svg" else head.startswith(b"%PDF")


def test_params_and_size_axes_are_log_scaled_and_flops_shows_unit_curves_only(tmp_path):
    for x in ("params", "size"):
        ax = plot.curves(sweep_records(), x=x).axes[0]
        assert ax.get_xscale() == "log"
    ax = plot.curves(sweep_records(), x="flops", path=tmp_path / "f.png").axes[0]
    assert all(t.startswith(("unit", "dense")) for t in legend_texts(ax))
    assert "weight curves not shown" in ax.get_xlabel()


def test_curves_of_another_metric_and_of_a_saved_file(tmp_path):
    result = SweepResult(sweep_records())
    result.to_json(tmp_path / "r.json")
    ax = plot.curves(tmp_path / "r.json", metric="loss").axes[0]
    assert "loss" in ax.get_ylabel()
    assert any(t.startswith("dense model (0.07") for t in legend_texts(ax))


def test_sensitivity_draws_one_line_and_one_bar_per_layer(tmp_path):
    result = SweepResult(sensitivity_records(), "sensitivity", config=dict(tolerance=0.01))
    fig = plot.sensitivity(result, path=tmp_path / "s.png")
    lines, bars = fig.axes
    assert len(lines.get_lines()) == 4  # 3 layers + dense
    assert [t.get_text() for t in bars.get_yticklabels()] == ["conv1", "conv2", "fc"]
    assert [p.get_width() for p in bars.patches] == [0.9, 0.0, 0.0]
    assert "within 1.0% of dense" in bars.get_xlabel()
    assert (tmp_path / "s.png").stat().st_size > 20_000


def test_bad_arguments():
    with pytest.raises(ValueError, match="Argument `metric` must be one of"):
        plot.curves(sweep_records(), metric="top5")
    with pytest.raises(ValueError, match="Argument `x` must be one of"):
        plot.curves(sweep_records(), x="latency")
    with pytest.raises(ValueError, match="Argument `path` must end in one of"):
        plot.curves(sweep_records(), path="curve.jpg")
    with pytest.raises(ValueError, match="must come from `tfprune.sweep.sensitivity`"):
        plot.sensitivity(sweep_records())
    with pytest.raises(TypeError, match="Argument `result`"):
        plot.curves(42)


def test_the_plot_method_of_a_result_picks_the_kind(tmp_path):
    assert len(SweepResult(sweep_records()).plot().axes) == 1
    assert len(SweepResult(sensitivity_records(), "sensitivity").plot().axes) == 2


def test_curves_draw_into_a_given_axes(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plot.curves(sweep_records(), ax=right, path=tmp_path / "p.png") is fig
    assert right.get_legend() is not None and left.get_legend() is None
    assert (tmp_path / "p.png").stat().st_size > 0
