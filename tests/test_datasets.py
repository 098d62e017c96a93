import gzip

import numpy as np
import pytest

from tfprune import datasets


def small_arrays():
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 255, (6, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 6, dtype=np.uint8),
        "x_test": rng.integers(0, 255, (3, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 3, dtype=np.uint8),
    }


def write_idx(path, array, compress):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def check(result, arrays):
    (xt, yt), (xe, ye) = result
    for got, key in ((xt, "x_train"), (yt, "y_train"), (xe, "x_test"), (ye, "y_test")):
        np.testing.assert_array_equal(got, arrays[key])


def test_explicit_npz_path(tmp_path):
    arrays = small_arrays()
    np.savez(tmp_path / "mnist.npz", **arrays)
    check(datasets.load_mnist(tmp_path / "mnist.npz"), arrays)
    check(datasets.load_mnist(tmp_path), arrays)


def test_env_var_directory(tmp_path, monkeypatch):
    arrays = small_arrays()
    np.savez(tmp_path / "mnist.npz", **arrays)
    monkeypatch.setenv("TFPRUNE_DATA_DIR", str(tmp_path))
    check(datasets.load_mnist(), arrays)


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_idx_files_for_fashion_mnist(tmp_path, monkeypatch, compress):
    arrays = small_arrays()
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for key, stem in datasets._IDX.items():
        write_idx(folder / stem, arrays[key], compress)
    monkeypatch.setenv("TFPRUNE_DATA_DIR", str(tmp_path))
    check(datasets.load_fashion_mnist(), arrays)


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    arrays = small_arrays()
    for key, stem in datasets._IDX.items():
        write_idx(tmp_path / stem, arrays[key], False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes((tmp_path / "t10k-labels-idx1-ubyte").read_bytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        datasets.load_mnist(tmp_path)


def test_npz_in_wrong_layout_is_a_clear_error(tmp_path):
    np.savez(tmp_path / "mnist.npz", images=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        datasets.load_mnist(tmp_path / "mnist.npz")


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Received: path="):
        datasets.load_mnist(tmp_path / "nope.npz")


def test_offline_without_data_says_how_to_point_at_a_copy(tmp_path, monkeypatch):
    import keras

    def no_network():
        raise OSError("network is unreachable")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", no_network)
    monkeypatch.setenv("TFPRUNE_DATA_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="set TFPRUNE_DATA_DIR to a directory holding mnist.npz"):
        datasets.load_mnist()


def test_falls_back_to_keras_download_when_no_local_copy(monkeypatch):
    import keras

    arrays = small_arrays()
    monkeypatch.delenv("TFPRUNE_DATA_DIR", raising=False)
    monkeypatch.setattr(keras.datasets.mnist, "load_data",
                        lambda: ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])))
    check(datasets.load_mnist(), arrays)
