"""Training loop of the paper's experiments, with exact resume.

One run = one config + one seed:

1. feedback pre-training: ``training.epochs_fb`` epochs of ``method.pretrain_feedback_step(X)``
   per minibatch (skipped for BP, DFA and fixed Q, whose feedback is not learned);
2. ``training.epochs`` epochs of ``method.train_step(X, y)`` per minibatch; with
   ``training.extra_sleep_mode: epoch`` (the authors' order, learned Q only) each epoch is one
   sleep-only epoch of ``method.feedback_step(X)`` over every minibatch, then the forward epoch
   (``train_step`` does not sleep in this mode), then ``training.extra_sleep`` more sleep-only
   epochs; every pass draws its own minibatch order from the loop's generator. With
   ``minibatch`` the sleep phases live inside ``train_step``;
3. after every epoch: training loss, validation and test metric (classification: error in %,
   regression and autoencoder: MSE averaged over samples and output units), then a checkpoint.
   The history row also holds the means of the step dicts (``step/...``, ``sleep/...``) and
   ``step/n_nonconverged_epoch``, the number of samples of the epoch that failed the
   convergence test (DFC and DFC-SS).

The number the paper reports is the test metric at the epoch of best validation metric
(``data.report: test_at_best_val``, the default); the "MNIST train loss" column reports the
training loss of the last epoch as the authors' code measures it (``data.report:
final_train_loss``): the mean over the epoch's minibatches of each minibatch's mean cross-entropy,
taken on the feedforward pass *before* that minibatch's update (history key ``step/loss``; the
authors' ``loss_train_last``). Their code never evaluates the trained model on the training set;
the evaluated loss over the 55000 images after the epoch (``train_loss``) is kept in the summary as
``final_train_loss_evaluated``.

Minibatch order comes from one NumPy generator seeded with ``[seed, 1]`` whose state is in the
checkpoint, as are the method's state (``method.state_dict()``), the epoch counters and the
history. ``resume=True`` therefore continues a killed run to the identical final result.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dfc_brian.config import check_numeric_types
from dfc_brian.engines.methods import Method, learns_feedback, validate_training
from dfc_brian.experiments.data import (
    DATASETS,
    Dataset,
    batches,
    load_dataset,
    n_batches,
    student_teacher,
)
from dfc_brian.experiments.guards import ConvergenceMonitor, guarded_step, locked_run_dir
from dfc_brian.experiments.results import (
    CHECKPOINT,
    RESULTS_JSON,
    array_json,
    json_array,
    load_checkpoint,
    run_metadata,
    save_checkpoint,
    save_results,
)
from dfc_brian.model.params import ConfigError, ModelParams, check_int

REPORTS = ("test_at_best_val", "final_train_loss")
EVAL_CHUNK = 2000  # samples per predict() call during evaluation

_DATA_KEYS = {
    "dataset",
    "n_val",
    "split_seed",
    "check_md5",
    "download",
    "report",  # image datasets
    "n_in",
    "n_out",
    "n_train",
    "n_test",
    "teacher_seed",  # student_teacher
}


MethodFactory = Callable[[dict, int], Method]


# ---------------------------------------------------------------------------------------------
# Config validation
# ---------------------------------------------------------------------------------------------


def validate_data(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``cfg['data']``; return it with defaults filled in. Raises ConfigError naming the field."""
    d = cfg.get("data")
    if not isinstance(d, Mapping):
        raise ConfigError("config is missing the required section 'data' (a mapping)")
    unknown = sorted(set(d) - _DATA_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) in section 'data': {unknown}; known keys: {sorted(_DATA_KEYS)}")
    name = d.get("dataset")
    if name not in DATASETS:
        raise ConfigError(f"data.dataset = {name!r} is unknown; choose one of {DATASETS}")
    out = dict(d)
    out["report"] = d.get("report", "test_at_best_val")
    if out["report"] not in REPORTS:
        raise ConfigError(f"data.report = {out['report']!r} is unknown; choose one of {REPORTS}")
    if name == "student_teacher":
        for key in ("n_in", "n_out"):
            if key not in d:
                raise ConfigError(f"config is missing the required key 'data.{key}' for student_teacher")
            out[key] = check_int(f"data.{key}", d[key], 1)
        out["n_train"] = check_int("data.n_train", d.get("n_train", 5000), 1)
        out["n_val"] = check_int("data.n_val", d.get("n_val", 1000), 1)
        out["n_test"] = check_int("data.n_test", d.get("n_test", 1000), 1)
        if d.get("teacher_seed") is not None:
            out["teacher_seed"] = check_int("data.teacher_seed", d["teacher_seed"], 0)
    else:
        for key in ("n_in", "n_out", "n_train", "n_test", "teacher_seed"):
            if key in d:
                raise ConfigError(f"data.{key} applies to student_teacher only, not to {name}")
        out["n_val"] = check_int("data.n_val", d.get("n_val", 5000), 0)
        out["split_seed"] = check_int("data.split_seed", d.get("split_seed", 0), 0)
        for key, default in (("check_md5", True), ("download", False)):
            out[key] = d.get(key, default)
            if not isinstance(out[key], bool):
                raise ConfigError(f"data.{key} must be true or false, got {out[key]!r}")
    return out


def load_task(cfg: Mapping[str, Any], seed: int, data_root: str | Path | None = None) -> Dataset:
    """Load the dataset named by ``cfg['data']`` (student-teacher: teacher seed defaults to ``seed``)."""
    d = validate_data(cfg)
    if d["dataset"] == "student_teacher":
        return student_teacher(
            d["n_in"], d["n_out"], d.get("teacher_seed", seed), d["n_train"], d["n_val"], d["n_test"]
        )
    return load_dataset(
        d["dataset"],
        data_root,
        n_val=d["n_val"],
        split_seed=d["split_seed"],
        check_md5=d["check_md5"],
        download=d["download"],
    )


def _check_shapes(params: ModelParams, ds: Dataset) -> None:
    sizes = params.network.sizes
    if sizes[0] != ds.n_in:
        raise ConfigError(f"model.sizes[0] = {sizes[0]} but dataset {ds.name} has {ds.n_in} inputs")
    if sizes[-1] != ds.n_out:
        raise ConfigError(f"model.sizes[-1] = {sizes[-1]} but dataset {ds.name} has {ds.n_out} outputs")
    if ds.task == "classification" and params.network.loss != "ce":
        raise ConfigError(f"model.loss = {params.network.loss!r}: classification ({ds.name}) needs 'ce'")


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def predict_all(method: Method, X: np.ndarray, chunk: int = EVAL_CHUNK) -> np.ndarray:
    """Feedforward outputs of all rows of X, in chunks."""
    return np.concatenate([np.asarray(method.predict(X[i : i + chunk])) for i in range(0, len(X), chunk)])


def loss_and_error(out: np.ndarray, y: np.ndarray, task: str) -> tuple[float, float]:
    """Loss and classification error of outputs ``out`` (N, n_out) against targets ``y``.

    Classification: mean softmax cross-entropy of the logits, error = % of wrong argmax.
    Regression: MSE averaged over samples and output units; error = NaN.
    """
    if task == "classification":
        z = out - out.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = float(-logp[np.arange(len(y)), y].mean())
        err = float(100.0 * np.mean(out.argmax(axis=1) != y))
        return loss, err
    return float(np.mean((out - y) ** 2)), float("nan")


def evaluate(method: Method, ds: Dataset) -> dict[str, float]:
    """``{train,val,test}_loss`` and, for classification, ``{train,val,test}_error`` (%)."""
    res = {}
    for part in ("train", "val", "test"):
        split = getattr(ds, part)
        loss, err = loss_and_error(predict_all(method, split.X), split.y, ds.task)
        res[f"{part}_loss"] = loss
        if ds.task == "classification":
            res[f"{part}_error"] = err
    return res


def _scalar(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "biuf":
        return float(v)
    return None


class _Mean:
    """Running mean of the scalar entries of step dicts."""

    def __init__(self) -> None:
        self.sum: dict[str, float] = {}
        self.n: dict[str, int] = {}

    def add(self, d: Mapping[str, Any] | None) -> None:
        for k, v in (d or {}).items():
            s = _scalar(v)
            if s is not None:
                self.sum[k] = self.sum.get(k, 0.0) + s
                self.n[k] = self.n.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: self.sum[k] / self.n[k] for k in self.sum}


def _means(stats: list[dict]) -> dict[str, float]:
    """Means of the scalar entries of step dicts, summed in order."""
    acc = _Mean()
    for d in stats:
        acc.add(d)
    return acc.means()


def _append(history: dict[str, list], row: Mapping[str, float]) -> None:
    """Append one row; keys new in this row are back-filled with NaN, missing keys get NaN."""
    n = len(next(iter(history.values()))) if history else 0
    for k in row:
        if k not in history:
            history[k] = [float("nan")] * n
    for k in history:
        history[k].append(float(row.get(k, float("nan"))))


# ---------------------------------------------------------------------------------------------
# Epochs: the one place of minibatch order, sleep order and feedback pre-training
# ---------------------------------------------------------------------------------------------


def _tqdm(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def _pass(
    method: Method,
    step: str,
    X: np.ndarray,
    y: np.ndarray | None,
    batch_size: int,
    rng: np.random.Generator,
    *,
    phase: str,
    epoch: int,
    max_batches: int | None,
    desc: str,
    progress: bool,
) -> list[dict]:
    """One pass of ``method.<step>`` over the minibatches of X, in the order ``rng.permutation`` draws.

    Every step is guarded (:func:`guarded_step`); at most ``max_batches`` minibatches. Returns
    the step dicts in order.
    """
    nb = n_batches(len(X), batch_size)
    nb = min(nb, max_batches) if max_batches else nb
    out: list[dict] = []
    loss_sum = 0.0
    with _tqdm(nb, desc, progress) as bar:
        for k, (xb, yb) in enumerate(batches(X, X if y is None else y, batch_size, rng)):
            if k == nb:
                break
            args = (xb,) if y is None else (xb, yb)
            stats = guarded_step(method, step, *args, phase=phase, **_at(epoch, k, nb))
            out.append(stats)
            bar.update()
            if "loss" in stats:
                loss_sum += float(stats["loss"])
                bar.set_postfix(loss=f"{loss_sum / len(out):.4g}", refresh=False)
    return out


def pretrain_epochs(training: Mapping[str, Any]) -> int:
    """Feedback pre-training epochs of a validated ``training`` section (0 without learned Q)."""
    return training["epochs_fb"] if learns_feedback(training) else 0


def pretrain_feedback(
    method: Method,
    X: np.ndarray,
    epochs: int,
    rng: np.random.Generator,
    batch_size: int,
    *,
    first_epoch: int = 1,
    max_batches: int | None = None,
    progress: bool = False,
    on_epoch: Callable[[int, list[dict]], None] | None = None,
) -> list[list[dict]]:
    """``epochs`` sleep-only epochs of ``method.pretrain_feedback_step`` over minibatches of X.

    Each epoch draws a fresh permutation from ``rng`` (even where the step is a no-op) and
    presents minibatches of ``batch_size``. ``on_epoch(epoch, step_dicts)`` runs after each
    epoch (the loop's checkpoint). Returns the step dicts of every epoch.
    """
    out = []
    for j in range(int(epochs)):
        ep = first_epoch + j
        stats = _pass(
            method,
            "pretrain_feedback_step",
            X,
            None,
            batch_size,
            rng,
            phase="feedback pre-training",
            epoch=ep,
            max_batches=max_batches,
            desc=f"feedback pre-training {ep}",
            progress=progress,
        )
        out.append(stats)
        if on_epoch is not None:
            on_epoch(ep, stats)
    return out


@dataclass
class EpochSteps:
    """What one :func:`train_epoch` returns: the step dicts, in the order the steps ran."""

    steps: list[dict]  # train_step, one per forward minibatch
    sleep: list[dict] = field(default_factory=list)  # feedback_step of the sleep-only epochs
    n_samples: int = 0  # training samples of the epoch

    @property
    def loss(self) -> float:
        """Mean over the forward minibatches of the loss each reported before its update."""
        return float(np.mean([float(s["loss"]) for s in self.steps]))

    @property
    def n_nonconverged(self) -> int:
        """Samples of the forward epoch that failed the convergence test (DFC, DFC-SS)."""
        return sum(int(s.get("n_nonconverged", 0)) for s in self.steps)


def train_epoch(
    method: Method,
    X: np.ndarray,
    y: np.ndarray,
    training: Mapping[str, Any],
    rng_forward: np.random.Generator,
    rng_sleep: np.random.Generator | None = None,
    *,
    epoch: int = 1,
    max_batches: int | None = None,
    progress: bool = False,
) -> EpochSteps:
    """One training epoch in the order of the ``training`` section (the authors' code).

    ``extra_sleep_mode: epoch`` with learned feedback (:func:`learns_feedback`): one
    sleep-only epoch (:meth:`Method.feedback_step` on every minibatch, lr_fb), then one
    forward epoch (:meth:`Method.train_step` on every minibatch), then ``extra_sleep``
    sleep-only epochs. Otherwise one forward epoch (``minibatch``: ``train_step`` runs its own
    sleep phases). Every pass draws its own permutation: forward passes from ``rng_forward``,
    sleep passes from ``rng_sleep`` (default: ``rng_forward``, one stream as in
    :func:`train`; Fig. 3 gives two, so that every method sees the same forward minibatches).

    Parameters
    ----------
    training : mapping
        The validated section (:func:`~dfc_brian.engines.methods.validate_training`):
        ``method``, ``q``, ``batch_size``, ``extra_sleep``, ``extra_sleep_mode``.
    epoch, max_batches, progress
        Position for the divergence messages, at most this many minibatches per pass, tqdm bars.
    """
    rng_sleep = rng_forward if rng_sleep is None else rng_sleep
    bs = int(training["batch_size"])
    epoch_order = learns_feedback(training) and training["extra_sleep_mode"] == "epoch"
    n_extra = int(training["extra_sleep"]) if epoch_order else 0
    kw = {"epoch": epoch, "max_batches": max_batches, "progress": progress}
    sleep: list[dict] = []

    def sleep_pass(desc: str) -> None:
        sleep.extend(_pass(method, "feedback_step", X, None, bs, rng_sleep, phase="sleep", desc=desc, **kw))

    if epoch_order:  # the authors' order: a whole sleep-only epoch before the forward epoch
        sleep_pass(f"epoch {epoch}: sleep")
    steps = _pass(method, "train_step", X, y, bs, rng_forward, phase="training", desc=f"epoch {epoch}", **kw)
    for j in range(n_extra):
        sleep_pass(f"epoch {epoch}: extra sleep {j + 1}/{n_extra}")
    return EpochSteps(steps, sleep, len(X))


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def _default_factory(cfg: dict, seed: int) -> Method:
    from dfc_brian.engines.methods import make_method

    return make_method(cfg, seed)


def _comparable(cfg: Mapping[str, Any]) -> dict:
    """The config without ``training.epochs`` (which a resume may extend)."""
    c = copy.deepcopy(dict(cfg))
    c.get("training", {}).pop("epochs", None)
    return c


@locked_run_dir  # --out checked writable, one run per directory (guards.py)
def train(
    cfg: Mapping[str, Any],
    seed: int,
    out_dir: str | Path,
    data_root: str | Path | None = None,
    resume: bool = False,
    max_batches: int | None = None,
    progress: bool = True,
    *,
    method_factory: MethodFactory | None = None,
    dataset: Dataset | None = None,
) -> dict[str, Any]:
    """Train one config with one seed; write checkpoints and results into ``out_dir``.

    Parameters
    ----------
    cfg : mapping
        Whole config (sections ``model``, ``controller``, ``sleep``, ``convergence``,
        ``training``, ``data``), e.g. from :func:`dfc_brian.config.load_config`.
    seed : int
        Run seed (weights, noise, minibatch order; teacher of student-teacher data by default).
    out_dir : path
        Run directory: ``checkpoint.npz``, ``results.npz``, ``results.json``.
    data_root : path, optional
        Root of the MNIST / Fashion-MNIST files (default ``$DFC_DATA``, else ``./data``).
    resume : bool
        Continue from ``out_dir/checkpoint.npz`` if present. The config must equal the
        checkpoint's except for ``training.epochs``, which may grow.
    max_batches : int, optional
        Train on at most this many minibatches per epoch (quick runs; evaluation stays full).
    progress : bool
        Show tqdm progress bars.
    method_factory : callable, optional
        ``(cfg, seed) -> Method``; default ``dfc_brian.engines.methods.make_method``.
    dataset : Dataset, optional
        Use this dataset instead of loading ``cfg['data']`` (tests, notebooks).

    Returns
    -------
    dict
        Summary: ``metric`` ('error' or 'loss'), ``best_epoch``, ``reported`` (the paper's number),
        ``test_at_best_val``, ``final_train_loss``, ``epochs_done``, ``n_train_batches``...

    Raises
    ------
    ConfigError
        Invalid config, or an ``out_dir`` holding another run.
    DataError
        Missing or corrupt dataset files.
    """
    cfg = copy.deepcopy(dict(cfg))
    meta = run_metadata()  # provenance of the code that runs: the tree may change before the end
    check_numeric_types(cfg)  # a YAML string such as '2e-1' in a numeric field
    seed = check_int("seed", seed, 0)
    if max_batches is not None:
        max_batches = check_int("max_batches", max_batches, 1)
    tr = validate_training(cfg.get("training"), run=True)
    dcfg = validate_data(cfg)
    params = ModelParams.from_dict(cfg)
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT

    if ckpt_path.exists() or (out / RESULTS_JSON).exists():
        if not resume:
            raise ConfigError(
                f"{out} already holds a run; pass resume=True (--resume) or choose another out_dir"
            )
    ds = dataset if dataset is not None else load_task(cfg, seed, data_root)
    _check_shapes(params, ds)
    method = (method_factory or _default_factory)(cfg, seed)
    rng = np.random.default_rng([seed, 1])

    epochs_fb = pretrain_epochs(tr)
    state: dict[str, Any] = {"fb_done": 0, "done": 0, "wall_time_s": 0.0, "history": {}, "fb_history": {}}
    loop_id = {"seed": seed, "cfg": _comparable(cfg), "max_batches": max_batches}

    if resume and ckpt_path.exists():
        state = load_loop_checkpoint(ckpt_path, method, rng, loop_id, "only training.epochs may change")
    # the wall time of every finished epoch, for `dfc-brian status` and the cost tables (a checkpoint
    # written before these were recorded has none for its earlier epochs)
    state.setdefault("epoch_wall_s", {"sleep_only": [], "training": []})
    state["epochs"] = tr["epochs"]  # the target, so that `dfc-brian status` needs no config

    t0 = time.perf_counter()

    def checkpoint(kind: str | None = None) -> None:
        """Save; ``kind`` (``sleep_only`` / ``training``) records the time since the last save
        as that epoch's wall time."""
        nonlocal t0
        seg = time.perf_counter() - t0
        state["wall_time_s"] += seg
        if kind is not None:
            state["epoch_wall_s"][kind].append(seg)
        save_loop_checkpoint(ckpt_path, method, loop_id, state, rng)
        t0 = time.perf_counter()

    X, y = ds.train.X, ds.train.y
    nb_full = n_batches(len(X), tr["batch_size"])
    nb = min(nb_full, max_batches) if max_batches else nb_full

    # 1. feedback pre-training (sleep phases only), a checkpoint after every epoch
    def pretrain_done(ep: int, stats: list[dict]) -> None:
        _append(state["fb_history"], {"epoch": ep, **_means(stats)})
        state["fb_done"] = ep
        checkpoint("sleep_only")

    pretrain_feedback(
        method,
        X,
        epochs_fb - state["fb_done"],
        rng,
        tr["batch_size"],
        first_epoch=state["fb_done"] + 1,
        max_batches=max_batches,
        progress=progress,
        on_epoch=pretrain_done,
    )

    # 2. training, evaluated after every epoch (epoch 0 = before training)
    history = state["history"]
    if not history:
        _append(history, {"epoch": 0, **evaluate(method, ds)})
        checkpoint()
    conv = ConvergenceMonitor(params.convergence.include_nonconverged)  # minibatches, no sample converged
    while state["done"] < tr["epochs"]:
        ep = state["done"] + 1
        res = train_epoch(method, X, y, tr, rng, epoch=ep, max_batches=max_batches, progress=progress)
        acc = _Mean()
        for stats in res.steps:
            conv.add(stats)
            acc.add(stats)
        step_means = acc.means()
        if "n_nonconverged" in acc.sum:  # samples of the whole epoch left out of the update
            step_means["n_nonconverged_epoch"] = acc.sum["n_nonconverged"]
        row = {
            "epoch": ep,
            **evaluate(method, ds),
            **{f"step/{k}": v for k, v in step_means.items()},
            **{f"sleep/{k}": v for k, v in _means(res.sleep).items()},
            **conv.end_epoch(tr["method"], ep),
        }
        _append(history, row)
        state["done"] = ep
        if progress:
            _print_epoch(row, ds.task, tr["epochs"])
        checkpoint("training")

    summary = summarize(history, ds.task, dcfg["report"])
    summary.update(
        epochs_done=state["done"],
        fb_epochs_done=state["fb_done"],
        n_train_batches=nb,
        max_batches=max_batches,
        dataset=ds.name,
        method=tr["method"],
        q=tr["q"],
        minibatches_none_converged=int(np.nansum(history.get("minibatches_none_converged", [0.0]))),
    )
    weights = getattr(method, "weights", None)
    arrays = {}
    if weights is not None and hasattr(weights, "to_npz_dict"):
        arrays = {f"weights/{k}": v for k, v in weights.to_npz_dict().items()}
    for k, v in state["fb_history"].items():
        arrays[f"fb_history/{k}"] = np.asarray(v, dtype=np.float64)
    save_results(
        out,
        cfg=cfg,
        seed=seed,
        history=history,
        arrays=arrays,
        summary=summary,
        wall_time_s=state["wall_time_s"],
        epoch_wall_s=state["epoch_wall_s"],
        meta=meta,
    )
    return summary


def _at(epoch: int, k: int, nb: int) -> dict[str, int]:
    """Position of minibatch ``k`` (0-based) for the messages of :func:`guarded_step`."""
    return {"epoch": epoch, "minibatch": k + 1, "n_minibatches": nb}


def save_loop_checkpoint(
    path: str | Path,
    method: Any,
    loop_id: Mapping[str, Any],
    state: Mapping[str, Any],
    rng: np.random.Generator,
) -> None:
    """A training loop's checkpoint (atomic): the method's ``state_dict`` as ``method/<key>`` arrays,
    ``loop`` (the run's identity ``loop_id`` and the loop ``state``) and the ``rng`` state as JSON.
    Used by :func:`train` and :func:`dfc_brian.experiments.online.train_online`."""
    arrays = {f"method/{k}": np.asarray(v) for k, v in method.state_dict().items()}
    arrays["loop"] = json_array({"id": loop_id, "state": state})
    arrays["rng"] = json_array(rng.bit_generator.state)
    save_checkpoint(path, arrays)


def load_loop_checkpoint(
    path: str | Path, method: Any, rng: np.random.Generator, loop_id: Mapping[str, Any], hint: str
) -> dict[str, Any]:
    """Restore ``method`` and ``rng`` from :func:`save_loop_checkpoint`'s file; return the loop state.

    Raises ConfigError naming the entries of ``loop_id`` that differ from the checkpoint's
    (``hint`` says what may change), before anything is restored.
    """
    ck = load_checkpoint(path)
    saved = array_json(ck["loop"])
    if saved["id"] != array_json(json_array(loop_id)):
        diff = [k for k in loop_id if array_json(json_array(loop_id[k])) != saved["id"].get(k)]
        raise ConfigError(f"cannot resume {path}: its {', '.join(diff)} differ(s) from this run ({hint})")
    rng.bit_generator.state = array_json(ck["rng"])
    method.load_state_dict(unpack_method_state(ck))
    return saved["state"]


def unpack_method_state(ck: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """``method/<key>`` arrays of a checkpoint; 0-d strings come back as ``str`` (np.str_)."""
    out: dict[str, Any] = {}
    for k, v in ck.items():
        if k.startswith("method/"):
            out[k[len("method/") :]] = v[()] if (v.ndim == 0 and v.dtype.kind == "U") else v
    return out


def summarize(history: Mapping[str, list], task: str, report: str = "test_at_best_val") -> dict[str, Any]:
    """The paper's number from a history: test metric at the epoch of best validation metric.

    Epoch 0 (before training) is excluded unless it is the only one; ties go to the earliest
    epoch; NaN validation values never win.

    ``report = 'final_train_loss'`` reports ``final_train_loss``: the running training loss of
    the last epoch, i.e. the mean over its minibatches of the loss before each update
    (``history['step/loss'][-1]``), as the authors' ``loss_train_last``. A history without a
    finite ``step/loss`` (a method whose steps return no ``loss``) falls back to the loss
    evaluated after the epoch, and ``train_loss_kind`` says which of the two was used
    (``'running'`` or ``'evaluated'``); the evaluated one is always in
    ``final_train_loss_evaluated``.
    """
    metric = "error" if task == "classification" else "loss"
    epochs = np.asarray(history["epoch"], dtype=float)
    val = np.asarray(history[f"val_{metric}"], dtype=float)
    test = np.asarray(history[f"test_{metric}"], dtype=float)
    cand = np.flatnonzero(epochs > 0) if np.any(epochs > 0) else np.arange(len(epochs))
    v = np.where(np.isfinite(val[cand]), val[cand], np.inf)
    best = int(cand[int(np.argmin(v))])
    evaluated = float(history["train_loss"][-1])
    running = float(history["step/loss"][-1]) if len(history.get("step/loss", [])) else float("nan")
    kind = "running" if np.isfinite(running) else "evaluated"
    final_train_loss = running if kind == "running" else evaluated
    out = {
        "metric": metric,
        "report": report,
        "best_epoch": int(epochs[best]),
        "best_val": float(val[best]),
        "test_at_best_val": float(test[best]),
        "final_train_loss": final_train_loss,
        "train_loss_kind": kind,
        "final_train_loss_evaluated": evaluated,
        "final_test": float(test[-1]),
    }
    out["reported"] = out["test_at_best_val"] if report == "test_at_best_val" else final_train_loss
    return out


def _print_epoch(row: Mapping[str, float], task: str, n_epochs: int) -> None:
    from tqdm.auto import tqdm

    if task == "classification":
        msg = (
            f"epoch {int(row['epoch'])}/{n_epochs}: train loss {row['train_loss']:.4g}, "
            f"val error {row['val_error']:.2f} %, test error {row['test_error']:.2f} %"
        )
    else:
        msg = (
            f"epoch {int(row['epoch'])}/{n_epochs}: train loss {row['train_loss']:.4g}, "
            f"val loss {row['val_loss']:.4g}, test loss {row['test_loss']:.4g}"
        )
    tqdm.write(msg)
