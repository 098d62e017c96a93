"""Block and m:n pruning of saved files: the same masks as the engine's NumPy
policy on the live arrays (which `tests/test_backends.py` shows equal to training's
`keras.ops` masks bit for bit)."""

import subprocess
import sys

import keras
import numpy as np
import pytest

import tfprune
from tfprune import masks
from tfprune.masks import policy


def model():
    return keras.Sequential([keras.Input((10,)), keras.layers.Dense(37), keras.layers.Dense(18),
                             keras.layers.Dense(3)])


def conv_model():
    return keras.Sequential([keras.Input((8, 8, 6)), keras.layers.Conv2D(8, 3),
                             keras.layers.Flatten(), keras.layers.Dense(3)])


def saved(tmp_path, m, name="m.weights.h5"):
    path = tmp_path / name
    m.save_weights(path) if name.endswith(".weights.h5") else m.save(path)
    return path


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("block,pooling", [((1, 4), "AVG"), ((4, 1), "MAX"), ((3, 2), "AVG")])
def test_block_pruned_file_equals_the_policy_on_the_arrays(tmp_path, block, pooling, scope):
    m = model()
    path = saved(tmp_path, m)
    kernels = [layer.kernel.numpy() for layer in m.layers[:-1]]  # the output layer is kept
    g = masks.Block(block, pooling)
    keeps = policy.select(policy.NUMPY, [g.scores(policy.NUMPY, k) for k in kernels], 0.6, scope)
    want = [k * g.expand(policy.NUMPY, keep, k.shape) for k, keep in zip(kernels, keeps)]
    tfprune.h5.prune_weights_file(path, 0.6, scope=scope, block_size=block,
                                  block_pooling_type=pooling)
    m.load_weights(path)
    for layer, w in zip(m.layers, want):
        np.testing.assert_array_equal(layer.kernel.numpy(), w)
    if scope == "layer":
        for k, keep in zip(kernels, keeps):
            assert keep.sum() == masks.keep_count(keep.size, 0.6)


def test_block_chunks_do_not_change_the_blocks(tmp_path, monkeypatch):
    # Tiny read chunks: block rows must never straddle two chunks.
    monkeypatch.setattr(masks, "BLOCK_SIZE", 40)
    m = model()
    path = saved(tmp_path, m)
    k = m.layers[0].kernel.numpy()
    g = masks.Block((3, 4), "AVG")
    keep = policy.select(policy.NUMPY, [g.scores(policy.NUMPY, k)], 0.5)[0]
    tfprune.h5.prune_weights_file(path, 0.5, block_size=(3, 4), include="^dense$")
    m.load_weights(path)
    np.testing.assert_array_equal(m.layers[0].kernel.numpy(), k * g.expand(policy.NUMPY, keep, k.shape))


@pytest.mark.parametrize("make", [model, conv_model], ids=["dense", "conv"])
def test_m_by_n_pruned_file_has_the_pattern_and_equals_the_engine(tmp_path, make, monkeypatch):
    monkeypatch.setattr(masks, "BLOCK_SIZE", 64)  # several chunks per tensor
    m = make()
    path = saved(tmp_path, m, "m.keras")
    want = [layer.kernel.numpy() * masks.MByN(2, 4).mask(policy.NUMPY, layer.kernel.numpy())
            for layer in m.layers if hasattr(layer, "kernel")][:-1]
    report = tfprune.h5.prune_weights_file(path, None, sparsity_m_by_n=(2, 4))
    loaded = keras.models.load_model(path)
    got = [layer.kernel.numpy() for layer in loaded.layers if hasattr(layer, "kernel")][:-1]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
        assert tfprune.check_m_by_n(g, 2, 4)
    assert len(report.rows) == len(want)


def test_block_pruning_refuses_a_conv_kernel_before_writing(tmp_path):
    path = saved(tmp_path, conv_model())
    before = path.read_bytes()
    with pytest.raises(ValueError, match="2-D weight"):
        tfprune.h5.prune_weights_file(path, 0.5, block_size=(1, 4), skip_output_layer=True)
    assert path.read_bytes() == before


@pytest.mark.parametrize("kwargs,error,message", [
    ({"block_size": (0, 4)}, ValueError, "Received: block_size=0"),
    ({"block_size": 4}, TypeError, "Received: block_size=4"),
    ({"block_size": (1, 4), "block_pooling_type": "MIN"}, ValueError, "block_pooling_type='MIN'"),
    ({"sparsity_m_by_n": (4, 4)}, ValueError, "sparsity_m_by_n=(4, 4)"),
    ({"sparsity_m_by_n": (2, 4), "granularity": "unit"}, ValueError, "granularity='weight'"),
    ({"round_to": 8}, ValueError, "Received: round_to=8, granularity='weight'"),
])
def test_bad_pattern_options_are_refused_before_reading(tmp_path, kwargs, error, message):
    path = saved(tmp_path, model())
    before = path.read_bytes()
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        tfprune.h5.prune_weights_file(path, 0.5, **kwargs)
    assert path.read_bytes() == before


@pytest.mark.slow
def test_cli_block_and_m_by_n_flags(tmp_path):
    path = saved(tmp_path, model())
    run = lambda *a: subprocess.run([sys.executable, "-m", "tfprune", "prune-h5", str(path), *a],
                                    capture_output=True, text=True, timeout=300)
    ok = run("--m-by-n", "2:4")
    assert ok.returncode == 0, ok.stderr
    bad = run("--block-size", "1-4", "--sparsity", "0.5")
    assert bad.returncode == 2 and "1-4" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    missing = run()
    assert missing.returncode == 2 and "--sparsity" in missing.stderr
    ok = run("--block-size", "4x1", "--sparsity", "0.75", "--block-pooling", "max")
    assert ok.returncode == 0, ok.stderr
