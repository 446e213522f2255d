"""Datasets of the paper's experiments: MNIST, Fashion-MNIST and the student-teacher toy task.

Image data are read from a data root in torchvision's layout::

    ROOT/MNIST/raw/train-images-idx3-ubyte.gz        (or the un-gzipped file)
    ROOT/FashionMNIST/raw/t10k-labels-idx1-ubyte.gz  ...

The root is the ``root`` argument, else the environment variable ``DFC_DATA``, else
``./data``. The IDX files are parsed here with gzip + NumPy (no torch). Gzipped files are
md5-checked against the published sums, an un-gzipped file against the md5 of the
decompressed published file (:data:`MD5_RAW`), so that corrupted pixels never load silently.

Preprocessing (``shared/spec/DFC_SPEC.md`` section 4):

- MNIST: pixels / 255, then standardised, :math:`x \\leftarrow (x - 0.1307) / 0.3081`;
- Fashion-MNIST: pixels / 255 only;
- every image flattened to 784 values; the MNIST autoencoder's targets are its inputs;
- the 60000 training images are split 55000 train / 5000 validation by a permutation drawn
  from ``numpy.random.default_rng(SPLIT_SEED)`` with ``SPLIT_SEED = 0``, the same for every
  run seed (the last 5000 indices of the permutation form the validation set).

Student-teacher regression (section 4, "Toy"): a random teacher of 4 hidden layers of 1000
ReLU units and a linear output, weights xavier-normal with gain 3, biases zero, inputs drawn
from :math:`U(-1, 1)^{n_{in}}`; 5000 / 1000 / 1000 train / validation / test samples; MSE.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfc_brian.model.mlp import feedforward
from dfc_brian.model.weights import Weights, xavier_normal

DATA_ENV = "DFC_DATA"  # environment variable naming the data root
SPLIT_SEED = 0  # seed of the fixed 55000/5000 train/validation permutation
N_VAL = 5000  # validation images taken from the 60000 training images

MNIST_MEAN = 0.1307  # mean of MNIST training pixels / 255
MNIST_STD = 0.3081  # std of MNIST training pixels / 255

#: torchvision folder name of each image dataset
FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}

#: file name -> md5 of the published gzipped IDX files (identical names for both datasets)
MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

#: file name -> md5 of the un-gzipped IDX files (computed from the published .gz files above)
MD5_RAW = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

#: (split, kind) -> file name stem
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
N_IMAGES = {"train": 60000, "test": 10000}

DATASETS = ("mnist", "fashion_mnist", "mnist_autoencoder", "student_teacher")

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(RuntimeError):
    """A dataset file is missing, corrupt or unreadable; the message names the file."""


# ---------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------


@dataclass
class Split:
    """One part of a dataset: inputs ``X`` (N, n_in) and targets ``y``.

    ``y`` is (N,) int64 class labels for classification, (N, n_out) float64 for regression.
    """

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def __iter__(self) -> Iterator[np.ndarray]:  # allows ``X, y = ds.train``
        return iter((self.X, self.y))


@dataclass
class Dataset:
    """Train / validation / test splits of one task.

    Attributes
    ----------
    name : str
        One of :data:`DATASETS`.
    task : str
        ``'classification'`` (y = int labels, metric = error in %) or ``'regression'``
        (y = float targets, metric = MSE averaged over samples and output units).
    train, val, test : Split
    n_in, n_out : int
        Input dimension and output dimension (number of classes for classification).
    meta : dict
        Provenance: data root, split seed, teacher seed, ...
    """

    name: str
    task: str
    train: Split
    val: Split
    test: Split
    n_in: int
    n_out: int
    meta: dict[str, Any] = field(default_factory=dict)


def batches(
    X: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterate over minibatches ``(X[idx], y[idx])``.

    Parameters
    ----------
    X, y : ndarray
        Inputs and targets with the same first dimension N.
    batch_size : int
        Samples per batch; the last batch holds the remaining ``N mod batch_size`` samples.
    rng : numpy.random.Generator, optional
        If given, the order is ``rng.permutation(N)`` (one draw per call); else in order.
    """
    n = int(X.shape[0])
    if y.shape[0] != n:
        raise ValueError(f"X has {n} samples but y has {y.shape[0]}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield X[idx], y[idx]


def n_batches(n: int, batch_size: int) -> int:
    """Number of minibatches :func:`batches` yields for ``n`` samples."""
    return -(-n // batch_size)


# ---------------------------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------------------------


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$DFC_DATA``, else ``./data``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path("data")


def md5sum(path: str | os.PathLike) -> str:
    """Hex md5 digest of a file."""
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an (un-gzipped) IDX file into an array.

    IDX format: two zero bytes, a type code (0x08 = uint8, ...), the number of dimensions d,
    then d big-endian uint32 sizes, then the data in C order.

    Raises
    ------
    DataError
        If the header is malformed or the payload size does not match.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{source}: not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"{source}: unknown IDX data type code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"{source}: IDX payload has {len(data) - header} bytes, header {shape} needs {expected} "
            "(file truncated or corrupt)"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzipped (detected by its magic bytes) or not."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read ({err})") from None
    return parse_idx(raw, source=str(path))


def write_idx(path: str | os.PathLike, arr: np.ndarray, compress: bool | None = None) -> Path:
    """Write a uint8 array as an IDX file (gzipped if ``compress`` or the name ends in .gz).

    Used by the tests to make tiny datasets; the inverse of :func:`read_idx`.
    """
    path = Path(path)
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    payload = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes() + arr.tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    return path


def _help(dataset: str, root: Path) -> str:
    folder = root / FOLDERS[dataset] / "raw"
    return (
        f"put the 4 {FOLDERS[dataset]} IDX files ({', '.join(MD5[dataset])}) into {folder} "
        f"(data root: --data-root, else ${DATA_ENV}, else ./data), or `pip install torchvision` and, "
        "with internet access, download them with download=True (CLI: dfc-brian check-data --download)"
    )


def raw_file(
    dataset: str, split: str, kind: str, root: str | os.PathLike | None = None, check_md5: bool = True
) -> Path:
    """Locate and verify one raw file; return its path.

    Looks for ``ROOT/<Folder>/raw/<name>.gz``, then the un-gzipped ``<name>``. Either is
    md5-checked (if ``check_md5``) against the published file or its decompressed content.

    Raises
    ------
    DataError
        Naming the missing or corrupt file, where to put it and how to download it.
    """
    if dataset not in FOLDERS:
        raise DataError(f"unknown image dataset {dataset!r}; choose one of {sorted(FOLDERS)}")
    root_p = data_root(root)
    stem = FILES[(split, kind)]
    folder = root_p / FOLDERS[dataset] / "raw"
    gz, plain = folder / f"{stem}.gz", folder / stem
    if gz.is_file():
        if check_md5:
            got = md5sum(gz)
            want = MD5[dataset][gz.name]
            if got != want:
                raise DataError(
                    f"{gz} is corrupt (md5 {got}, expected {want}); delete it and " + _help(dataset, root_p)
                )
        return gz
    if plain.is_file():
        if check_md5:
            got = md5sum(plain)
            want = MD5_RAW[dataset][plain.name]
            if got != want:
                raise DataError(
                    f"{plain} is corrupt (md5 {got}, expected {want} for the un-gzipped file); delete it and "
                    + _help(dataset, root_p)
                )
        return plain
    raise DataError(f"missing data file {gz} (or un-gzipped {plain.name}); " + _help(dataset, root_p))


def load_raw(
    dataset: str,
    split: str,
    root: str | os.PathLike | None = None,
    check_md5: bool = True,
    download: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of ``split`` ('train' or 'test').

    With ``download=True`` and torchvision importable, missing files are first fetched with
    ``torchvision.datasets.MNIST/FashionMNIST(root, download=True)`` (md5-checked by torchvision).
    """
    if download:
        fetch(dataset, root)
    paths = {kind: raw_file(dataset, split, kind, root, check_md5) for kind in ("images", "labels")}
    images, labels = read_idx(paths["images"]), read_idx(paths["labels"])
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
        raise DataError(f"{paths['images']}: unexpected shape {images.shape} (want (N, 28, 28))")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{paths['images']} has {images.shape[0]} images but {paths['labels']} has "
            f"{labels.shape[0]} labels"
        )
    if check_md5 and images.shape[0] != N_IMAGES[split]:
        raise DataError(f"{paths['images']}: {images.shape[0]} images, expected {N_IMAGES[split]}")
    return images.astype(np.uint8, copy=False), labels.astype(np.int64)


def fetch(dataset: str, root: str | os.PathLike | None = None) -> None:
    """Download ``dataset`` into the data root with torchvision (needs internet).

    Raises
    ------
    DataError
        If torchvision is not installed or the download fails.
    """
    if dataset not in FOLDERS:
        raise DataError(f"unknown image dataset {dataset!r}; choose one of {sorted(FOLDERS)}")
    root_p = data_root(root)
    try:
        import torchvision.datasets as tvd  # optional dependency
    except ImportError:
        raise DataError(
            f"cannot download {FOLDERS[dataset]}: torchvision is not installed (`pip install torchvision`); "
            + _help(dataset, root_p)
        ) from None
    cls = tvd.MNIST if dataset == "mnist" else tvd.FashionMNIST
    try:
        for train in (True, False):
            cls(str(root_p), train=train, download=True)
    except Exception as err:  # network errors, md5 failures inside torchvision
        raise DataError(f"download of {FOLDERS[dataset]} into {root_p} failed: {err}") from None


def check_files(root: str | os.PathLike | None = None) -> dict[str, str]:
    """Status of every raw file: ``{relative path: 'ok' | error message}``."""
    out = {}
    for dataset in FOLDERS:
        for split, kind in FILES:
            key = f"{FOLDERS[dataset]}/raw/{FILES[(split, kind)]}.gz"
            try:
                p = raw_file(dataset, split, kind, root, check_md5=True)
                if p.suffix != ".gz":  # un-gzipped: validate the header
                    read_idx(p)
                out[key] = "ok"
            except DataError as err:
                out[key] = str(err)
    return out


# ---------------------------------------------------------------------------------------------
# Preprocessed datasets
# ---------------------------------------------------------------------------------------------


def preprocess(images: np.ndarray, dataset: str) -> np.ndarray:
    """Flatten to (N, 784) float64; /255; MNIST also standardised with (0.1307, 0.3081)."""
    x = images.reshape(images.shape[0], -1).astype(np.float64) / 255.0
    if dataset in ("mnist", "mnist_autoencoder"):
        x = (x - MNIST_MEAN) / MNIST_STD
    return x


def split_indices(n: int, n_val: int = N_VAL, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train/validation indices: the last ``n_val`` of ``default_rng(seed).permutation(n)``."""
    if not 0 <= n_val < n:
        raise DataError(f"validation size {n_val} must be in [0, {n})")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n - n_val]), np.sort(perm[n - n_val :])


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    n_val: int = N_VAL,
    split_seed: int = SPLIT_SEED,
    check_md5: bool = True,
    download: bool = False,
) -> Dataset:
    """Load ``mnist``, ``fashion_mnist`` or ``mnist_autoencoder`` with the paper's preprocessing.

    Parameters
    ----------
    name : str
        Dataset name. ``mnist_autoencoder`` uses MNIST inputs as targets (regression).
    root : path, optional
        Data root (default: ``$DFC_DATA``, else ``./data``).
    n_val, split_seed : int
        Validation size and seed of the fixed split (defaults: 5000, 0).
    check_md5 : bool
        Verify the md5 of gzipped files and the standard image counts (disable for test files).
    download : bool
        Fetch missing files with torchvision first.
    """
    source = {"mnist": "mnist", "mnist_autoencoder": "mnist", "fashion_mnist": "fashion_mnist"}.get(name)
    if source is None:
        raise DataError(f"unknown image dataset {name!r}; choose mnist, fashion_mnist or mnist_autoencoder")
    img_tr, lab_tr = load_raw(source, "train", root, check_md5, download)
    img_te, lab_te = load_raw(source, "test", root, check_md5, False)
    x_tr, x_te = preprocess(img_tr, name), preprocess(img_te, name)
    i_tr, i_va = split_indices(x_tr.shape[0], n_val, split_seed)
    meta = {"root": str(data_root(root)), "split_seed": split_seed, "n_val": n_val}
    if name == "mnist_autoencoder":
        return Dataset(
            name,
            "regression",
            Split(x_tr[i_tr], x_tr[i_tr]),
            Split(x_tr[i_va], x_tr[i_va]),
            Split(x_te, x_te),
            784,
            784,
            meta,
        )
    return Dataset(
        name,
        "classification",
        Split(x_tr[i_tr], lab_tr[i_tr]),
        Split(x_tr[i_va], lab_tr[i_va]),
        Split(x_te, lab_te),
        784,
        10,
        meta,
    )


# ---------------------------------------------------------------------------------------------
# Student-teacher regression
# ---------------------------------------------------------------------------------------------

TEACHER_HIDDEN = (1000, 1000, 1000, 1000)  # 4 hidden ReLU layers of the teacher
TEACHER_GAIN = 3.0  # xavier-normal gain of the teacher's weights


def teacher_forward(W: list[np.ndarray], b: list[np.ndarray], X: np.ndarray) -> np.ndarray:
    """Teacher output: ReLU hidden layers, linear output layer; X (N, n_in) -> (N, n_out).

    The feedforward pass of :func:`dfc_brian.model.mlp.feedforward` (no feedback weights).
    """
    acts = ["relu"] * (len(W) - 1) + ["linear"]
    return feedforward(Weights(list(W), list(b), []), acts, X)[1][-1]


def student_teacher(
    n_in: int, n_out: int, seed: int, n_train: int = 5000, n_val: int = 1000, n_test: int = 1000
) -> Dataset:
    """Student-teacher regression data of the paper's toy experiments (spec section 4).

    The teacher (weights drawn first, layer by layer, from ``default_rng(seed)``) maps inputs
    :math:`x \\sim U(-1, 1)^{n_{in}}` (drawn next: train, then validation, then test) through
    4 hidden layers of 1000 ReLU units to a linear output. Weights are xavier-normal with
    gain 3, biases zero.

    Returns
    -------
    Dataset
        ``task='regression'``; ``meta['teacher_W']`` holds the teacher's weight matrices.
    """
    for nm, v in (
        ("n_in", n_in),
        ("n_out", n_out),
        ("n_train", n_train),
        ("n_val", n_val),
        ("n_test", n_test),
    ):
        if int(v) != v or v < 1:
            raise DataError(f"student_teacher: {nm} must be a positive integer, got {v!r}")
    rng = np.random.default_rng(seed)
    sizes = (n_in, *TEACHER_HIDDEN, n_out)
    W = [xavier_normal(rng, sizes[i + 1], sizes[i], gain=TEACHER_GAIN) for i in range(len(sizes) - 1)]
    b = [np.zeros(sizes[i + 1]) for i in range(len(sizes) - 1)]
    parts = []
    for n in (n_train, n_val, n_test):
        X = rng.uniform(-1.0, 1.0, size=(n, n_in))
        parts.append(Split(X, teacher_forward(W, b, X)))
    meta = {"teacher_seed": seed, "teacher_sizes": list(sizes), "teacher_W": W}
    return Dataset("student_teacher", "regression", *parts, n_in=n_in, n_out=n_out, meta=meta)
