"""tfprune.export.to_tflite: weights kept, encodings chosen safely, files verified.

Outputs are checked with an interpreter run here (tests/export_util.run_file),
not only through the report's own verification."""

import os

import keras
import numpy as np
import pytest

import tfprune
from tests import export_util as U
from tests.helpers import every_step, fit
from tfprune.export import convert as convert_mod
from tfprune.export import flatbuffer, rules, to_tflite


def _pruned_mlp(rng, sparsity=0.9, inputs=64, hidden=(32,), classes=10):
    model = U.mlp(inputs, hidden, classes)
    pruned = tfprune.prune_low_magnitude(model, every_step(sparsity))
    x = rng.standard_normal((32, inputs)).astype("float32")
    fit(pruned, x, rng.standard_normal((32, classes)).astype("float32"), steps=2)
    return pruned, x


def _kept_zeros(n, sparsity):
    return n - max(round(n * (1 - sparsity)), 1)


def test_pruned_sequential_exports_with_exact_zeros_and_keras_outputs(tmp_path, rng):
    pruned, x = _pruned_mlp(rng)
    report = to_tflite(pruned, tmp_path / "m.tflite")
    stripped = tfprune.strip_pruning(pruned)
    out = U.run_file(tmp_path / "m.tflite", x)[0]
    np.testing.assert_allclose(out, stripped(x).numpy(), atol=1e-5)
    zeros = sorted(r.zeros for r in report.tensors if len(r.shape) == 2)
    assert zeros == sorted(_kept_zeros(n, 0.9) for n in (64 * 32, 32 * 10))
    assert report.size == os.path.getsize(tmp_path / "m.tflite") < report.dense_size
    assert report.encoded_sparse and report.verification.max_abs_diff < 1e-5
    assert report.verification.top1_agreement == 1.0
    assert pruned.layers[0].__class__.__name__ == "PruneLowMagnitude"  # input untouched


def test_pruned_functional_model_with_two_named_inputs(tmp_path, rng):
    a = keras.Input((16,), name="left")
    b = keras.Input((8,), name="right")
    h = keras.layers.Dense(24, activation="relu")(keras.layers.Concatenate()([a, b]))
    model = keras.Model([a, b], [keras.layers.Dense(4)(h), keras.layers.Dense(2)(b)])
    pruned = tfprune.prune_low_magnitude(model, every_step(0.8))
    xa, xb = (rng.standard_normal((16, n)).astype("float32") for n in (16, 8))
    for layer in pruned.layers:  # set masks by hand: 80% of each kernel zero
        if type(layer).__name__ == "PruneLowMagnitude":
            k = layer.layer.kernel
            k.assign(U.zero_blocks(k.numpy(), (1, 1), 0.8, rng))
    report = to_tflite(pruned, tmp_path / "f.tflite", sample_inputs={"left": xa, "right": xb})
    ref = tfprune.strip_pruning(pruned)([xa, xb])
    out = U.run_file(tmp_path / "f.tflite", [xa, xb])  # signature order: left, right
    for o, r in zip(out, ref):
        np.testing.assert_allclose(o, r.numpy(), atol=1e-5)
    assert report.verification.samples == 16


class TinyNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.d1 = keras.layers.Dense(48, activation="relu")
        self.d2 = keras.layers.Dense(10)

    def call(self, x, training=None):
        return self.d2(self.d1(x))


def test_pruned_subclassed_model_exports_without_being_modified(tmp_path, rng):
    net = TinyNet()
    x = rng.standard_normal((32, 64)).astype("float32")
    net(x)
    pruned = tfprune.prune_low_magnitude(net, every_step(0.9))
    fit(pruned, x, rng.standard_normal((32, 10)).astype("float32"), steps=2)
    report = to_tflite(pruned, tmp_path / "s.tflite")
    np.testing.assert_allclose(U.run_file(tmp_path / "s.tflite", x)[0], pruned(x).numpy(),
                               atol=1e-5)
    assert type(pruned.d1).__name__ == "PruneLowMagnitude"
    assert sorted(r.zeros for r in report.tensors) == sorted(
        _kept_zeros(n, 0.9) for n in (64 * 48, 48 * 10))


def test_block_sparse_dense_layers_run_the_sparse_kernel(tmp_path, rng):
    model = U.block_prune(U.mlp(64, (48,), 8), (4, 1), 0.9, rng)
    report = to_tflite(model, tmp_path / "b.tflite")
    assert set(report.encodings.values()) == {"block 1x4"}
    assert [o.op for o in report.sparse_ops] == ["FULLY_CONNECTED"] * 2
    assert not report.densified_ops


def test_inspect_finds_the_encodings_the_report_claims(tmp_path, rng):
    model = U.mlp(64, (48, 32), 8)
    U.block_prune(model, (4, 1), 0.9, rng, layers=[model.layers[0]])
    U.block_prune(model, (1, 1), 0.8, rng, layers=[model.layers[1]])
    report = to_tflite(model, tmp_path / "m.tflite")
    found = tfprune.export.inspect(tmp_path / "m.tflite")
    assert found.encodings == report.encodings
    assert sorted(report.encodings.values()) == ["CSR", "block 1x4", "dense"]
    # Read the file again with the raw schema classes: sparsity fields and DENSIFY ops.
    s = flatbuffer.schema()
    m = s.Model.GetRootAs(open(tmp_path / "m.tflite", "rb").read(), 0)
    g = m.Subgraphs(0)
    raw = {}
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        if t.ShapeLength() == 2 and m.Buffers(t.Buffer()).DataLength():
            sp = t.Sparsity()
            raw[tuple(t.ShapeAsNumpy())] = "dense" if sp is None else \
                "block" if sp.BlockMapLength() else "CSR"
    assert raw == {(48, 64): "block", (32, 48): "CSR", (8, 32): "dense"}
    codes = [m.OperatorCodes(g.Operators(i).OpcodeIndex()).BuiltinCode()
             for i in range(g.OperatorsLength())]
    assert codes.count(s.BuiltinOperator.DENSIFY) == 1 == len(report.densified_ops)


@pytest.mark.slow
def test_sparse_file_is_never_larger_than_dense(tmp_path, rng):
    """int8 CSR at 35% zeros is larger than int8 dense: sparse=True falls back."""
    model = U.block_prune(U.mlp(64, (48,), 8), (1, 1), 0.35, rng)
    x = rng.standard_normal((32, 64)).astype("float32")
    forced = to_tflite(model, tmp_path / "t.tflite", sparse=True, quantize="int8",
                       representative_data=x, xnnpack=False)
    assert forced.size <= forced.dense_size and not forced.encoded_sparse
    assert any("not smaller" in w for w in forced.warnings)
    auto = to_tflite(model, tmp_path / "a.tflite", quantize="int8", representative_data=x,
                     xnnpack=False)
    assert auto.size == auto.dense_size
    assert all("bytes, dense" in d.reason for d in auto.decisions)


def test_float_csr_below_break_even_is_stored_dense(tmp_path, rng):
    """31% zeros, 300 columns: 69% x (4 value + 2 index) bytes > 4 dense bytes."""
    model = U.block_prune(U.mlp(300, (), 48), (1, 1), 0.31, rng)
    report = to_tflite(model, tmp_path / "t.tflite")
    assert report.decisions and all(d.action == "stored dense" for d in report.decisions)
    assert report.size == report.dense_size


@pytest.mark.slow
def test_float16_blocks_are_stored_csr_and_float16_csr_kept(tmp_path, rng):
    model = U.mlp(64, (48,), 8)
    U.block_prune(model, (4, 1), 0.9, rng, layers=[model.layers[0]])
    U.block_prune(model, (1, 1), 0.9, rng, layers=[model.layers[1]])
    report = to_tflite(model, tmp_path / "h.tflite", quantize="float16")
    actions = {d.encoding: (d.action, d.reason) for d in report.decisions}
    assert actions["block 1x4"][0] == "stored as CSR" and "float16" in actions["block 1x4"][1]
    assert actions["CSR"][0] == "kept sparse"
    x = rng.standard_normal((4, 64)).astype("float32")
    np.testing.assert_allclose(U.run_file(tmp_path / "h.tflite", x)[0], model(x).numpy(),
                               atol=1e-2)
    assert sorted(report.encodings.values()) == ["CSR", "CSR"]
    assert len(report.densified_ops) == 2 and report.size < report.dense_size
    fm = flatbuffer.read(tmp_path / "h.tflite")
    kernels = {tuple(l.kernel.shape)[::-1]: l.kernel.numpy().T for l in model.layers}
    for t in fm.constants():
        if len(t.shape) == 2:  # the re-encoded CSR holds exactly the float16 weights
            np.testing.assert_array_equal(fm.dense_values(t),
                                          kernels[t.shape].astype(np.float16))
    builtin = to_tflite(model, tmp_path / "b.tflite", quantize="float16", xnnpack=False)
    assert not builtin.encoded_sparse  # float16 DENSIFY runs every inference there


@pytest.mark.slow
def test_int8_csr_is_stored_dense_for_xnnpack_and_kept_without_it(tmp_path, rng):
    model = U.block_prune(U.mlp(64, (48,), 8), (1, 1), 0.9, rng)
    x = rng.standard_normal((32, 64)).astype("float32")
    report = to_tflite(model, tmp_path / "x.tflite", quantize="int8", representative_data=x)
    assert not report.encoded_sparse
    assert all("XNNPACK" in d.reason for d in report.decisions)
    U.run_file(tmp_path / "x.tflite", x[:2])  # loads under the default delegate
    builtin = to_tflite(model, tmp_path / "b.tflite", quantize="int8", representative_data=x,
                        xnnpack=False)
    assert set(builtin.encodings.values()) == {"CSR"} and builtin.size < builtin.dense_size


def test_int8_blocks_keep_the_sparse_kernel_and_every_pruned_zero(tmp_path, rng):
    model = U.block_prune(U.mlp(64, (48,), 8), (16, 1), 0.75, rng)
    x = rng.standard_normal((64, 64)).astype("float32")
    report = to_tflite(model, tmp_path / "q.tflite", quantize="int8", representative_data=x)
    assert set(report.encodings.values()) == {"block 1x16"}
    assert len(report.sparse_ops) == 2
    fm = flatbuffer.read(tmp_path / "q.tflite")
    kernels = {tuple(l.kernel.shape)[::-1]: l.kernel.numpy().T for l in model.layers}
    for t in fm.constants():
        if len(t.shape) == 2:
            assert np.all(fm.dense_values(t)[kernels[t.shape] == 0] == 0)
    assert report.verification.tolerance is None  # reported, not enforced
    assert any("outside XNNPACK" in w for w in report.warnings)
    assert report.verification.top1_agreement >= 0.8


def test_int8_needs_representative_data(tmp_path):
    with pytest.raises(ValueError, match="representative_data"):
        to_tflite(U.mlp(), tmp_path / "q.tflite", quantize="int8")
    assert not (tmp_path / "q.tflite").exists()


@pytest.mark.slow
def test_dynamic_range_sparse_is_refused_or_stored_dense(tmp_path, rng):
    model = U.block_prune(U.mlp(64, (48,), 8), (16, 1), 0.9, rng)
    with pytest.raises(ValueError, match='quantize="int8"'):
        to_tflite(model, tmp_path / "d.tflite", quantize="dynamic", sparse=True)
    auto = to_tflite(model, tmp_path / "d.tflite", quantize="dynamic")
    assert not auto.encoded_sparse and all("XNNPACK" in d.reason for d in auto.decisions)
    builtin = to_tflite(model, tmp_path / "b.tflite", quantize="dynamic", xnnpack=False)
    # the 8x48 output weight is under 1024 elements: dynamic-range keeps it float32
    assert sorted(builtin.encodings.values()) == ["block 1x16", "block 1x4"]
    x = rng.standard_normal((4, 64)).astype("float32")
    dense = U.run_file(tmp_path / "d.tflite", x, xnnpack=False)[0]
    np.testing.assert_allclose(U.run_file(tmp_path / "b.tflite", x, xnnpack=False)[0], dense,
                               atol=0.05 * np.abs(dense).max())


def test_hybrid_ledger_overflow_is_stored_dense(tmp_path, rng):
    model = U.block_prune(U.mlp(8192, (), 8), (16, 1), 0.9, rng)
    report = to_tflite(model, tmp_path / "h.tflite", quantize="dynamic", xnnpack=False,
                       verify=False)
    assert [d.action for d in report.decisions] == ["stored dense"]
    assert "uint8" in report.decisions[0].reason


def test_lost_partial_block_is_stored_dense_even_without_verification(tmp_path, rng):
    model = U.block_prune(U.mlp(66, (), 16), (4, 1), 0.9, rng)
    kernel = model.layers[0].kernel.numpy()
    kernel[64:, 0] = 1.0
    model.layers[0].kernel.assign(kernel)
    report = to_tflite(model, tmp_path / "p.tflite", verify=False)
    assert "partial last block" in report.decisions[0].reason
    x = rng.standard_normal((4, 66)).astype("float32")
    np.testing.assert_allclose(U.run_file(tmp_path / "p.tflite", x)[0], model(x).numpy(),
                               atol=1e-5)


def test_a_sparse_file_that_disagrees_with_the_dense_file_is_replaced(tmp_path, rng,
                                                                      monkeypatch):
    """With the rules switched off, verification alone catches dynamic + blocks."""
    monkeypatch.setattr(rules, "tensor_hazards", lambda fm, t: [])
    model = U.block_prune(U.mlp(256, (64,), 8), (16, 1), 0.9, rng)
    report = to_tflite(model, tmp_path / "d.tflite", quantize="dynamic")
    assert not report.encoded_sparse
    assert any("failed verification" in w for w in report.warnings)


def test_float_export_far_from_keras_raises_and_keeps_the_old_file(tmp_path, rng,
                                                                   monkeypatch):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"old")
    real = convert_mod._keras_outputs
    monkeypatch.setattr(convert_mod, "_keras_outputs",
                        lambda m, a: [o + 1.0 for o in real(m, a)])
    with pytest.raises(RuntimeError, match="differ from Keras"):
        to_tflite(U.mlp(), target)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.tflite"]


def test_shrink_exports_the_narrower_model_with_masked_outputs(tmp_path, rng):
    model = U.mlp(64, (48,), 10)
    kernel, bias = model.layers[0].get_weights()
    keep = tfprune.masks.select_np([tfprune.masks.unit_scores_np(kernel, (48,))], 0.5)[0]
    model.layers[0].set_weights([kernel * keep, bias * keep])
    report = to_tflite(model, tmp_path / "s.tflite", shrink=True)
    x = rng.standard_normal((8, 64)).astype("float32")
    np.testing.assert_allclose(U.run_file(tmp_path / "s.tflite", x)[0], model(x).numpy(),
                               atol=1e-5)
    assert sorted(r.shape for r in report.tensors) == [(10, 24), (24, 64)]
    assert report.shrink is not None


def test_argument_errors_follow_keras_form(tmp_path):
    model = U.mlp()
    with pytest.raises(ValueError, match=r"Argument `sparse` must be .* Received: sparse='yes'"):
        to_tflite(model, tmp_path / "m.tflite", sparse="yes")
    with pytest.raises(ValueError, match="Received: quantize='int4'"):
        to_tflite(model, tmp_path / "m.tflite", quantize="int4")
    with pytest.raises(TypeError, match="Argument `model` must be a Keras model"):
        to_tflite("model.keras", tmp_path / "m.tflite")
    with pytest.raises(TypeError, match="Argument `verify`"):
        to_tflite(model, tmp_path / "m.tflite", verify="yes")
    with pytest.raises(FileNotFoundError, match="directory"):
        to_tflite(model, tmp_path / "missing" / "m.tflite")
    assert os.listdir(tmp_path) == []


def test_other_backends_get_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError, match="needs the TensorFlow backend.*'jax'"):
        to_tflite(U.mlp(), tmp_path / "m.tflite")


def test_keras_quantized_models_are_refused_with_the_alternative(tmp_path):
    model = U.mlp()
    model.quantize("int8")
    with pytest.raises(ValueError, match='quantize="int8"'):
        to_tflite(model, tmp_path / "m.tflite")


def test_keras_int8_quantization_of_a_stripped_pruned_model_keeps_its_zeros(tmp_path, rng):
    pruned, x = _pruned_mlp(rng, 0.9)
    stripped = tfprune.strip_pruning(pruned)
    ref = stripped(x).numpy()
    float_path, int8_path = tmp_path / "f.keras", tmp_path / "q.keras"
    stripped.save(float_path)
    zeros = [l.kernel.numpy() == 0 for l in stripped.layers]
    stripped.quantize("int8")
    for layer, z in zip(stripped.layers, zeros):
        q = keras.ops.convert_to_numpy(layer._kernel)
        assert q.dtype == np.int8
        np.testing.assert_array_equal(q[z], 0)
        assert np.count_nonzero(q == 0) >= z.sum()
    assert np.abs(stripped(x).numpy() - ref).max() < 0.05 * max(1, np.abs(ref).max())
    stripped.save(int8_path)
    assert os.path.getsize(int8_path) < os.path.getsize(float_path)


def test_read_only_target_is_refused_before_converting(tmp_path):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"old")
    target.chmod(0o444)
    with pytest.raises(PermissionError, match="read-only"):
        to_tflite(U.mlp(), target)
    assert target.read_bytes() == b"old"


def test_an_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        to_tflite(U.mlp(), target, verify=False)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.tflite"]
