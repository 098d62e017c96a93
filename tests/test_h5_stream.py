"""`tfprune.h5.stream`: blocks cover a tensor in order within the budget; zeroing is
exact (+0.0, NaN and -0.0 included); counts read the bits right."""

import h5py
import io
import numpy as np
import pytest

from tfprune import masks
from tfprune.h5 import stream


@pytest.mark.parametrize("shape", [(5,), (7, 3), (3, 3, 4, 5), (2, 9, 1), (1, 1000)], ids=str)
@pytest.mark.parametrize("budget", [1, 4, 10, 10_000])
def test_blocks_are_consecutive_c_order_runs_within_budget(shape, budget, monkeypatch):
    monkeypatch.setattr(masks, "BLOCK_SIZE", budget)
    a = np.arange(int(np.prod(shape))).reshape(shape)
    for lead in range(len(shape) + 1):
        slab = int(np.prod(shape[lead:]))
        pieces = []
        for sel, block_shape in stream.blocks(shape, lead):
            piece = a[sel]
            assert piece.shape == block_shape and piece.size <= max(budget, slab)
            pieces.append(piece.reshape(-1))
        np.testing.assert_array_equal(np.concatenate(pieces), a.reshape(-1))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_zero_where_not_writes_plus_zero_over_anything(dtype):
    w = np.array([np.nan, -np.inf, -0.0, -1.5, 2.0, np.nan], dtype)
    keep = np.array([0, 0, 0, 0, 1, 1], np.int32)
    stream.zero_where_not(w, keep)
    assert np.array_equal(w[:4].view(f"u{w.itemsize}"), np.zeros(4, f"u{w.itemsize}"))  # +0.0
    assert w[4] == 2.0 and np.isnan(w[5])


def test_nonzeros_and_nonfinite_count_by_block(monkeypatch):
    monkeypatch.setattr(masks, "BLOCK_SIZE", 3)
    data = np.array([[0.0, -0.0, 1.0, np.nan], [np.inf, 2.0, -np.inf, 0.0]], np.float32)
    f = h5py.File(io.BytesIO(), "w")
    ds = f.create_dataset("w", data=data)
    scratch = masks.Scratch()
    assert stream.nonfinite(ds, scratch) == 3
    assert int(stream.nonzeros(data.copy(), scratch)) == 5  # NaN and inf are nonzero
    counts = stream.mask_dataset(ds, 1, np.array([1, 0, 1, 0], np.int32), True, scratch)
    assert counts.tolist() == [5, 3]
    np.testing.assert_array_equal(f["w"][()], [[0, 0, 1, 0], [np.inf, 0, -np.inf, 0]])
