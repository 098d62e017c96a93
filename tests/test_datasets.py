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


# --------------------------------------------------------------------------- CIFAR-10


def cifar_batches(directory, n=4):
    """The six python batches of CIFAR-10 (n images each), as keras extracts them."""
    import pickle

    rng = np.random.default_rng(1)
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = {}, {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 255, (n, 3072), dtype=np.uint8)
        lab = rng.integers(0, 10, n).tolist()
        (directory / name).write_bytes(pickle.dumps({b"data": data, b"labels": lab}))
        images[name], labels[name] = data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1), lab
    return images, labels


def test_cifar10_from_python_batches_in_the_data_dir(tmp_path, monkeypatch):
    images, labels = cifar_batches(tmp_path / "cifar-10-batches-py")
    monkeypatch.setenv("TFPRUNE_DATA_DIR", str(tmp_path))
    data = datasets.load_cifar10()
    (xt, yt), (xe, ye) = data
    assert data.name == "cifar10" and data.note == ""
    assert xt.shape == (20, 32, 32, 3) and xt.dtype == np.uint8 and yt.shape == (20,)
    np.testing.assert_array_equal(xt[4:8], images["data_batch_2"])
    np.testing.assert_array_equal(xe, images["test_batch"])
    np.testing.assert_array_equal(ye, labels["test_batch"])


def test_cifar10_from_the_tar_archive_and_from_npz(tmp_path):
    import tarfile

    images, _ = cifar_batches(tmp_path / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    (_, _), (xe, _) = datasets.load_cifar10(archive)
    np.testing.assert_array_equal(xe, images["test_batch"])
    arrays = small_arrays()
    np.savez(tmp_path / "cifar10.npz", **arrays)
    (xt, yt), _ = datasets.load_cifar10(tmp_path / "cifar10.npz")
    np.testing.assert_array_equal(xt, arrays["x_train"])


def test_cifar10_offline_falls_back_to_padded_mnist_and_says_so(tmp_path, monkeypatch):
    import keras

    arrays = small_arrays()
    np.savez(tmp_path / "mnist.npz", **arrays)
    monkeypatch.setenv("TFPRUNE_DATA_DIR", str(tmp_path))

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(RuntimeError, match="fallback='mnist'"):
        datasets.load_cifar10()
    with pytest.warns(UserWarning, match="NOT CIFAR-10"):
        data = datasets.load_cifar10(fallback="mnist")
    (xt, yt), (xe, ye) = data
    assert data.name == "mnist32x32x3" and "no network" in data.note
    assert xt.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(xt[:, 2:30, 2:30, 1], arrays["x_train"])
    assert (xt[:, :2] == 0).all() and (xt[:, 30:] == 0).all()
    np.testing.assert_array_equal(ye, arrays["y_test"])


def test_cifar10_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="Received: path="):
        datasets.load_cifar10(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="No CIFAR-10 data"):
        datasets.load_cifar10(tmp_path)
    with pytest.raises(ValueError, match="Argument `fallback`"):
        datasets.load_cifar10(fallback="random")
    (tmp_path / "broken.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(ValueError, match="as a tar archive"):
        datasets.load_cifar10(tmp_path / "broken.tar.gz")


def test_cifar10_without_download_falls_back_at_once(tmp_path, monkeypatch):
    import keras

    np.savez(tmp_path / "mnist.npz", **small_arrays())
    monkeypatch.setenv("TFPRUNE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: pytest.fail("downloaded"))
    with pytest.raises(RuntimeError, match="download=False"):
        datasets.load_cifar10(download=False)
    with pytest.warns(UserWarning, match="download=False"):
        assert datasets.load_cifar10(fallback="mnist", download=False).name == "mnist32x32x3"
