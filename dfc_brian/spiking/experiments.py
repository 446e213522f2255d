"""Experiments of the spiking DFC network (issue 11): student-teacher and MNIST, online.

Every function returns a flat dict of numpy arrays and scalars that :func:`save` writes as
npz + JSON. The test loss of a weight checkpoint is the loss of the network's *expected* output
(the rate feedforward pass :math:`r_i = f(W_i r_{i-1} + b_i)` of the learned weights), so that
spiking and rate networks are compared on what they learned, not on readout noise; the spiking
readout (output spike counts) is reported beside it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dfc_brian.config import load_config
from dfc_brian.model.params import ConfigError
from dfc_brian.model.weights import Weights, weight_product_Q
from dfc_brian.spiking.network import SpikingDFC
from dfc_brian.spiking.params import SpikingParams


def load(name: str | Path) -> tuple[SpikingParams, dict[str, Any]]:
    """Params and raw config of ``models/spiking/<name>.yaml`` (or a path)."""
    p = Path(name)
    cfg = load_config(p if p.suffix else Path("spiking") / p.name if not p.is_file() else p)
    try:
        return SpikingParams.from_dict(cfg), cfg
    except ConfigError as err:
        raise ConfigError(f"{name}: {err}") from None


def logistic(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def feedforward(W: list[np.ndarray], b: list[np.ndarray], X: np.ndarray) -> np.ndarray:
    """Expected output f(W_L ... f(W_1 x + b_1) ... + b_L) (logistic f), X (N, n_0)."""
    r = X
    for w, bi in zip(W, b):
        r = logistic(r @ w.T + bi)
    return r


def mse(r: np.ndarray, y: np.ndarray) -> float:
    """L = ||r - y||^2 / n_L averaged over samples (the loss of the target r* = r - lambda dL/dr)."""
    return float(np.mean(np.sum((r - y) ** 2, axis=1) / y.shape[1]))


def init_student(sizes: tuple[int, ...], seed: int, gain: float) -> Weights:
    """W_i ~ N(0, (gain / sqrt(n_{i-1}))^2), b_i = 0, Q_i fixed to the weight product (Q_L = I)."""
    rng = np.random.default_rng(seed)
    W = [rng.normal(0.0, gain / np.sqrt(sizes[i]), (sizes[i + 1], sizes[i])) for i in range(len(sizes) - 1)]
    b = [np.zeros(n) for n in sizes[1:]]
    return Weights(W, b, weight_product_Q(W))


def toy_task(
    sizes: tuple[int, ...], cfg: Mapping[str, Any], seed: int, n_train: int, n_test: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Weights]:
    """The student-teacher task of a toy config and the student's initial weights, for ``seed``:
    teacher seed ``data.teacher_seed`` (default 1000) + seed, gain ``data.teacher_gain`` (3.0),
    student gain ``training.init_gain`` (2.0)."""
    da, tr = cfg.get("data", {}), cfg.get("training", {})
    Xtr, Ytr, Xte, Yte = positive_student_teacher(
        sizes, int(da.get("teacher_seed", 1000)) + seed, n_train, n_test, float(da.get("teacher_gain", 3.0))
    )
    return Xtr, Ytr, Xte, Yte, init_student(sizes, seed, float(tr.get("init_gain", 2.0)))


def positive_student_teacher(
    sizes: tuple[int, ...], seed: int, n_train: int, n_test: int, gain: float = 3.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Realisable positive-rate task: a fixed random logistic teacher of the student's shape.

    Teacher W_i ~ N(0, (gain / sqrt(n_{i-1}))^2), b_i = -0.5 sum_j W_ij (centres the inputs
    x ~ U(0, 1)); targets y = teacher(x) in (0, 1).
    """
    rng = np.random.default_rng(seed)
    W = [rng.normal(0.0, gain / np.sqrt(sizes[i]), (sizes[i + 1], sizes[i])) for i in range(len(sizes) - 1)]
    b = []
    for i, w in enumerate(W):
        mean_in = 0.5 if i == 0 else 0.5  # inputs and logistic rates are centred near 0.5
        b.append(-mean_in * w.sum(axis=1))
    X = rng.uniform(0.0, 1.0, (n_train + n_test, sizes[0]))
    Y = feedforward(W, b, X)
    return X[:n_train], Y[:n_train], X[n_train:], Y[n_train:]


def checkpoint_weights(
    ck: Mapping[str, np.ndarray], L: int, Q: list[np.ndarray] | None = None
) -> list[Weights]:
    """The weights at each checkpoint of :meth:`SpikingDFC.run` (its ``ckpt_W{i}``, ``ckpt_b{i}``
    and, for a sleep network, ``ckpt_Q{i}``); without recorded Q, the fixed ``Q`` given."""
    has_Q = "ckpt_Q0" in ck
    return [
        Weights(
            [ck[f"ckpt_W{i}"][k] for i in range(L)],
            [ck[f"ckpt_b{i}"][k] for i in range(L)],
            [ck[f"ckpt_Q{i}"][k] for i in range(L)] if has_Q else list(Q or []),
        )
        for k in range(ck["ckpt_W0"].shape[0])
    ]


def _checkpoint_losses(out: dict[str, Any], L: int, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    return np.array([mse(feedforward(w.W, w.b, X), Y) for w in checkpoint_weights(out, L)])


def online_run(
    p: SpikingParams,
    w0: Weights,
    Xtr: np.ndarray,
    Ytr: np.ndarray,
    Xte: np.ndarray,
    Yte: np.ndarray,
    every: int,
    target: str = "cpp_standalone",
    n_readout: int = 0,
    build_dir: str = "/tmp/dfc_spiking_standalone",
    record_control_dt: float = 0.0,
) -> dict[str, Any]:
    """Train online on (Xtr, Ytr), then present ``n_readout`` test samples with learning and
    control off (spiking readout); test loss of the expected output at every ``every`` samples.
    With ``record_control_dt`` > 0 also the control metrics of :func:`control_metrics`."""
    n_tr = Xtr.shape[0]
    X = np.concatenate([Xtr, Xte[:n_readout]])
    Y = np.concatenate([Ytr, Yte[:n_readout]])
    flags = np.r_[np.ones(n_tr), np.zeros(n_readout)]
    net = SpikingDFC(
        p, w0, target=target, record_weights_every=every, build_dir=build_dir,
        record_control_dt=record_control_dt,
    )  # fmt: skip
    t0 = time.perf_counter()
    out = net.run(X, Y, learn=flags, control=flags)
    wall = time.perf_counter() - t0
    L = p.n_layers
    keep = out["ckpt_t_ms"] <= n_tr * p.T_sample + 1e-6
    for i in range(L):
        out[f"ckpt_W{i}"], out[f"ckpt_b{i}"] = out[f"ckpt_W{i}"][keep], out[f"ckpt_b{i}"][keep]
    w1 = net.get_weights()
    loss = _checkpoint_losses(out, L, Xte, Yte)
    final = mse(feedforward(w1.W, w1.b, Xte), Yte)
    samples = np.round(out["ckpt_t_ms"][keep] / p.T_sample).astype(int)
    if samples[-1] < n_tr:  # the last checkpoint is the final state only if the run went on (readout)
        samples, loss = np.r_[samples, n_tr], np.r_[loss, final]
    res: dict[str, Any] = {
        "samples": samples,
        "test_loss": loss,
        "final_test_loss": final,
        "wall_s": wall,
        "sim_s": (n_tr + n_readout) * p.T_sample * 1e-3,
        "n_spikes_out": out["n_spikes"][-1],
        "weights": w1,
        "ckpt": {k: v for k, v in out.items() if k.startswith("ckpt_")},
    }
    if record_control_dt > 0:
        res.update(control_metrics(out, p, n_tr))
        res["traces"] = {k: v for k, v in out.items() if k.startswith("ctrl_")}
    if n_readout:
        window = (p.T_sample - p.t_plastic) * 1e-3
        r_spk = out["output_counts"][n_tr:] / (p.rho_max * window)
        res["readout_loss"] = mse(r_spk, Yte[:n_readout])
        res["readout_rate"] = r_spk
    return res


def control_metrics(out: Mapping[str, Any], p: SpikingParams, n_samples: int) -> dict[str, float]:
    r"""How far the controller brings the output to its target in the plastic window of each sample.

    Over the first ``n_samples`` samples and their plastic window ``[t_plastic, T_sample)``, with
    :math:`\hat r_L` the filtered output spike train the controller reads, :math:`f(v_L)` the
    output's expected rate, :math:`r^*` the target and :math:`r^-` the feedforward output:

    - ``gap_closed``: the fraction of the nudge :math:`g_k = r^*_k - r^-_k` the output makes on
      average, :math:`\sum_k \langle \langle \hat r_L\rangle_k - r^-_k, g_k\rangle /
      \sum_k \lVert g_k\rVert^2`
      (window means :math:`\langle\cdot\rangle_k`; 1: the target is reached; zero-mean spike noise
      averages out over samples);
    - ``gap_closed_rate``: the same with :math:`f(v_L)` in place of :math:`\hat r_L`;
    - ``gap_residual``: :math:`\sum_k \lVert r^*_k - \langle \hat r_L\rangle_k\rVert /
      \sum_k \lVert g_k\rVert`, the norm of the window-mean error (spike noise included) over the
      norm of the nudge;
    - ``residual_rms``: RMS over time and units of :math:`r^* - \hat r_L` (spike noise included);
    - ``residual_rms_rate``: RMS of :math:`r^* - f(v_L)`;
    - ``filter_noise_pred``: the std of a Poisson train of normalised rate :math:`f` seen through the
      :math:`\tau_r` filter, :math:`\sqrt{\langle f\rangle / (2 N \rho \tau_r)}` (N = n_pop; 0 in rate mode).
    """
    t = np.asarray(out["ctrl_t_ms"])
    k = np.floor((t + 0.5 * p.dt) / p.T_sample).astype(int)
    tin = t - k * p.T_sample
    sel = (k < n_samples) & (tin >= p.t_plastic)
    kk = k[sel]
    r_L, r_star = out["ctrl_rec_r_L"][:, sel], out["ctrl_rec_r_star"][:, sel]
    r_ff, fr = out["ctrl_rec_r_ff"][:, sel], out["ctrl_rec_fr"][:, sel]
    cnt = np.bincount(kk, minlength=n_samples).astype(float)
    if np.any(cnt == 0):
        raise ConfigError("record_control_dt is too coarse: a sample has no point in its plastic window")

    def per_sample(a: np.ndarray) -> np.ndarray:  # (n_L, n_points) -> (n_samples, n_L) window means
        return np.stack([np.bincount(kk, weights=row, minlength=n_samples) / cnt for row in a], axis=1)

    g = per_sample(r_star - r_ff)
    g2 = np.sum(g**2)
    spiking = p.mode == "spiking"
    return {
        "gap_closed": float(np.sum(per_sample(r_L - r_ff) * g) / g2),
        "gap_closed_rate": float(np.sum(per_sample(fr - r_ff) * g) / g2),
        "gap_residual": float(
            np.linalg.norm(per_sample(r_star - r_L), axis=1).sum() / np.sqrt(np.sum(g**2, 1)).sum()
        ),
        "residual_rms": float(np.sqrt(np.mean((r_star - r_L) ** 2))),
        "residual_rms_rate": float(np.sqrt(np.mean((r_star - fr) ** 2))),
        "gap_rms": float(np.sqrt(np.mean((r_star - r_ff) ** 2))),
        "filter_noise_pred": float(
            np.sqrt(np.mean(fr) / (2 * p.n_pop * p.rho_max * p.tau_r * 1e-3)) if spiking else 0.0
        ),
    }


def population(
    n_pops: tuple[int, ...] = (1, 4, 16),
    seeds: tuple[int, ...] = (0, 1, 2),
    config: str = "toy_student_teacher",
    n_train: int | None = None,
    every: int = 25,
    rate_seeds: tuple[int, ...] = (0, 1, 2),
    record_control_dt: float = 1.0,
    trace_dir: str | None = None,
) -> dict[str, Any]:
    """Population coding on the student-teacher task: n_pop spiking neurons per unit (shared
    compartments), same seeds, data and initial weights as :func:`student_teacher`; test loss
    and the control metrics (:func:`control_metrics`) per n_pop and seed, and the rate limit
    (on ``rate_seeds``). ``trace_dir``: also write each run's control traces there (npz)."""
    p0, cfg = load(config)
    tr = cfg.get("training", {})
    n_train = int(n_train or tr.get("n_train", 300))
    n_test = int(tr.get("n_test", 200))
    runs = ([(1, "rate")] if rate_seeds else []) + [(n, "spiking") for n in n_pops]
    keys = ("final_test_loss", "gap_closed", "gap_closed_rate", "gap_residual", "residual_rms",
            "residual_rms_rate", "gap_rms", "filter_noise_pred", "wall_s")  # fmt: skip
    out: dict[str, Any] = {"n_pop": np.array(n_pops), "seeds": np.array(seeds), "n_train": n_train}
    for n, mode in runs:
        tag = f"pop{n}" if mode == "spiking" else "rate"
        rows: dict[str, list[float]] = {k: [] for k in keys}
        curves = []
        for s in seeds if mode == "spiking" else rate_seeds:
            Xtr, Ytr, Xte, Yte, w0 = toy_task(p0.sizes, cfg, s, n_train, n_test)
            p = p0.replace(mode=mode, seed=s, n_pop=n)
            r = online_run(
                p, w0, Xtr, Ytr, Xte, Yte, every, build_dir=f"/tmp/dfc_spk_pop_{tag}",
                record_control_dt=record_control_dt,
            )  # fmt: skip
            if trace_dir:
                Path(trace_dir).mkdir(parents=True, exist_ok=True)
                np.savez_compressed(Path(trace_dir) / f"{tag}_{s}.npz", **r["traces"])
            for k in keys:
                rows[k].append(float(r[k]))
            curves.append(r["test_loss"])
            out["samples"] = r["samples"]
            print(
                f"{tag} seed {s}: test loss {r['final_test_loss']:.4f}, gap closed {r['gap_closed']:.3f} "
                f"(rate {r['gap_closed_rate']:.3f}), residual rms {r['residual_rms']:.4f} "
                f"(pred. filter noise {r['filter_noise_pred']:.4f}), {r['wall_s']:.1f} s",
                flush=True,
            )
        for k in keys:
            out[f"{tag}_{k}"] = np.array(rows[k])
        out[f"{tag}_test_loss"] = np.array(curves)
    out["params"] = p0.to_dict()
    return out


def student_teacher(
    config: str = "toy_student_teacher",
    seeds: tuple[int, ...] = (0, 1, 2),
    modes: tuple[str, ...] = ("spiking", "rate"),
    n_train: int | None = None,
    n_test: int | None = None,
    every: int = 25,
    target: str = "cpp_standalone",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Online student-teacher learning: spiking vs rate (expected rates) vs untrained, per seed."""
    p0, cfg = load(config)
    if overrides:
        p0 = p0.replace(**overrides)
    tr = cfg.get("training", {})
    n_train = int(n_train or tr.get("n_train", 300))
    n_test = int(n_test or tr.get("n_test", 200))
    result: dict[str, Any] = {
        "seeds": np.array(seeds),
        "n_train": n_train,
        "n_test": n_test,
        "target": target,
    }
    for mode in modes:
        losses, walls, finals = [], [], []
        for s in seeds:
            Xtr, Ytr, Xte, Yte, w0 = toy_task(p0.sizes, cfg, s, n_train, n_test)
            p = p0.replace(mode=mode, seed=s)
            r = online_run(
                p, w0, Xtr, Ytr, Xte, Yte, every, target=target, build_dir=f"/tmp/dfc_spk_{mode}_{s}"
            )
            losses.append(r["test_loss"])
            walls.append(r["wall_s"])
            finals.append(r["final_test_loss"])
            result["samples"] = r["samples"]
            print(f"{mode} seed {s}: test loss {r['test_loss'][0]:.4f} -> {r['final_test_loss']:.4f} "
                  f"({r['wall_s']:.1f} s wall, {target})", flush=True)  # fmt: skip
        result[f"{mode}_test_loss"] = np.array(losses)
        result[f"{mode}_final"] = np.array(finals)
        result[f"{mode}_wall_s"] = np.array(walls)
    result["untrained_test_loss"] = result[f"{modes[0]}_test_loss"][:, 0]
    result["params"] = p0.to_dict()
    return result


def save(result: Mapping[str, Any], stem: str | Path) -> tuple[Path, Path]:
    """npz (arrays) + JSON (scalars, lists, params) under ``stem``; the JSON also carries the
    provenance of :func:`~dfc_brian.experiments.results.run_metadata` (git SHA, dirty flag,
    versions, platform) unless the result brings its own ``git_sha``."""
    from dfc_brian.experiments.results import run_metadata

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in result.items() if isinstance(v, np.ndarray)}
    np.savez_compressed(stem.with_suffix(".npz"), **arrays)
    doc = {k: v for k, v in result.items() if not isinstance(v, (np.ndarray, Weights))}
    if "git_sha" not in doc:
        doc.update(run_metadata())
    doc.update({k: np.asarray(v).tolist() for k, v in arrays.items() if np.asarray(v).size <= 64})
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=1, default=float))
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def load_mnist(root: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST as input rates: pixels / 255 in [0, 1] (N, 784), integer labels (train, test)."""
    from dfc_brian.experiments.data import load_raw

    xtr, ltr = load_raw("mnist", "train", root)
    xte, lte = load_raw("mnist", "test", root)
    return xtr.reshape(-1, 784) / 255.0, ltr, xte.reshape(-1, 784) / 255.0, lte


def accuracy(W: list[np.ndarray], b: list[np.ndarray], X: np.ndarray, labels: np.ndarray) -> float:
    """Test accuracy of the expected output (argmax of the rate feedforward pass)."""
    return float(np.mean(np.argmax(feedforward(W, b, X), axis=1) == labels))


def mnist(
    config: str = "mnist_784_256_10",
    n_train: int | None = None,
    n_readout: int = 0,
    every: int | None = None,
    freeze_hidden: bool = False,
    seed: int = 0,
    root: str | None = None,
    build_dir: str = "/tmp/dfc_spk_mnist",
    mode: str | None = None,
    dt: float | None = None,
) -> dict[str, Any]:
    """Online MNIST on cpp_standalone: test accuracy (10 000 images, expected output of the
    learned weights) at checkpoints, the untrained accuracy, and optionally a spiking readout
    (output spike counts) on the first ``n_readout`` test images.

    ``mode='rate'`` is the rate baseline on the identical protocol: the same samples in the same
    order, the same initial weights, time per sample, windows and eta, with every spike train
    replaced by its expected rate (no spiking readout then). ``dt`` (ms) overrides the config's
    integration step (the rate baseline runs at 0.5 ms: it has no spikes to resolve)."""
    p, cfg = load(config)
    tr = cfg.get("training", {})
    n_train = int(n_train or tr.get("n_train", 2000))
    every = int(every or max(n_train // 10, 1))
    p = p.replace(seed=seed, eta_hidden_scale=0.0 if freeze_hidden else p.eta_hidden_scale)
    if mode is not None:
        p = p.replace(mode=mode)
    if dt is not None:
        p = p.replace(dt=float(dt))
    if p.mode == "rate":
        n_readout = 0  # no spikes to count
    xtr, ltr, xte, lte = load_mnist(root)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(xtr.shape[0])[:n_train]
    eye = np.eye(10)
    w0 = init_student(p.sizes, seed, float(tr.get("init_gain", 1.0)))
    r = online_run(
        p, w0, xtr[idx], eye[ltr[idx]], xte, eye[lte], every, "cpp_standalone", n_readout, build_dir
    )
    ck = r["ckpt"]
    acc = np.array(
        [accuracy([ck["ckpt_W0"][k], ck["ckpt_W1"][k]], [ck["ckpt_b0"][k], ck["ckpt_b1"][k]], xte, lte)
         for k in range(ck["ckpt_W0"].shape[0])]
    )  # fmt: skip
    w1 = r["weights"]
    if acc.shape[0] < r["samples"].shape[0]:
        acc = np.r_[acc, accuracy(w1.W, w1.b, xte, lte)]
    out = {
        "samples": r["samples"],
        "test_accuracy": acc,
        "final_test_accuracy": accuracy(w1.W, w1.b, xte, lte),
        "untrained_test_accuracy": float(acc[0]),
        "test_loss": r["test_loss"],
        "wall_s": r["wall_s"],
        "sim_s": r["sim_s"],
        "n_train": n_train,
        "freeze_hidden": freeze_hidden,
        "params": p.to_dict(),
    }
    if n_readout:
        out["readout_accuracy"] = float(np.mean(np.argmax(r["readout_rate"], axis=1) == lte[:n_readout]))
    return out


def demo(quick: bool = True, seed: int = 0, config: str = "toy_student_teacher") -> dict[str, Any]:
    """A few samples of the spiking student (numpy target, learning on) with every monitor:
    spikes of all layers, v_basal / v_apical / v_soma of 3 neurons per layer, u, r_L, r*.
    QUICK: 1 sample at dt = 0.2 ms (seconds); otherwise 4 samples at the config's dt."""
    p, cfg = load(config)
    n = 1 if quick else 4
    if quick:
        p = p.replace(dt=0.2, dt_plasticity=0.2)
    Xtr, Ytr, _, _ = positive_student_teacher(p.sizes, 1000 + seed, n, 1)
    w0 = init_student(p.sizes, seed, float(cfg.get("training", {}).get("init_gain", 2.0)))
    net = SpikingDFC(p, w0, target="numpy", record_neurons=3, record_dt=max(p.dt, 0.5))
    out = net.run(Xtr, Ytr, learn=True)
    out["params"] = p.to_dict()
    out["target_y"] = Ytr
    return {k: v for k, v in out.items() if not isinstance(v, list)}


def tradeoff(
    rhos: tuple[float, ...] = (100.0, 200.0, 400.0),
    T_samples: tuple[float, ...] = (100.0, 150.0, 250.0),
    seeds: tuple[int, ...] = (0,),
    n_train: int = 150,
    config: str = "toy_student_teacher",
) -> dict[str, Any]:
    """Test loss after ``n_train`` samples against rho_max (= rho_in) and the time per sample
    (controller and plasticity windows scaled with T_sample), cpp_standalone."""
    p0, cfg = load(config)
    loss = np.zeros((len(rhos), len(T_samples), len(seeds)))
    wall = np.zeros_like(loss)
    for a, rho in enumerate(rhos):
        for c, T in enumerate(T_samples):
            k = T / p0.T_sample
            p = p0.replace(
                rho_max=rho, rho_in=rho, T_sample=T, t_settle=p0.t_settle * k, t_avg=p0.t_avg * k,
                t_plastic=p0.t_plastic * k,
            )  # fmt: skip
            for s_i, s in enumerate(seeds):
                Xtr, Ytr, Xte, Yte, w0 = toy_task(p.sizes, cfg, s, n_train, 200)
                r = online_run(
                    p.replace(seed=s), w0, Xtr, Ytr, Xte, Yte, n_train, build_dir=f"/tmp/dfc_spk_tradeoff_{s}"
                )
                loss[a, c, s_i], wall[a, c, s_i] = r["final_test_loss"], r["wall_s"]
                print(f"rho {rho:.0f} Hz, T {T:.0f} ms, seed {s}: {r['final_test_loss']:.4f}", flush=True)
    return {"rho_max": np.array(rhos), "T_sample": np.array(T_samples), "seeds": np.array(seeds),
            "test_loss": loss, "wall_s": wall, "n_train": np.array(n_train)}  # fmt: skip


def jacobian_T(W: list[np.ndarray], b: list[np.ndarray], X: np.ndarray) -> np.ndarray:
    """:math:`J^T` per sample (B, sum n_i, n_L), :math:`J = \\partial r_L / \\partial v` stacked over
    layers 1..L, at the feedforward state of X (logistic f): :math:`J_L = D_L`,
    :math:`J_i = J_{i+1} W_{i+1} D_i`, :math:`D_i = \\mathrm{diag}(f'(v_i))`."""
    r, dphi = X, []
    for w, bi in zip(W, b):
        f = logistic(r @ w.T + bi)
        dphi.append(f * (1.0 - f))
        r = f
    L = len(W)
    J = [np.zeros(0)] * L
    J[-1] = np.stack([np.diag(d) for d in dphi[-1]])  # (B, n_L, n_L)
    for i in range(L - 2, -1, -1):
        J[i] = (J[i + 1] @ W[i + 1]) * dphi[i][:, None, :]
    return np.concatenate(J, axis=2).transpose(0, 2, 1)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (degrees) between two arrays, flattened (:func:`dfc_brian.analysis.theory.angle`)."""
    from dfc_brian.analysis.theory import angle

    return angle(a, b)


def random_Q(sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Random feedback weights Q_i ~ N(0, 1/n_L), every layer (output layer included)."""
    rng = np.random.default_rng(10_000 + seed)
    return [rng.normal(0.0, 1.0 / np.sqrt(sizes[-1]), (n, sizes[-1])) for n in sizes[1:]]


def sleep(
    config: str = "toy_student_teacher",
    seed: int = 0,
    n_samples: int = 200,
    every: int = 10,
    modes: tuple[str, ...] = ("spiking", "rate"),
    n_angle: int = 100,
    target: str = "cpp_standalone",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Spiking sleep phase: Q learned from a random start by the anti-Hebbian rule on noisy apical
    compartments (background Poisson input), the student's forward weights fixed at their
    initial values, ``n_samples`` inputs of the task presented in turn. Angle between the stacked
    Q and :math:`J^T` (mean over ``n_angle`` test inputs) at every ``every`` samples, per mode
    (``rate``: the neurons' spikes replaced by their expected rates, the same background noise),
    and the angle between each mode's Q and the rate mode's final Q."""
    p0, cfg = load(config)
    if overrides:
        p0 = p0.replace(**overrides)
    Xtr, _, Xte, _, w = toy_task(p0.sizes, cfg, seed, n_samples, n_angle)
    w0 = Weights(w.W, w.b, random_Q(p0.sizes, seed))
    JT = jacobian_T(w0.W, w0.b, Xte)
    out: dict[str, Any] = {"n_samples": n_samples, "seed": seed, "params": p0.to_dict()}
    finals = {}
    for mode in modes:
        p = p0.replace(mode=mode, seed=seed)
        net = SpikingDFC(
            p,
            w0,
            target=target,
            record_weights_every=every,
            sleep=True,
            build_dir=f"/tmp/dfc_spk_sleep_{mode}",
        )
        res = net.run(Xtr, np.zeros((n_samples, p.sizes[-1])), learn=True, control=True)
        Qs = [np.vstack(w.Q) for w in checkpoint_weights(res, p.n_layers)]
        Qs.append(np.vstack(net.get_weights().Q))
        samples = np.r_[np.round(res["ckpt_t_ms"] / p.T_sample).astype(int), n_samples]
        ang = np.array([np.mean([angle_deg(Q, JT[k]) for k in range(JT.shape[0])]) for Q in Qs])
        out["samples"] = samples
        out[f"{mode}_angle_JT"] = ang
        out[f"{mode}_Q_norm"] = np.array([np.linalg.norm(Q) for Q in Qs])
        out[f"{mode}_wall_s"] = res["wall_s"]
        out[f"{mode}_Q"] = Qs[-1]
        finals[mode] = Qs
        print(f"sleep {mode} seed {seed}: angle(Q, J^T) {ang[0]:.1f} -> {ang[-1]:.1f} deg, "
              f"{res['wall_s']:.1f} s wall ({target})", flush=True)  # fmt: skip
    if "rate" in finals:
        ref = finals["rate"][-1]
        for mode, Qs in finals.items():
            out[f"{mode}_angle_rate_final"] = np.array([angle_deg(Q, ref) for Q in Qs])
    return out


def sleep_wake_schedule(n_train: int, n_sleep0: int, wake_block: int, n_sleep: int) -> np.ndarray:
    """Per-sample sleep flags (bool) of an interleaved run: ``n_sleep0`` sleep samples, then
    blocks of ``wake_block`` wake (training) samples, each block but the last followed by
    ``n_sleep`` sleep samples; ``n_train`` wake samples in all."""
    for name, v, lo in (("n_train", n_train, 1), ("n_sleep0", n_sleep0, 0), ("wake_block", wake_block, 1),
                        ("n_sleep", n_sleep, 0)):  # fmt: skip
        if int(v) != v or v < lo:
            raise ConfigError(f"{name} must be an integer >= {lo}, got {v}")
    flags = [np.ones(n_sleep0, bool)]
    for start in range(0, n_train, wake_block):
        flags.append(np.zeros(min(wake_block, n_train - start), bool))
        if start + wake_block < n_train:
            flags.append(np.ones(n_sleep, bool))
    return np.concatenate(flags)


def _mean_angle_JT(Q: list[np.ndarray], W: list[np.ndarray], b: list[np.ndarray], X: np.ndarray) -> float:
    """Angle (degrees) between the stacked Q and J^T at the weights (W, b), mean over the inputs X."""
    JT = jacobian_T(W, b, X)
    Qs = np.vstack(Q)
    return float(np.mean([angle_deg(Qs, j) for j in JT]))


def online_sleep_wake(
    p: SpikingParams,
    w0: Weights,
    Xtr: np.ndarray,
    Ytr: np.ndarray,
    Xte: np.ndarray,
    Yte: np.ndarray,
    asleep: np.ndarray,
    every: int,
    target: str = "cpp_standalone",
    build_dir: str = "/tmp/dfc_spk_sleepwake",
    n_angle: int = 100,
) -> dict[str, Any]:
    """Online learning with sleep phases interleaved, in one run of one network
    (``SpikingDFC(sleep=True)``): the per-sample flags ``asleep`` (:func:`sleep_wake_schedule`)
    mark sleep samples (apical noise, Q learned by the anti-Hebbian rule, W fixed; their inputs are
    drawn from ``Xtr``, seed ``p.seed``) and wake samples (``Xtr``, ``Ytr`` in order; W learned
    with the current Q, Q fixed). Every ``every`` samples of the schedule: the number of wake
    samples so far, the test loss of the expected output and the angle between the stacked Q and
    :math:`J^T` at the current weights (mean over ``n_angle`` test inputs)."""
    asleep = np.asarray(asleep, bool)
    n_tr = Xtr.shape[0]
    if int((~asleep).sum()) != n_tr:
        raise ConfigError(f"asleep has {int((~asleep).sum())} wake samples, Xtr has {n_tr}")
    N = asleep.size
    rng = np.random.default_rng(p.seed)
    X = np.zeros((N, Xtr.shape[1]))
    Y = np.zeros((N, Ytr.shape[1]))
    X[~asleep], Y[~asleep] = Xtr, Ytr
    X[asleep] = Xtr[rng.integers(0, n_tr, int(asleep.sum()))]
    net = SpikingDFC(p, w0, target=target, record_weights_every=every, build_dir=build_dir, sleep=True)
    t0 = time.perf_counter()
    out = net.run(X, Y, learn=True, control=True, asleep=asleep)  # the network gates W off in sleep
    wall = time.perf_counter() - t0
    L = p.n_layers
    w1 = net.get_weights()
    g = np.round(out["ckpt_t_ms"] / p.T_sample).astype(int)  # schedule samples before each checkpoint
    ckpts = checkpoint_weights(out, L)
    if g[-1] < N:
        g, ckpts = np.r_[g, N], [*ckpts, w1]
    wake_before = np.r_[0, np.cumsum(~asleep)]
    Xa = Xte[:n_angle]
    return {
        "schedule_samples": g,
        "samples": wake_before[g],
        "asleep": asleep,
        "test_loss": np.array([mse(feedforward(w.W, w.b, Xte), Yte) for w in ckpts]),
        "angle_JT": np.array([_mean_angle_JT(w.Q, w.W, w.b, Xa) for w in ckpts]),
        "Q_norm": np.array([np.linalg.norm(np.vstack(w.Q)) for w in ckpts]),
        "final_test_loss": mse(feedforward(w1.W, w1.b, Xte), Yte),
        "wall_s": wall,
        "sim_s": N * p.T_sample * 1e-3,
        "weights": w1,
        "ckpts": ckpts,
    }


def sleep_wake(
    config: str = "toy_student_teacher",
    seeds: tuple[int, ...] = (0, 1, 2),
    n_train: int | None = None,
    n_test: int | None = None,
    n_sleep0: int = 60,
    wake_block: int = 25,
    n_sleep: int = 10,
    every: int = 5,
    variants: tuple[str, ...] = ("learned", "fixed", "random"),
    sleep_sigma: float = 0.8,
    sleep_eta_Q: float = 8.0,
    n_angle: int = 100,
    target: str = "cpp_standalone",
    overrides: Mapping[str, Any] | None = None,
    partial_stem: str | Path | None = None,
) -> dict[str, Any]:
    """Spiking DFC end to end with feedback learned by spikes, on the student-teacher task.

    Per seed, the same training samples and the same initial W and b (:func:`toy_task`), test loss
    after ``n_train`` online samples with

    - ``learned``: Q from :func:`random_Q`, learned by ``n_sleep0`` sleep samples before learning
      and ``n_sleep`` sleep samples after every ``wake_block`` wake samples
      (:func:`online_sleep_wake`, one network; sleep noise ``sleep_sigma``, rate ``sleep_eta_Q``);
    - ``fixed``: Q fixed to the weight product of the initial W (:func:`student_teacher`'s);
    - ``random``: the random Q of ``learned``, never learned (control);
    - the untrained network;

    and the angle between the stacked Q and :math:`J^T` at the current weights along each run
    (mean over ``n_angle`` test inputs). Build folders ``/tmp/dfc_spk_sleepwake_<variant>``.
    ``partial_stem``: also :func:`save` the seeds done so far there after every seed.
    """
    known = ("learned", "fixed", "random")
    if not variants or any(v not in known for v in variants):
        raise ConfigError(f"variants = {variants!r}: choose from {known}")
    p0, cfg = load(config)
    p0 = p0.replace(sleep_sigma=sleep_sigma, sleep_eta_Q=sleep_eta_Q, **dict(overrides or {}))
    tr = cfg.get("training", {})
    n_train = int(n_train or tr.get("n_train", 300))
    n_test = int(n_test or tr.get("n_test", 200))
    asleep = sleep_wake_schedule(n_train, n_sleep0, wake_block, n_sleep)
    res: dict[str, Any] = {
        "seeds": np.array(seeds), "n_train": n_train, "n_test": n_test, "n_sleep0": n_sleep0,
        "wake_block": wake_block, "n_sleep": n_sleep, "n_sleep_total": int(asleep.sum()),
        "asleep": asleep, "target": target,
    }  # fmt: skip
    rows: dict[str, dict[str, list[Any]]] = {v: {} for v in variants}
    untrained = []
    for s in seeds:
        Xtr, Ytr, Xte, Yte, w0 = toy_task(p0.sizes, cfg, s, n_train, n_test)
        untrained.append(mse(feedforward(w0.W, w0.b, Xte), Yte))
        p = p0.replace(seed=s)
        for v in variants:
            bd = f"/tmp/dfc_spk_sleepwake_{v}"
            if v == "learned":
                w = Weights(w0.W, w0.b, random_Q(p.sizes, s))
                r = online_sleep_wake(p, w, Xtr, Ytr, Xte, Yte, asleep, every, target, bd, n_angle)
                res["learned_samples"], res["learned_schedule_samples"] = r["samples"], r["schedule_samples"]
                extra = {"angle_JT": r["angle_JT"], "Q_norm": r["Q_norm"]}
            else:
                w = w0 if v == "fixed" else Weights(w0.W, w0.b, random_Q(p.sizes, s))
                r = online_run(p, w, Xtr, Ytr, Xte, Yte, wake_block, target=target, build_dir=bd)
                res[f"{v}_samples"] = r["samples"]
                ws = checkpoint_weights(r["ckpt"], p.n_layers, w.Q)
                if r["samples"].size > len(ws):  # the last point is the final state
                    ws.append(Weights(r["weights"].W, r["weights"].b, w.Q))
                extra = {"angle_JT": np.array([_mean_angle_JT(x.Q, x.W, x.b, Xte[:n_angle]) for x in ws])}
            for k, val in {"test_loss": r["test_loss"], "final": r["final_test_loss"], "wall_s": r["wall_s"],
                           **extra}.items():  # fmt: skip
                rows[v].setdefault(k, []).append(val)
            print(f"{v} seed {s}: test loss {untrained[-1]:.4f} -> {r['final_test_loss']:.4f}, angle(Q, J^T) "
                  f"{extra['angle_JT'][0]:.1f} -> {extra['angle_JT'][-1]:.1f} deg, {r['wall_s']:.1f} s wall",
                  flush=True)  # fmt: skip
        for v, d in rows.items():
            for k, vals in d.items():
                res[f"{v}_{k}"] = np.array(vals)
        res["untrained_test_loss"] = np.array(untrained)
        res["params"] = p0.to_dict()
        if partial_stem is not None:
            save({**res, "seeds_done": len(untrained)}, partial_stem)
    return res
