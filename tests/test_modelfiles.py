"""`tfprune.modelfiles`: a saved-model file is judged by its bytes, and named."""

import keras
import pytest

from tfprune import modelfiles


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.save(d / "m.keras")
    model.save(d / "m.h5")
    return d


def test_real_keras_and_h5_files_pass_and_are_returned(saved):
    for name in ("m.keras", "m.h5"):
        assert modelfiles.check_saved_model(saved / name) == saved / name
        assert modelfiles.content_problem(saved / name) is None


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.99])
def test_a_truncated_keras_archive_is_not_valid_and_named(saved, tmp_path, cut):
    blob = (saved / "m.keras").read_bytes()
    bad = tmp_path / "cut.keras"
    bad.write_bytes(blob[: int(len(blob) * cut)])
    with pytest.raises(ValueError, match="not a valid .keras archive") as e:
        modelfiles.check_saved_model(bad)
    assert "cut.keras" in str(e.value) and "not found" not in str(e.value).lower()


def test_a_zip_without_config_json_is_not_a_keras_archive(tmp_path):
    import zipfile

    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="without config.json"):
        modelfiles.check_saved_model(path)


def test_a_text_h5_is_not_hdf5_and_an_hdf5_with_a_user_block_is(saved, tmp_path):
    text = tmp_path / "text.h5"
    text.write_text("not hdf5\n")
    with pytest.raises(ValueError, match="not an HDF5 file") as e:
        modelfiles.check_saved_model(text)
    assert "text.h5" in str(e.value)
    import h5py

    with h5py.File(tmp_path / "ub.h5", "w", userblock_size=512) as f:
        f["x"] = [1.0]
    assert modelfiles.content_problem(tmp_path / "ub.h5") is None  # signature at byte 512


@pytest.mark.parametrize("path,error,text", [
    (42, TypeError, "model=42"),
    ("missing.keras", FileNotFoundError, "missing.keras"),
    ("notes.txt", ValueError, "notes.txt"),
])
def test_wrong_arguments_are_named_errors(tmp_path, monkeypatch, path, error, text):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(error, match=text):
        modelfiles.check_saved_model(path)


def test_a_directory_is_refused(tmp_path):
    (tmp_path / "d.keras").mkdir()
    with pytest.raises(ValueError, match="not a directory"):
        modelfiles.check_saved_model(tmp_path / "d.keras")
