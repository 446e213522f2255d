"""Tests of dfc_brian.experiments.data on tiny IDX files written here (no real data needed)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from dfc_brian.experiments import data as D
from dfc_brian.experiments.data import DataError

N_TRAIN, N_TEST = 40, 12  # tiny stand-ins for 60000 / 10000


def write_tiny(root: Path, folder: str = "MNIST", gz: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    """Write the 4 raw files of a tiny dataset; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        D.write_idx(root / folder / "raw" / (name + (".gz" if gz else "")), arr)
    return arrays


# --- IDX parser ------------------------------------------------------------------------------


def test_idx_roundtrip_gz_and_plain(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a.idx.gz", "a.idx"):
        p = D.write_idx(tmp_path / name, a)
        b = D.read_idx(p)
        assert b.dtype == np.uint8 and b.shape == (2, 3, 4)
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "a.idx.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_idx_header_is_big_endian_and_exact():
    payload = bytes([0, 0, 0x08, 2]) + (3).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(range(6))
    np.testing.assert_array_equal(D.parse_idx(payload), [[0, 1], [2, 3], [4, 5]])
    i32 = (
        bytes([0, 0, 0x0C, 1])
        + (2).to_bytes(4, "big")
        + (7).to_bytes(4, "big")
        + (-1).to_bytes(4, "big", signed=True)
    )
    np.testing.assert_array_equal(D.parse_idx(i32), [7, -1])


@pytest.mark.parametrize(
    "payload, msg",
    [
        (b"\x01\x00\x08\x01", "magic"),
        (bytes([0, 0, 0x42, 1]) + bytes(4), "type code"),
        (bytes([0, 0, 0x08, 1]) + (5).to_bytes(4, "big") + bytes(3), "truncated or corrupt"),
    ],
)
def test_idx_bad_files(payload, msg):
    with pytest.raises(DataError, match=msg):
        D.parse_idx(payload, source="x.idx")


# --- loading, preprocessing, split -----------------------------------------------------------


def test_load_tiny_mnist_preprocessing_and_split(tmp_path):
    arrays = write_tiny(tmp_path)
    ds = D.load_dataset("mnist", tmp_path, n_val=10, check_md5=False)
    assert ds.task == "classification" and (ds.n_in, ds.n_out) == (784, 10)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (30, 10, N_TEST)
    assert ds.train.X.shape == (30, 784) and ds.train.X.dtype == np.float64
    assert ds.train.y.dtype == np.int64
    # test images are not shuffled: exact preprocessing of the written pixels
    raw = arrays["t10k-images-idx3-ubyte"].reshape(N_TEST, 784)
    np.testing.assert_allclose(ds.test.X, (raw / 255.0 - 0.1307) / 0.3081, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(ds.test.y, arrays["t10k-labels-idx1-ubyte"])
    # the split is a partition of the training images, fixed by SPLIT_SEED
    i_tr, i_va = D.split_indices(N_TRAIN, 10, D.SPLIT_SEED)
    assert len(np.intersect1d(i_tr, i_va)) == 0 and len(np.union1d(i_tr, i_va)) == N_TRAIN
    x_all = (arrays["train-images-idx3-ubyte"].reshape(N_TRAIN, 784) / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(ds.val.X, x_all[i_va], atol=1e-15)
    np.testing.assert_array_equal(ds.train.y, arrays["train-labels-idx1-ubyte"][i_tr])
    # deterministic; another split seed gives another split
    ds2 = D.load_dataset("mnist", tmp_path, n_val=10, check_md5=False)
    np.testing.assert_array_equal(ds.val.X, ds2.val.X)
    ds3 = D.load_dataset("mnist", tmp_path, n_val=10, split_seed=1, check_md5=False)
    assert not np.array_equal(ds.val.y, ds3.val.y) or not np.array_equal(ds.val.X, ds3.val.X)


def test_fashion_is_only_scaled_and_autoencoder_targets_are_inputs(tmp_path):
    arrays = write_tiny(tmp_path, "FashionMNIST", gz=False)  # un-gzipped files are accepted too
    write_tiny(tmp_path, "MNIST")
    fm = D.load_dataset("fashion_mnist", tmp_path, n_val=10, check_md5=False)
    np.testing.assert_allclose(fm.test.X, arrays["t10k-images-idx3-ubyte"].reshape(N_TEST, 784) / 255.0)
    assert fm.test.X.min() >= 0 and fm.test.X.max() <= 1
    ae = D.load_dataset("mnist_autoencoder", tmp_path, n_val=10, check_md5=False)
    assert ae.task == "regression" and ae.n_out == 784
    for part in (ae.train, ae.val, ae.test):
        np.testing.assert_array_equal(part.X, part.y)


def test_preprocess_numbers():
    img = np.array([[[0, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(D.preprocess(img, "mnist"), [[-0.1307 / 0.3081, (1 - 0.1307) / 0.3081]])
    np.testing.assert_allclose(D.preprocess(img, "fashion_mnist"), [[0.0, 1.0]])


def test_corrupt_real_name_file_gives_clear_error(tmp_path):
    write_tiny(tmp_path)  # right names, wrong content for the published md5 sums
    with pytest.raises(DataError) as exc:
        D.load_dataset("mnist", tmp_path)  # check_md5=True
    msg = str(exc.value)
    assert "train-images-idx3-ubyte.gz" in msg and "corrupt" in msg and "md5" in msg
    assert str(tmp_path / "MNIST" / "raw") in msg and "pip install torchvision" in msg


def test_missing_file_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path / "elsewhere"))
    assert D.data_root() == tmp_path / "elsewhere"
    with pytest.raises(DataError) as exc:
        D.load_dataset("fashion_mnist")
    msg = str(exc.value)
    assert "missing" in msg and str(tmp_path / "elsewhere" / "FashionMNIST" / "raw") in msg
    assert "pip install torchvision" in msg and "DFC_DATA" in msg
    monkeypatch.delenv(D.DATA_ENV)
    assert D.data_root() == Path("data")


def test_md5_check_and_check_files(tmp_path):
    p = D.write_idx(tmp_path / "x.gz", np.zeros((2, 2), np.uint8))
    import hashlib

    assert D.md5sum(p) == hashlib.md5(p.read_bytes()).hexdigest()
    status = D.check_files(tmp_path)
    assert len(status) == 8 and all("missing" in v for v in status.values())


def test_download_without_torchvision_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name.startswith("torchvision"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(DataError, match="pip install torchvision"):
        D.load_dataset("mnist", tmp_path, download=True)


# --- batches ---------------------------------------------------------------------------------


def test_batches_cover_and_are_seeded():
    X = np.arange(10.0)[:, None]
    y = np.arange(10)
    bs = list(D.batches(X, y, 4, np.random.default_rng(3)))
    assert [len(b[0]) for b in bs] == [4, 4, 2] and D.n_batches(10, 4) == 3
    assert sorted(np.concatenate([b[1] for b in bs]).tolist()) == list(range(10))
    for xb, yb in bs:
        np.testing.assert_array_equal(xb[:, 0], yb)
    again = list(D.batches(X, y, 4, np.random.default_rng(3)))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(bs, again, strict=True))
    ordered = np.concatenate([b[1] for b in D.batches(X, y, 3)])
    np.testing.assert_array_equal(ordered, y)


# --- student-teacher -------------------------------------------------------------------------


def test_student_teacher_shapes_and_determinism():
    ds = D.student_teacher(15, 5, seed=3, n_train=50, n_val=20, n_test=10)
    assert ds.task == "regression" and (ds.n_in, ds.n_out) == (15, 5)
    assert ds.train.X.shape == (50, 15) and ds.train.y.shape == (50, 5)
    assert ds.val.X.shape == (20, 15) and ds.test.y.shape == (10, 5)
    assert ds.train.X.min() >= -1 and ds.train.X.max() <= 1
    assert ds.meta["teacher_sizes"] == [15, 1000, 1000, 1000, 1000, 5]
    W = ds.meta["teacher_W"]
    # xavier normal, gain 3: std = 3 sqrt(2 / (fan_in + fan_out))
    assert W[1].std() == pytest.approx(3 * np.sqrt(2 / 2000), rel=0.01)
    h = ds.test.X  # independent rendering: 4 ReLU layers, linear output, zero biases
    for w in W[:-1]:
        h = np.where(h @ w.T > 0, h @ w.T, 0.0)
    np.testing.assert_allclose(ds.test.y, h @ W[-1].T, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(
        ds.test.y, D.teacher_forward(W, [np.zeros(w.shape[0]) for w in W], ds.test.X)
    )
    same = D.student_teacher(15, 5, seed=3, n_train=50, n_val=20, n_test=10)
    for a, b in ((ds.train, same.train), (ds.val, same.val), (ds.test, same.test)):
        np.testing.assert_array_equal(a.X, b.X)
        np.testing.assert_array_equal(a.y, b.y)
    other = D.student_teacher(15, 5, seed=4, n_train=50, n_val=20, n_test=10)
    assert not np.allclose(ds.train.y, other.train.y)
    assert np.std(ds.train.y) > 0.1  # a non-trivial target function
    X, y = ds.train  # unpacking a Split
    assert X is ds.train.X and y is ds.train.y


def test_student_teacher_default_sizes():
    ds = D.student_teacher(3, 1, seed=0)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (5000, 1000, 1000)


# --- the real files, when present ------------------------------------------------------------

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="real datasets not present")
def test_real_mnist_sanity():
    images, labels = D.load_raw("mnist", "train", SHARED)  # md5-checked
    assert images.shape == (60000, 28, 28) and labels[0] == 5
    assert abs(images.mean() / 255.0 - 0.1307) < 1e-4
    ds = D.load_dataset("mnist", SHARED)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (55000, 5000, 10000)


@pytest.mark.skipif(not (SHARED / "FashionMNIST" / "raw").is_dir(), reason="real datasets not present")
def test_real_fashion_first_label():
    _, labels = D.load_raw("fashion_mnist", "test", SHARED)
    assert labels.shape == (10000,)
    with gzip.open(SHARED / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte.gz") as fh:
        assert fh.read(9)[8] == 9
