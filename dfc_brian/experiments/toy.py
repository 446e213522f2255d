"""Toy (student-teacher) experiments of the paper: Fig. 1D, compartments, Fig. 3, Figs. S2-S4.

Each function runs one experiment and returns plain arrays in a dict, so the notebooks in
``notebooks/`` stay thin callers; :func:`save` writes such a dict as ``<stem>.npz`` (arrays,
no pickle) plus ``<stem>.json`` (everything else). ``quick=True`` shrinks every experiment to
a few seconds of CPU time (the notebook tests); the full settings are documented per function
and in ``figures/README.md``.

Experiments (``shared/spec/DFC_SPEC.md`` section 4; student-teacher data of
:func:`~dfc_brian.experiments.data.student_teacher`, unscaled teacher outputs):

- :func:`fig1d`: the PI controller drives a 15-10-10-1 student's output to its target
  (Q pre-trained in the batched engine, controlled phase in Brian2).
- :func:`compartments`: basal, apical and somatic voltages of chosen neurons during a
  controlled phase and a noisy sleep phase (Brian2 engine).
- :func:`fig3`: training of the 15-10-10-5 student with DFC, DFC-SS, DFC-SSA, their fixed-Q
  versions and DFA (batched engine, the authors' epoch order of
  :func:`~dfc_brian.experiments.train.train_epoch`, the loop of every experiment), with
  condition 2, condition 1, the stability :math:`\\lambda_{max}` and the angles to the MN,
  GN and SSA updates per epoch.
- :func:`feedback_learning`: sleep-phase-only learning of Q in a 20-10-5 student; angle of
  Q to the damped pseudo-inverses :math:`J^T (J J^T + \\gamma I)^{-1}` (Figs. S2-S4).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dfc_brian.analysis import theory
from dfc_brian.config import load_config
from dfc_brian.engines.batched import BatchedDFC
from dfc_brian.engines.methods import DFAMethod, DFCMethod, Method, make_method
from dfc_brian.experiments.data import student_teacher
from dfc_brian.experiments.results import array_json, atomic_savez, json_array, load_npz
from dfc_brian.experiments.train import pretrain_epochs, pretrain_feedback, train_epoch, unpack_method_state
from dfc_brian.model import mlp
from dfc_brian.model.params import ConfigError, ModelParams, check_nonnegative
from dfc_brian.model.weights import init_weights

__all__ = [
    "FIG3_METHODS",
    "FIG3_METRICS",
    "compartments",
    "feedback_curves",
    "feedback_learning",
    "fig1d",
    "fig3",
    "load",
    "method_update",
    "save",
]

# ----------------------------------------------------------------------------- parameters
# Every setting of Figs. 1D, 3 and S2-S4 comes from the configs in models/toy/, which carry the
# authors' values (shared/spec/authors_configs/toy.json); only the display settings are here.
FIG1D_CONFIG = "toy/fig1d"
FIG1D_QUICK_TMAX = 400  # quick: 2 tau_u of the controlled phase instead of 10
COMPARTMENT_STEPSIZE = 0.3  # lambda of the compartment view: 6x Fig. 1D's, so Q u is visible
SLEEP_VIEW_STEPS = 1000  # stored states of the displayed sleep phase (2 tau_u; training: 50)

# Fig. 3 (models/toy/fig3_*.yaml); the authors' figure has no BP curve (BP stays selectable)
FIG3_METHODS = ("DFC", "DFC-SS", "DFC-SSA", "DFC (fixed)", "DFC-SS (fixed)", "DFC-SSA (fixed)", "DFA")
FIG3_CONFIGS = {
    "DFC": "toy/fig3_dfc",
    "DFC-SS": "toy/fig3_dfc_ss",
    "DFC-SSA": "toy/fig3_dfc_ssa",
    "DFC (fixed)": "toy/fig3_dfc_fixed",
    "DFC-SS (fixed)": "toy/fig3_dfc_ss_fixed",
    "DFC-SSA (fixed)": "toy/fig3_dfc_ssa_fixed",
    "DFA": "toy/fig3_dfa",
    "BP": "toy/fig3_bp",
}
FIG3_METRICS = (
    "condition_2",
    "condition_1",
    "lambda_max",
    "angle_MN",
    "angle_GN",
    "angle_SSA",
    "test_loss",
    "test_loss_full",
    "frac_nonconverged",
)
FIG3_N_EVAL = 128  # size of the fixed test minibatch on which conditions and angles are computed

# Figs. S2-S4 (models/toy/figS2_S4_<variant>.yaml, section `curves`)
FB_CONFIGS = {"tanh": "toy/figS2_S4_tanh", "linear": "toy/figS2_S4_linear"}
FB_FIGURES = ("fig_S2", "fig_S3", "fig_S4")
FB_N_EVAL = 128  # test samples over which the angle of Q is averaged


# ----------------------------------------------------------------------------- saving
def _flatten(d: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, np.ndarray):
            arrays[key] = v
        elif isinstance(v, Mapping):
            a, m = _flatten(v, key + ".")
            arrays.update(a)
            if m:
                meta[k] = m
        else:
            meta[k] = v
    return arrays, meta


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def save(result: Mapping[str, Any], stem: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.npz`` (every ndarray, nested keys joined by '.') and ``<stem>.json``.

    Returns the two paths. Load back with :func:`load` (``allow_pickle=False``).
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    arrays, meta = _flatten(result)
    npz, js = stem.with_suffix(".npz"), stem.with_suffix(".json")
    np.savez(npz, **arrays)
    js.write_text(json.dumps(meta, indent=1, default=_json_default) + "\n")
    return npz, js


def load(stem: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read what :func:`save` wrote: (flat dict of arrays, JSON metadata)."""
    stem = Path(stem)
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return arrays, json.loads(stem.with_suffix(".json").read_text())


# ----------------------------------------------------------------------------- helpers
def _toy_cfg(sizes: Sequence[int], controller: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fig. 3 DFC config with another student architecture (tanh hidden, linear output)."""
    cfg = copy.deepcopy(load_config(FIG3_CONFIGS["DFC"]))
    cfg["model"] = {
        "sizes": list(sizes),
        "activations": ["tanh"] * (len(sizes) - 2) + ["linear"],
        "loss": "mse",
    }
    if controller:
        cfg["controller"].update(controller)
    return cfg


def _brian_net(cfg: Mapping[str, Any], seed: int, target: str):
    from dfc_brian.engines.brian2_engine import BrianDFC

    params = ModelParams.from_dict(cfg)
    w = init_weights(params.network, seed=seed, q_init="weight_product")
    return BrianDFC(params, w, target=target, seed=seed), params


# ----------------------------------------------------------------------------- schedule
def _gn_damping(cfg: Mapping[str, Any]) -> float | None:
    """``analysis.gn_damping`` of a config (the damping of the GN / MN references), or None."""
    sec = cfg.get("analysis")
    if sec is None or "gn_damping" not in sec:
        return None
    return check_nonnegative("analysis.gn_damping", sec["gn_damping"])


def _q_stats(method: Method, X: np.ndarray) -> dict[str, float]:
    """Stability and alignment of the current Q of a DFC method on the samples X."""
    p, w = method.params, method.weights
    spec, ctrl = p.network, p.controller
    lam = theory.lambda_max_pi(w, spec, X, ctrl.alpha, ctrl.k_p, ctrl.tcr, form="network")
    return {
        "lambda_max": float(np.max(lam)),
        "condition_2": theory.condition_2(w, spec, X),
        "angle_Q_JT": theory.angle_Q_JT(w, spec, X),
        "angle_Q_pinv": theory.angle_Q_damped_pinv(w, spec, X, 0.0),
    }


# ----------------------------------------------------------------------------- Fig. 1D
def fig1d(
    quick: bool = True,
    target: str = "numpy",
    seed: int = 0,
    n_samples: int = 3,
    epochs_fb: int | None = None,
) -> dict[str, Any]:
    """Fig. 1D: the PI controller steers the output of a 15-10-10-1 student to its target.

    Settings of ``models/toy/fig1d.yaml`` (the authors' ``config_fig1D``): student 15-10-10-1
    (tanh, tanh, linear); Q starts xavier-normal and is pre-trained for ``training.epochs_fb`` =
    50 sleep-only epochs (SGD, ``lr_fb_pretrain`` 0.1, the config's sleep phase: sigma 0.01,
    k_p_fb 0.1, alpha_fb 0.25, dt_fb 0.002, T_fb 50, tcr_fb 0.01, tau_A 0.3) on the 5000
    student-teacher training inputs, minibatches of 128, in the batched engine
    (:func:`~dfc_brian.engines.methods.make_method`, ``pretrain_feedback_step``). The trained
    weights then go into a Brian2 network (:class:`BrianDFC`), whose controlled phase
    (k_p 1, alpha 0.0015, dt 0.005, T 2000, tcr 0.2, lambda 0.05) runs on the first
    ``n_samples`` training samples as one minibatch (batch-mean MSE target).

    Quick: 25 pre-training epochs on 256 inputs and T = 400 (2 tau_u).

    Returns
    -------
    dict
        ``t`` (T,) in units of :math:`\\tau_u`; ``r_L`` (S, T) output rate; ``r_star`` (S,)
        output target; ``r_L_ff`` (S,) feedforward output :math:`r_L^-`; ``u`` (S, T) control
        signal; ``e`` (S, T); ``steady_residual`` (S,) :math:`|r_L[T-1] - (r_L^* - \\alpha
        u[T-1])|`; ``converged`` (S,) the spec's criteria; ``q_before`` and ``q_after``
        (λ_max of the linearised network, condition 2, angles of Q to J^T and J^+ on the S
        samples, before and after pre-training); ``wall_s`` (Brian2), ``wall_pretrain_s``;
        ``config``.
    """
    from dfc_brian.engines.brian2_engine import BrianDFC

    cfg = copy.deepcopy(load_config(FIG1D_CONFIG))
    if quick:
        cfg["controller"]["tmax"] = FIG1D_QUICK_TMAX
    d = cfg["data"]
    n_tr = 256 if quick else int(d.get("n_train", 5000))
    E_fb = (
        (25 if quick else int(cfg["training"].get("epochs_fb", 0))) if epochs_fb is None else int(epochs_fb)
    )
    data = student_teacher(int(d["n_in"]), int(d["n_out"]), seed=seed, n_train=n_tr, n_val=1, n_test=1)
    method = make_method(cfg, seed)
    X3, y3 = data.train.X[:n_samples], data.train.y[:n_samples]
    q_before = _q_stats(method, X3)
    t0 = time.perf_counter()
    bs = method.training["batch_size"]
    pretrain_feedback(method, data.train.X, E_fb, np.random.default_rng([seed, 2]), bs)
    wall_pre = time.perf_counter() - t0
    q_after = _q_stats(method, X3)
    params = method.params
    net = BrianDFC(params, method.weights.copy(), target=target, seed=seed)
    L = params.network.n_layers
    t0 = time.perf_counter()
    res = net.controlled_phase(X3, y3, plasticity="none", record=("r", "u", "e"), layers=[L - 1])
    wall = time.perf_counter() - t0
    r_L = res.r[L - 1][:, :, 0]
    u = res.u[:, :, 0]
    r_star = res.r_star[:, 0]
    alpha = params.controller.alpha
    return {
        "t": np.asarray(res.t),
        "r_L": r_L,
        "r_star": r_star,
        "r_L_ff": res.r_L_ff[:, 0],
        "u": u,
        "e": res.e[:, :, 0],
        "steady_residual": np.abs(r_L[:, -1] - (r_star - alpha * u[:, -1])),
        "converged": np.asarray(res.converged),
        "q_before": q_before,
        "q_after": q_after,
        "wall_s": wall,
        "wall_pretrain_s": wall_pre,
        "config": {
            "config": FIG1D_CONFIG,
            "controller": cfg["controller"],
            "sleep": cfg["sleep"],
            "training": cfg["training"],
            "epochs_fb": E_fb,
            "n_train": n_tr,
            "seed": seed,
            "target": target,
            "quick": quick,
        },
    }


# ----------------------------------------------------------------------------- compartments
def compartments(
    quick: bool = True,
    target: str = "numpy",
    seed: int = 0,
    neurons: Sequence[int] = (0, 1),
    target_stepsize: float = COMPARTMENT_STEPSIZE,
) -> dict[str, Any]:
    """Voltages of the three compartments of chosen neurons, controlled and sleep phase (Brian2).

    The 15-10-10-5 student of Fig. 3 (controller of ``models/toy/fig3_dfc.yaml``:
    ``k_p = 1.5``, ``alpha = 0.0015``, ``dt = 0.005``, ``tcr = 0.2``), Q fixed to the weight
    product, one student-teacher sample. The target step is ``target_stepsize`` = 0.3
    (Fig. 3: 0.05) so that the apical input :math:`Q_i u` is clearly visible.

    - controlled phase: ``T = 2000`` steps (10 :math:`\\tau_u`; quick: 400), no plasticity;
    - sleep phase: the sleep controller (``k_p_fb = 0.1``, ``alpha_fb = 0.25``,
      ``dt_fb = 0.002``, ``tcr_fb = 0.01``, ``tau_A = 0.3``, noise ``sigma = 0.01``) run for
      ``T_fb = 1000`` steps (2 :math:`\\tau_u`; quick: 250) instead of the 50 of training, so
      that the apical low-pass filter of the noise is visible; Q not plastic.

    Returns
    -------
    dict
        ``controlled`` and ``sleep``: each ``t`` (T,), ``v_basal.layer<i>``, ``v_apical.layer<i>``,
        ``v_soma.layer<i>`` (T, n_rec) for layers 1..L, ``u`` and ``e`` (T, n_L); plus
        ``neurons``, ``wall_s``, ``config``.
    """
    cfg = _toy_cfg([15, 10, 10, 5], {"target_stepsize": target_stepsize, "tmax": 400 if quick else 2000})
    cfg["sleep"]["tmax_fb"] = 250 if quick else SLEEP_VIEW_STEPS
    data = student_teacher(15, 5, seed=seed, n_train=1, n_val=1, n_test=1)
    net, params = _brian_net(cfg, seed, target)
    L = params.network.n_layers
    nrn = [list(neurons)] * L
    rec = ("v_basal", "v_apical", "v_soma", "u", "e")
    t0 = time.perf_counter()
    ctl = net.controlled_phase(data.train.X, data.train.y, plasticity="none", record=rec, neurons=nrn)
    slp = net.sleep_phase(data.train.X, plastic=False, noise=True, record=rec, neurons=nrn)
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {}
    for name, res in (("controlled", ctl), ("sleep", slp)):
        d: dict[str, np.ndarray] = {"t": np.asarray(res.t)}
        for var in ("v_basal", "v_apical", "v_soma"):
            for i in range(L):
                d[f"{var}.layer{i + 1}"] = getattr(res, var)[i][0]
        d["u"] = res.u[0]
        d["e"] = res.e[0]
        out[name] = d
    out["neurons"] = np.asarray(neurons)
    out["wall_s"] = wall
    out["config"] = {
        "controller": cfg["controller"],
        "sleep": cfg["sleep"],
        "seed": seed,
        "target": target,
        "q": "weight_product",
        "quick": quick,
    }
    return out


# ----------------------------------------------------------------------------- Fig. 3
def method_update(method: Method, X: np.ndarray, y: np.ndarray) -> mlp.Update:
    """The forward update a method would make on ``(X, y)``, without applying it.

    An update in the sign convention of :mod:`dfc_brian.model.mlp` (proportional to
    :math:`-\\nabla L`): DFC the time-averaged nonlinear difference, DFC-SS its last step,
    DFC-SSA the analytic steady state (all computed with a fresh
    :class:`~dfc_brian.engines.batched.BatchedDFC` on ``method.weights``, so no sleep phase
    runs and no optimiser state changes); DFA minus its surrogate gradient; BP minus the
    gradient. Lists over layers of ``(dW, db)``.
    """
    w = method.weights
    spec = method.params.network
    if isinstance(method, DFCMethod):
        eng = BatchedDFC(method.params, w)
        r_ff = eng.feedforward(X)[1][-1]
        r_star = eng.output_target(r_ff, y)
        if method.name == "DFC-SSA":
            res = eng.ssa(X, r_star)
            return list(zip(res.dW_ssa, res.db_ssa, strict=True))
        res = eng.controlled_phase(X, r_star, accumulate=method.name == "DFC")
        if method.name == "DFC":
            return list(zip(res.dW_dfc, res.db_dfc, strict=True))
        return list(zip(res.dW_ss, res.db_ss, strict=True))
    if isinstance(method, DFAMethod):
        return [(-a, -c) for a, c in mlp.dfa_gradient(w, spec, method.B_fb, X, y, spec.loss)]
    return mlp.bp_update(w, spec, X, y, spec.loss)


def _feedback_of(method: Method) -> list[np.ndarray] | None:
    if isinstance(method, DFCMethod):
        return method.weights.Q
    if isinstance(method, DFAMethod):
        return method.B_fb
    return None


def _fig3_metrics(
    method: Method, X: np.ndarray, y: np.ndarray, gamma: float, X_full: np.ndarray, y_full: np.ndarray
) -> dict[str, float]:
    """Conditions, stability and angles of one method on the fixed test minibatch (X, y)."""
    p = method.params
    spec, ctrl = p.network, p.controller
    w = method.weights
    fb = _feedback_of(method)
    m: dict[str, float] = {"condition_1": theory.condition_1(w, spec, X)}
    m["condition_2"] = theory.condition_2(w, spec, X, Q=fb) if fb is not None else np.nan
    if isinstance(method, DFCMethod):
        lam = theory.lambda_max_pi(w, spec, X, ctrl.alpha, ctrl.k_p, ctrl.tcr, Q=fb, form="network")
        m["lambda_max"] = float(np.max(lam))
    else:
        m["lambda_max"] = np.nan
    delta = mlp.output_delta(method.predict(X), y, spec.loss, ctrl.target_stepsize)
    upd = method_update(method, X, y)
    flat = theory.flatten_update(upd)
    mn = mlp.minimum_norm_update(w, spec, X, delta, gamma)
    gn = mlp.gauss_newton_update(w, spec, X, delta, gamma)
    m["angle_MN"] = theory.angle(flat, theory.flatten_update(mn))
    m["angle_GN"] = theory.angle(flat, theory.flatten_update(gn))
    if isinstance(method, DFCMethod):
        ssa = mlp.ssa_update(w, spec, X, delta, ctrl.alpha, Q=fb)
        m["angle_SSA"] = theory.angle(flat, theory.flatten_update(ssa))
    else:
        m["angle_SSA"] = np.nan
    m["test_loss"] = mlp.loss_value(method.predict(X), y, spec.loss)
    m["test_loss_full"] = mlp.loss_value(method.predict(X_full), y_full, spec.loss)
    return m


def fig3(
    methods: Sequence[str] = FIG3_METHODS,
    epochs: int | None = None,
    quick: bool = True,
    seed: int = 0,
    n_train: int | None = None,
    tmax: int | None = None,
    progress: bool = False,
    checkpoint_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Fig. 3: student-teacher training with the batched engine, metrics per epoch.

    Every setting comes from ``models/toy/fig3_*.yaml``, the authors' ``configs_fig3``
    (15-10-10-5 tanh student, unscaled teacher outputs, SGD lr_eff 1.0, clip 1.0, batch 128,
    ``k_p = 1.5``, ``alpha = 0.0015``, ``dt = 0.005``, ``tcr = 0.2``, ``T = 1000``, proactive
    off, non-converged samples included; trained Q: SGD sleep with lr_fb 0.002 after 50
    sleep-only pre-training epochs at lr 0.1; DFA target-based). Each method is built by
    :func:`~dfc_brian.engines.methods.make_method`; trained-Q methods first run
    ``training.epochs_fb`` pre-training epochs, then every epoch is one sleep-only epoch, one
    forward epoch, ``extra_sleep`` (2) sleep-only epochs (the loop's
    :func:`~dfc_brian.experiments.train.pretrain_feedback` and
    :func:`~dfc_brian.experiments.train.train_epoch`, forward and sleep minibatches from two
    generators). The same seed gives every method the same data, initial forward weights and forward
    minibatch order.

    Before training and after every epoch, on a fixed minibatch of 128 test samples:

    - ``condition_2``: fraction of Q in the row space of J (DFA: its feedback matrices B_i);
    - ``condition_1``: ``dev_r`` of the feedforward rates;
    - ``lambda_max``: the largest real part of the eigenvalues of the linearised PI-controlled
      network, maximum over the minibatch, :func:`theory.lambda_max_pi` with ``form='network'``
      (the exact linearisation of the layered somatic dynamics the engines integrate); NaN for
      DFA and BP;
    - ``angle_MN``, ``angle_GN``, ``angle_SSA``: angle (degrees, whole network, weights and
      biases) between the method's batch-mean update on that minibatch (computed, not applied,
      see :func:`method_update`) and the damped minimum-norm, Gauss-Newton and DFC-SSA updates
      of the same weights and Q; damping :math:`\\gamma` = the config's
      ``analysis.gn_damping`` (the authors' ``gn_damping``: 0.1 for the DFC variants, 0 for
      DFA; a config without it, e.g. BP's, uses the DFC value 0.1, recorded in ``config``);
    - ``test_loss``: MSE on that minibatch; ``test_loss_full``: MSE on the whole test set
      (1000 samples);
    - per epoch of training, ``frac_nonconverged`` (fraction of the forward epoch's training
      samples failing the spec's convergence criteria; NaN for DFC-SSA, DFA, BP) and
      ``train_loss`` (mean minibatch loss of the forward epoch).

    Parameters
    ----------
    methods : names from :data:`FIG3_METHODS` (and ``BP``).
    epochs : training epochs (default: the configs' 300; quick: 2).
    quick : tiny setting for tests: 256 training samples, 128 test samples, ``T = 200``,
        1 pre-training epoch.
    n_train, tmax : override the training set size and the controlled-phase length T.
    checkpoint_dir : optional folder; each method's state (weights, optimiser moments, noise and
        minibatch generators, metric history, wall time) is written there after pre-training
        and after every epoch (``<method>.ckpt.npz``, atomic), and a later call with the same
        arguments resumes from it to the identical result.

    Returns
    -------
    dict
        ``epochs`` (E + 1,), ``methods`` (list), ``metrics``: method -> metric -> (E + 1,)
        (``frac_nonconverged`` and ``train_loss``: NaN at epoch 0), ``wall_s`` per method,
        ``config`` (every config used, ``gn_damping`` per method).
    """
    unknown = [m for m in methods if m not in FIG3_CONFIGS]
    if unknown:
        raise ConfigError(f"unknown Fig. 3 method(s) {unknown}; choose from {list(FIG3_CONFIGS)}")
    E = (2 if quick else 300) if epochs is None else int(epochs)
    n_tr = (256 if quick else 5000) if n_train is None else int(n_train)
    T = (200 if quick else None) if tmax is None else int(tmax)
    n_test = 128 if quick else 1000
    n_eval = 64 if quick else FIG3_N_EVAL
    data = student_teacher(15, 5, seed=seed, n_train=n_tr, n_val=1, n_test=n_test)
    Xf, yf = data.test.X, data.test.y
    Xe, ye = Xf[:n_eval], yf[:n_eval]
    X, Y = data.train.X, data.train.y
    default_gamma = _gn_damping(load_config(FIG3_CONFIGS["DFC"]))
    metrics: dict[str, dict[str, np.ndarray]] = {}
    walls: dict[str, float] = {}
    used_cfgs: dict[str, Any] = {}
    gammas: dict[str, float | None] = {}
    for name in methods:
        cfg = copy.deepcopy(load_config(FIG3_CONFIGS[name]))
        if T is not None and "controller" in cfg:
            cfg["controller"]["tmax"] = T
        if quick:
            tr = cfg["training"]
            tr["epochs_fb"] = min(int(tr.get("epochs_fb", 0)), 1)
        gamma = _gn_damping(cfg)
        gamma = default_gamma if gamma is None else gamma
        if gamma is None:
            raise ConfigError(f"{FIG3_CONFIGS[name]}: no analysis.gn_damping (the GN / MN reference damping)")
        used_cfgs[name], gammas[name] = cfg, gamma
        method = make_method(cfg, seed)
        t0 = time.perf_counter()
        rng_fwd, rng_sleep = np.random.default_rng([seed, 3]), np.random.default_rng([seed, 4])
        ckpt, run_id = None, {}
        if checkpoint_dir is not None:
            ckpt = Path(checkpoint_dir) / f"{_slug(name)}.ckpt.npz"
            run_id = {"method": name, "seed": seed, "n_train": n_tr, "n_test": n_test, "n_eval": n_eval}
            run_id.update(tmax=T, config=cfg)
        hist: dict[str, list[float]] = {}
        wall0 = 0.0
        if ckpt is not None and ckpt.exists():
            st = load_npz(ckpt)
            if array_json(st["run_id"]) != array_json(json_array(run_id)):
                raise ConfigError(f"{ckpt} belongs to another Fig. 3 run; remove it or use another folder")
            method.load_state_dict(unpack_method_state(st))
            rng_fwd.bit_generator.state = array_json(st["rng_fwd"])
            rng_sleep.bit_generator.state = array_json(st["rng_sleep"])
            hist = {k: list(v) for k, v in array_json(st["hist"]).items()}
            wall0 = float(st["wall_s"])
        else:
            tr = method.training
            pretrain_feedback(
                method, X, pretrain_epochs(tr), np.random.default_rng([seed, 2]), tr["batch_size"]
            )
            hist = {k: [] for k in FIG3_METRICS if k != "frac_nonconverged"}
            hist["frac_nonconverged"], hist["train_loss"] = [np.nan], [np.nan]
            for k, v in _fig3_metrics(method, Xe, ye, gamma, Xf, yf).items():
                hist[k].append(v)

        _fig3_checkpoint(ckpt, method, run_id, rng_fwd, rng_sleep, hist, wall0 + time.perf_counter() - t0)
        simulates = isinstance(method, DFCMethod) and method.name != "DFC-SSA"
        for ep in range(len(hist["train_loss"]) - 1, E):
            out = train_epoch(method, X, Y, method.training, rng_fwd, rng_sleep, epoch=ep + 1)
            hist["frac_nonconverged"].append(out.n_nonconverged / n_tr if simulates else np.nan)
            hist["train_loss"].append(out.loss)
            for k, v in _fig3_metrics(method, Xe, ye, gamma, Xf, yf).items():
                hist[k].append(v)
            if progress:
                print(
                    f"{name}: epoch {ep + 1}/{E} test loss {hist['test_loss_full'][-1]:.4g} "
                    f"angle GN {hist['angle_GN'][-1]:.1f} ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
            _fig3_checkpoint(ckpt, method, run_id, rng_fwd, rng_sleep, hist, wall0 + time.perf_counter() - t0)
        walls[name] = wall0 + time.perf_counter() - t0
        metrics[name] = {k: np.asarray(v, dtype=np.float64)[: E + 1] for k, v in hist.items()}
    return {
        "epochs": np.arange(E + 1),
        "methods": list(methods),
        "metrics": metrics,
        "wall_s": walls,
        "config": {
            "epochs": E,
            "n_train": n_tr,
            "n_test": n_test,
            "tmax": T,
            "n_eval": n_eval,
            "seed": seed,
            "quick": quick,
            "gn_damping": gammas,
            "configs": used_cfgs,
        },
    }


def _fig3_checkpoint(
    ckpt: Path | None,
    method: Method,
    run_id: Mapping[str, Any],
    rng_fwd: np.random.Generator,
    rng_sleep: np.random.Generator,
    hist: Mapping[str, Sequence[float]],
    wall_s: float,
) -> None:
    """Write one Fig. 3 method's resumable state (atomic); nothing if ``ckpt`` is None."""
    if ckpt is None:
        return
    arrays = {f"method/{k}": np.asarray(v) for k, v in method.state_dict().items()}
    arrays.update(
        run_id=json_array(run_id),
        rng_fwd=json_array(rng_fwd.bit_generator.state),
        rng_sleep=json_array(rng_sleep.bit_generator.state),
        hist=json_array({k: [float(x) for x in v] for k, v in hist.items()}),
        wall_s=np.array(wall_s),
    )
    atomic_savez(ckpt, arrays)


def load_fig3(stem: str | Path) -> dict[str, Any]:
    """Read a :func:`fig3` result written by :func:`save` back into :func:`fig3`'s layout."""
    arrays, meta = load(stem)
    metrics: dict[str, dict[str, np.ndarray]] = {m: {} for m in meta["methods"]}
    for key, arr in arrays.items():
        if key.startswith("metrics."):
            for m in meta["methods"]:
                if key.startswith(f"metrics.{m}."):
                    metrics[m][key[len(f"metrics.{m}.") :]] = arr
    return {
        "epochs": arrays["epochs"],
        "methods": list(meta["methods"]),
        "metrics": metrics,
        "wall_s": meta["wall_s"],
        "config": meta["config"],
    }


def _slug(name: str) -> str:
    return name.lower().replace(" (fixed)", "_fixed").replace("-", "_")


def merge_fig3(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Join :func:`fig3` results of disjoint method subsets (e.g. run in parallel processes).

    Every part must have the same epochs and data settings; the methods keep the order of the
    parts. Raises ConfigError if the settings differ or a method appears twice.
    """
    if not parts:
        raise ConfigError("merge_fig3 needs at least one part")
    keys = ("epochs", "n_train", "n_test", "tmax", "n_eval", "seed", "quick")
    ref = {k: parts[0]["config"][k] for k in keys}
    out: dict[str, Any] = {
        "epochs": np.asarray(parts[0]["epochs"]),
        "methods": [],
        "metrics": {},
        "wall_s": {},
        "config": dict(ref, gn_damping={}, configs={}),
    }
    for p in parts:
        got = {k: p["config"][k] for k in keys}
        if got != ref:
            raise ConfigError(f"merge_fig3: parts differ in their settings: {got} vs {ref}")
        for m in p["methods"]:
            if m in out["metrics"]:
                raise ConfigError(f"merge_fig3: method {m!r} appears in two parts")
            out["methods"].append(m)
            out["metrics"][m] = p["metrics"][m]
            out["wall_s"][m] = p["wall_s"][m]
            out["config"]["gn_damping"][m] = p["config"]["gn_damping"][m]
            out["config"]["configs"][m] = p["config"]["configs"][m]
    return out


# ----------------------------------------------------------------------------- Figs. S2-S4
_FB_SHORT = {"analysis.gn_damping": "gamma", "sleep.alpha_fb": "alpha_fb", "sleep.k_p_fb": "k_p_fb"}


def feedback_curves(cfg: Mapping[str, Any], figure: str) -> list[tuple[str, float, dict[str, Any]]]:
    """The runs of one figure of a ``figS2_S4_*`` config: ``(label, value, config)`` per curve.

    ``cfg['curves'][figure]`` holds ``vary`` (a dotted key, e.g. ``sleep.alpha_fb``),
    ``values`` and per-section overrides (``sleep``, ``analysis``, ...); each curve is the
    config with the overrides applied and ``vary`` set to one value (``curves`` removed).
    """
    curves = cfg.get("curves")
    if not isinstance(curves, Mapping) or figure not in curves:
        have = sorted(curves) if isinstance(curves, Mapping) else []
        raise ConfigError(f"config {cfg.get('name')!r} has no curves.{figure} (has: {have})")
    spec = curves[figure]
    vary = spec.get("vary")
    if not isinstance(vary, str) or vary.count(".") != 1:
        raise ConfigError(f"curves.{figure}.vary must be a dotted key 'section.field', got {vary!r}")
    section, field = vary.split(".")
    values = spec.get("values")
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"curves.{figure}.values must be a non-empty list, got {values!r}")
    base = copy.deepcopy({k: v for k, v in cfg.items() if k != "curves"})
    for sec, over in spec.items():
        if sec in ("vary", "values"):
            continue
        if not isinstance(over, Mapping):
            raise ConfigError(f"curves.{figure}.{sec} must be a mapping of overrides, got {over!r}")
        base.setdefault(sec, {}).update(over)
    out = []
    for v in values:
        c = copy.deepcopy(base)
        c.setdefault(section, {})[field] = v
        out.append((f"{_FB_SHORT.get(vary, field)}={float(v):g}", float(v), c))
    return out


def feedback_learning(
    quick: bool = True,
    figures: Sequence[str] = FB_FIGURES,
    variants: Sequence[str] = ("tanh", "linear"),
    epochs: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Figs. S2-S4: feedback learning only; angle of Q to damped pseudo-inverses per epoch.

    Settings of ``models/toy/figS2_S4_<variant>.yaml`` (the authors' ``configs_figC2C3``):
    student 20-10-5, hidden layer tanh or linear, linear output, forward weights frozen at
    their xavier-normal initialisation, Q xavier-normal; ``training.epochs_fb`` = 25 sleep-only
    epochs over the 5000 student-teacher training inputs, minibatches of 128, SGD lr 0.1
    (``lr_fb_pretrain``), weight decay 0.01, joint clip 1; sleep phase T_fb = 300 steps of
    dt_fb 0.001, tcr_fb 0.005, tau_A 0.3, sigma 0.01. The curves of each figure are the
    config's ``curves`` section (:func:`feedback_curves`): S2 varies the damping gamma of the
    reference :math:`J^T (J J^T + \\gamma I)^{-1}` (alpha_fb 0.5, k_p_fb 0), S3 varies alpha_fb
    (k_p_fb 0.3, gamma 5), S4 varies k_p_fb (alpha_fb 0.1, gamma 5).

    Curves whose configs differ only in ``analysis`` (all of S2) share one training run (same
    seed, hence the same noise and minibatches). Before training and after each epoch the mean
    over 128 fixed test inputs of the angle between Q (all layers) and the curve's reference is
    recorded.

    Quick: 25 epochs on 256 inputs, angle over 32 test inputs.

    Returns
    -------
    dict
        ``epochs`` (E + 1,); ``panels``: figure -> variant -> {``labels`` (list), ``values``
        (C,), ``gamma`` (C,), ``angle`` (C, E + 1) degrees}; ``n_runs`` and ``wall_s`` per
        variant; ``config``.
    """
    unknown = [v for v in variants if v not in FB_CONFIGS]
    if unknown:
        raise ConfigError(f"unknown Fig. S2-S4 variant(s) {unknown}; choose from {list(FB_CONFIGS)}")
    panels: dict[str, dict[str, Any]] = {f: {} for f in figures}
    n_runs: dict[str, int] = {}
    walls: dict[str, float] = {}
    cfgs: dict[str, Any] = {}
    E = 0
    for variant in variants:
        cfg = copy.deepcopy(load_config(FB_CONFIGS[variant]))
        cfgs[variant] = cfg
        d = cfg["data"]
        n_tr = 256 if quick else int(d.get("n_train", 5000))
        n_ev = 32 if quick else FB_N_EVAL
        data = student_teacher(int(d["n_in"]), int(d["n_out"]), seed=seed, n_train=n_tr, n_val=1, n_test=n_ev)
        E = (25 if quick else int(cfg["training"].get("epochs_fb", 0))) if epochs is None else int(epochs)
        cache: dict[str, tuple[Any, Any, list[list[np.ndarray]]]] = {}
        t0 = time.perf_counter()
        for fig in figures:
            labels, values, gams, angles = [], [], [], []
            for label, value, c in feedback_curves(cfg, fig):
                gamma = _gn_damping(c)
                if gamma is None:
                    raise ConfigError(f"{FB_CONFIGS[variant]}: curves.{fig} has no analysis.gn_damping")
                key = json.dumps(
                    {k: v for k, v in c.items() if k not in ("analysis", "name")}, sort_keys=True
                )
                if key not in cache:
                    method = make_method(c, seed)
                    rng = np.random.default_rng([seed, 2])
                    snaps = [[q.copy() for q in method.weights.Q]]
                    for _ in range(E):
                        pretrain_feedback(method, data.train.X, 1, rng, method.training["batch_size"])
                        snaps.append([q.copy() for q in method.weights.Q])
                    cache[key] = (method.params.network, method.weights, snaps)
                spec, w, snaps = cache[key]
                ang = [theory.angle_Q_damped_pinv(w, spec, data.test.X, gamma, Q=q) for q in snaps]
                labels.append(label)
                values.append(value)
                gams.append(gamma)
                angles.append(ang)
            panels[fig][variant] = {
                "labels": labels,
                "values": np.asarray(values),
                "gamma": np.asarray(gams),
                "angle": np.asarray(angles, dtype=np.float64),
            }
        n_runs[variant] = len(cache)
        walls[variant] = time.perf_counter() - t0
    return {
        "epochs": np.arange(E + 1),
        "panels": panels,
        "n_runs": n_runs,
        "wall_s": walls,
        "config": {"epochs": E, "seed": seed, "quick": quick, "figures": list(figures), "configs": cfgs},
    }


# ----------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dfc_brian.experiments.toy fig3 --methods DFC DFC-SS --out STEM [--checkpoint-dir D]``.

    Runs a subset of the Fig. 3 methods at full size (one process per subset, so that the
    300-epoch figure can use several cores) and saves it with :func:`save`; resumable through
    ``--checkpoint-dir``. The notebook joins the parts with :func:`merge_fig3`
    (``DFC_FIG3_PARTS=dir``).
    """
    import argparse

    ap = argparse.ArgumentParser(prog="python -m dfc_brian.experiments.toy")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f3 = sub.add_parser("fig3", help="run Fig. 3 methods at full size")
    f3.add_argument("--methods", nargs="+", default=list(FIG3_METHODS), help=f"from {list(FIG3_CONFIGS)}")
    f3.add_argument("--epochs", type=int, default=None, help="default: the configs' 300")
    f3.add_argument("--seed", type=int, default=0)
    f3.add_argument("--out", required=True, help="output stem (writes STEM.npz and STEM.json)")
    f3.add_argument("--checkpoint-dir", default=None, help="resumable per-method checkpoints")
    args = ap.parse_args(argv)
    try:
        res = fig3(
            args.methods,
            epochs=args.epochs,
            quick=False,
            seed=args.seed,
            progress=True,
            checkpoint_dir=args.checkpoint_dir,
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    save(res, args.out)
    print(f"wrote {args.out}.npz/.json; wall times {res['wall_s']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
