"""Toy (student-teacher) experiments of the paper: Fig. 1D, compartments, Fig. 3, Figs. S2-S4.

Each function runs one experiment and returns plain arrays in a dict, so the notebooks in
``notebooks/`` stay thin callers; :func:`save` writes such a dict as ``<stem>.npz`` (arrays,
no pickle) plus ``<stem>.json`` (everything else). ``quick=True`` shrinks every experiment to
a few seconds of CPU time (the notebook tests); the full settings are documented per function
and in ``figures/README.md``.

Experiments (``shared/spec/DFC_SPEC.md`` section 4; student-teacher data of
:func:`~dfc_brian.experiments.data.student_teacher`, unscaled teacher outputs):

- :func:`fig1d`: the PI controller drives a 15-10-10-1 student's output to its target
  (Brian2 engine).
- :func:`compartments`: basal, apical and somatic voltages of chosen neurons during a
  controlled phase and a noisy sleep phase (Brian2 engine).
- :func:`fig3`: training of the 15-10-10-5 student with DFC, DFC-SS, DFC-SSA, their fixed-Q
  versions and DFA (batched engine), with condition 2, condition 1, the stability
  :math:`\\lambda_{max}` and the angles to the MN, GN and SSA updates per epoch.
- :func:`feedback_learning`: sleep-phase-only learning of Q in a 20-10-5 student; angle of
  Q to the damped pseudo-inverses :math:`J^T (J J^T + \\gamma I)^{-1}` (Figs. S2-S4).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dfc_brian.analysis import theory
from dfc_brian.config import load_config
from dfc_brian.engines.baselines import dfa_gradient
from dfc_brian.engines.batched import BatchedDFC
from dfc_brian.engines.methods import DFAMethod, DFCMethod, Method, make_method
from dfc_brian.experiments.data import student_teacher
from dfc_brian.model.params import ModelParams
from dfc_brian.model.weights import init_weights

__all__ = [
    "FIG3_METHODS",
    "FIG3_METRICS",
    "compartments",
    "feedback_learning",
    "fig1d",
    "fig3",
    "load",
    "method_update",
    "save",
]

# ----------------------------------------------------------------------------- parameters
# Fig. 1D (spec section 4)
FIG1D_SIZES = [15, 10, 10, 1]  # student: input, two tanh hidden layers, linear output
FIG1D_CONTROLLER = {
    "k_p": 1.0,  # proportional gain
    "alpha": 0.0015,  # controller leak
    "dt": 0.005,  # Euler step (units of tau_u)
    "tmax": 2000,  # stored states T (10 tau_u); quick: 400 (2 tau_u)
    "tcr": 0.2,  # tau_v / tau_u
    "target_stepsize": 0.05,  # lambda
    "proactive": True,  # as the Fig. 3 configs
}
COMPARTMENT_STEPSIZE = 0.3  # lambda of the compartment view: 6x Fig. 1D's, so Q u is visible
SLEEP_VIEW_STEPS = 1000  # stored states of the displayed sleep phase (2 tau_u; training: 50)

# Fig. 3 (models/toy/fig3_*.yaml)
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
    "frac_nonconverged",
)
FIG3_N_EVAL = 128  # size of the fixed test minibatch on which metrics and angles are computed

# Figs. S2-S4
FB_SIZES = [20, 10, 5]  # student: input, one tanh hidden layer, linear output
FB_GAMMAS = (1e-3, 1e-2, 0.1, 0.25, 1.0, 10.0)  # damping values of the reference matrices


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


# ----------------------------------------------------------------------------- Fig. 1D
def fig1d(quick: bool = True, target: str = "numpy", seed: int = 0, n_samples: int = 3) -> dict[str, Any]:
    """Fig. 1D: the PI controller steers the output of a 15-10-10-1 student to its target.

    Student 15-10-10-1 (tanh, tanh, linear), Q fixed to the weight product
    :math:`Q_i = W_{i+1}^T \\cdots W_L^T` (for one output unit this is :math:`J^T` at
    :math:`\\phi' = 1`, a stable choice); controller ``k_p = 1``, ``alpha = 0.0015``,
    ``dt = 0.005``, ``T = 2000`` (quick: 400), ``tcr = 0.2``, ``lambda = 0.05``. The
    ``n_samples`` student-teacher training samples form one minibatch (batch-mean MSE target)
    and are simulated in Brian2 (:meth:`BrianDFC.controlled_phase`).

    Returns
    -------
    dict
        ``t`` (T,) in units of :math:`\\tau_u`; ``r_L`` (S, T) output rate; ``r_star`` (S,)
        output target; ``r_ff`` (S,) feedforward output :math:`r_L^-`; ``u`` (S, T) control
        signal; ``e`` (S, T); ``steady_residual`` (S,) :math:`|r_L[T-1] - (r_L^* - \\alpha
        u[T-1])|`; ``converged`` (S,) the spec's criteria; ``wall_s``; ``config``.
    """
    ctrl = dict(FIG1D_CONTROLLER, tmax=400 if quick else FIG1D_CONTROLLER["tmax"])
    cfg = _toy_cfg(FIG1D_SIZES, ctrl)
    data = student_teacher(FIG1D_SIZES[0], 1, seed=seed, n_train=n_samples, n_val=1, n_test=1)
    net, params = _brian_net(cfg, seed, target)
    L = params.network.n_layers
    t0 = time.perf_counter()
    res = net.controlled_phase(
        data.train.X, data.train.y, plasticity="none", record=("r", "u", "e"), layers=[L]
    )
    wall = time.perf_counter() - t0
    r_L = res.r[L - 1][:, :, 0]
    u = res.u[:, :, 0]
    r_star = res.r_star[:, 0]
    alpha = params.controller.alpha
    return {
        "t": np.asarray(res.t),
        "r_L": r_L,
        "r_star": r_star,
        "r_ff": res.r_L_ff[:, 0],
        "u": u,
        "e": res.e[:, :, 0],
        "steady_residual": np.abs(r_L[:, -1] - (r_star - alpha * u[:, -1])),
        "converged": np.asarray(res.converged),
        "wall_s": wall,
        "config": {
            "controller": ctrl,
            "sizes": FIG1D_SIZES,
            "seed": seed,
            "target": target,
            "q": "weight_product",
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
def method_update(method: Method, X: np.ndarray, y: np.ndarray) -> theory.Update:
    """The forward update a method would make on ``(X, y)``, without applying it.

    Descent direction in the convention of :mod:`dfc_brian.analysis.theory` (proportional to
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
        _, gW, gb = dfa_gradient(spec, w, method.B_fb, X, y)
        return [(-a, -c) for a, c in zip(gW, gb, strict=True)]
    return theory.bp_update(w, spec, X, y, spec.loss)


def _feedback_of(method: Method) -> list[np.ndarray] | None:
    if isinstance(method, DFCMethod):
        return method.weights.Q
    if isinstance(method, DFAMethod):
        return method.B_fb
    return None


def _fig3_metrics(method: Method, X: np.ndarray, y: np.ndarray, gamma: float) -> dict[str, float]:
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
    delta = theory.output_delta(method.predict(X), y, spec.loss, ctrl.target_stepsize)
    upd = method_update(method, X, y)
    flat = theory.flatten_update(upd)
    mn = theory.minimum_norm_update(w, spec, X, delta, gamma)
    gn = theory.gauss_newton_update(w, spec, X, delta, gamma)
    m["angle_MN"] = theory.angle(flat, theory.flatten_update(mn))
    m["angle_GN"] = theory.angle(flat, theory.flatten_update(gn))
    if isinstance(method, DFCMethod):
        ssa = theory.ssa_update(w, spec, X, delta, ctrl.alpha, Q=fb)
        m["angle_SSA"] = theory.angle(flat, theory.flatten_update(ssa))
    else:
        m["angle_SSA"] = np.nan
    m["test_loss"] = theory.loss_value(method.predict(X), y, spec.loss)
    return m


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    idx = rng.permutation(n)
    return [idx[k : k + batch_size] for k in range(0, n, batch_size)]


def fig3(
    methods: Sequence[str] = FIG3_METHODS,
    epochs: int | None = None,
    quick: bool = True,
    seed: int = 0,
    n_train: int | None = None,
    tmax: int | None = None,
    include_nonconverged: bool = True,
    scale_targets: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Fig. 3: student-teacher training with the batched engine, metrics per epoch.

    Each method is built by :func:`~dfc_brian.engines.methods.make_method` from
    ``models/toy/fig3_*.yaml`` (15-10-10-5 tanh student, SGD with lr_eff 1.0, batch 128,
    ``k_p = 1.5``, ``alpha = 0.0015``, ``dt = 0.005``, ``tcr = 0.2``, ``T = 1000``; trained-Q
    methods first run ``epochs_fb`` sleep-only epochs, then each epoch is one training pass
    (sleep, forward update per minibatch) plus ``extra_sleep`` sleep-only passes, the configs'
    ``extra_sleep_mode: epoch``). The same seed gives every method the same initial forward
    weights and the same data.

    Before training and after every epoch, on a fixed minibatch of 128 test samples:

    - ``condition_2``: fraction of Q in the row space of J (DFA: its feedback matrices B_i);
    - ``condition_1``: ``dev_r`` of the feedforward rates;
    - ``lambda_max``: the largest real part of the eigenvalues of the linearised PI-controlled
      network, maximum over the minibatch, from :func:`theory.lambda_max_pi` with
      ``form='network'`` (the exact linearisation of the layered somatic dynamics the engines
      integrate; the reduced 'apical' form treats basal inputs as fixed and differs at
      ``tcr = 0.2``); NaN for DFA;
    - ``angle_MN``, ``angle_GN``, ``angle_SSA``: angle (degrees, whole network, weights and
      biases) between the method's batch-mean update on that minibatch (computed, not applied,
      see :func:`method_update`) and the damped minimum-norm, Gauss-Newton (damping
      :math:`\\gamma = \\alpha`) and DFC-SSA updates of the same weights and Q;
    - ``test_loss`` (MSE on the minibatch) and, per epoch of training, ``frac_nonconverged``
      (fraction of training samples failing the spec's convergence criteria).

    ``include_nonconverged`` (default True) lets non-converged samples contribute their update:
    with the spec's residual tolerance 1e-5 at T = 1000, nearly every sample of this toy fails
    the first criterion (relative residual ~4e-5 with fixed Q), and the updates would vanish.

    ``scale_targets`` (default True) divides the teacher's outputs by their training-set std
    (about 8 for this teacher): with the unscaled outputs, SGD at the configs' lr_eff = 1.0
    makes BP and DFA diverge within one epoch (measured), so the comparison would be empty.

    Parameters
    ----------
    methods : names from :data:`FIG3_METHODS` (and ``BP``).
    epochs : training epochs (default: the configs' 300; quick: 2).
    quick : tiny setting for tests: 256 training samples, ``T = 200``, 1 pre-training epoch.
    n_train, tmax : override the training set size and the controlled-phase length T.

    Returns
    -------
    dict
        ``epochs`` (E + 1,), ``methods`` (list), ``metrics``: method -> metric -> (E + 1,)
        (``frac_nonconverged`` and ``train_loss``: (E,), ``nan`` where not defined),
        ``wall_s`` per method, ``config``.
    """
    E = (2 if quick else 300) if epochs is None else int(epochs)
    n_tr = (256 if quick else 5000) if n_train is None else int(n_train)
    T = (200 if quick else None) if tmax is None else int(tmax)
    n_eval = 64 if quick else FIG3_N_EVAL
    data = student_teacher(15, 5, seed=seed, n_train=n_tr, n_val=1, n_test=n_eval)
    y_scale = float(data.train.y.std()) if scale_targets else 1.0
    Xe, ye = data.test.X, data.test.y / y_scale
    metrics: dict[str, dict[str, np.ndarray]] = {}
    walls: dict[str, float] = {}
    used_cfgs: dict[str, Any] = {}
    for name in methods:
        cfg = copy.deepcopy(load_config(FIG3_CONFIGS[name]))
        if T is not None and "controller" in cfg:
            cfg["controller"]["tmax"] = T
        cfg.setdefault("convergence", {})["include_nonconverged"] = bool(include_nonconverged)
        tr = cfg["training"]
        if quick:
            tr["epochs_fb"] = min(int(tr.get("epochs_fb", 0)), 1)
        used_cfgs[name] = cfg
        method = make_method(cfg, seed)
        gamma = method.params.controller.alpha
        bs = int(tr.get("batch_size", 128))
        rng = np.random.default_rng([seed, 3])
        X, Y = data.train.X, data.train.y / y_scale
        t0 = time.perf_counter()
        for _ in range(int(tr.get("epochs_fb", 0))):
            for idx in _batches(n_tr, bs, rng):
                method.pretrain_feedback_step(X[idx])
        hist: dict[str, list[float]] = {k: [] for k in FIG3_METRICS if k != "frac_nonconverged"}
        hist["frac_nonconverged"], hist["train_loss"] = [np.nan], [np.nan]
        for k, v in _fig3_metrics(method, Xe, ye, gamma).items():
            hist[k].append(v)
        for ep in range(E):
            n_nc, losses = 0, []
            for idx in _batches(n_tr, bs, rng):
                out = method.train_step(X[idx], Y[idx])
                n_nc += int(out.get("n_nonconverged", 0))
                losses.append(float(out["loss"]))
            if tr.get("extra_sleep_mode", "minibatch") == "epoch":
                for _ in range(int(tr.get("extra_sleep", 0))):
                    for idx in _batches(n_tr, bs, rng):
                        method.feedback_step(X[idx])
            hist["frac_nonconverged"].append(
                n_nc / n_tr if isinstance(method, DFCMethod) and method.name != "DFC-SSA" else np.nan
            )
            hist["train_loss"].append(float(np.mean(losses)))
            for k, v in _fig3_metrics(method, Xe, ye, gamma).items():
                hist[k].append(v)
            if progress:
                print(
                    f"{name}: epoch {ep + 1}/{E} test loss {hist['test_loss'][-1]:.4g} "
                    f"angle GN {hist['angle_GN'][-1]:.1f}",
                    flush=True,
                )
        walls[name] = time.perf_counter() - t0
        metrics[name] = {k: np.asarray(v, dtype=np.float64) for k, v in hist.items()}
    return {
        "epochs": np.arange(E + 1),
        "methods": list(methods),
        "metrics": metrics,
        "wall_s": walls,
        "config": {
            "epochs": E,
            "n_train": n_tr,
            "tmax": T,
            "n_eval": n_eval,
            "seed": seed,
            "quick": quick,
            "include_nonconverged": include_nonconverged,
            "y_scale": y_scale,
            "gamma": "alpha (0.0015)",
            "configs": used_cfgs,
        },
    }


# ----------------------------------------------------------------------------- Figs. S2-S4
def feedback_learning(
    quick: bool = True,
    gammas: Sequence[float] = FB_GAMMAS,
    alpha_fb_list: Sequence[float] = (0.1, 0.25, 1.0),
    kp_fb_list: Sequence[float] = (0.0, 0.1, 0.5),
    iterations: int | None = None,
    seed: int = 0,
    eval_every: int | None = None,
    batch_size: int = 128,
) -> dict[str, Any]:
    """Figs. S2-S4: feedback learning only; angle of Q to damped pseudo-inverses over iterations.

    A 20-10-5 student (tanh hidden, linear output; forward weights frozen at their
    xavier-normal initialisation, Q random with :math:`Q_L = I`) runs sleep phases only
    (batched engine; the sleep parameters and the feedback optimiser of
    ``models/toy/fig3_dfc.yaml``: ``sigma = 0.01``, ``dt_fb = 0.002``, ``T_fb = 50``,
    ``tcr_fb = 0.01``, ``tau_A = 0.3``, Adam lr 1e-3, weight decay 0.025). One iteration is one
    sleep phase on a minibatch of student-teacher inputs followed by one Adam step on Q.

    Runs (``alpha_fb``, ``k_p_fb``): the base (0.25, 0.1) of Fig. 3; every ``alpha_fb`` in
    ``alpha_fb_list`` with ``k_p_fb = 0.1``; every ``k_p_fb`` in ``kp_fb_list`` with
    ``alpha_fb = 0.25`` (duplicates are run once). Every ``eval_every`` iterations, the mean
    over a fixed batch of 64 inputs of the angle between Q and
    :math:`J^T (J J^T + \\gamma I)^{-1}` is recorded for each ``gamma`` (plus ``J^T`` itself).

    Quick: 30 iterations of 32 samples. Full: 3000 iterations of 128.

    Returns
    -------
    dict
        ``iterations`` (K,), ``gammas`` (G,), ``runs``: label -> {``angle`` (K, G),
        ``angle_JT`` (K,), ``alpha_fb``, ``k_p_fb``}, ``labels`` (list), ``wall_s``, ``config``.
    """
    n_it = (30 if quick else 3000) if iterations is None else int(iterations)
    every = (5 if quick else 50) if eval_every is None else int(eval_every)
    bs = 32 if quick else int(batch_size)
    data = student_teacher(FB_SIZES[0], FB_SIZES[-1], seed=seed, n_train=2000, n_val=1, n_test=64)
    Xe = data.test.X
    gam = np.asarray(gammas, dtype=np.float64)
    base = load_config(FIG3_CONFIGS["DFC"])["sleep"]
    settings: list[tuple[float, float]] = [(base["alpha_fb"], base["k_p_fb"])]
    settings += [(float(a), base["k_p_fb"]) for a in alpha_fb_list]
    settings += [(base["alpha_fb"], float(k)) for k in kp_fb_list]
    settings = list(dict.fromkeys(settings))
    runs: dict[str, Any] = {}
    t0 = time.perf_counter()
    iters = np.arange(0, n_it + 1, every)
    for a_fb, kp_fb in settings:
        cfg = _toy_cfg(FB_SIZES)
        cfg["sleep"].update(alpha_fb=a_fb, k_p_fb=kp_fb)
        method = make_method(cfg, seed)
        spec = method.params.network
        rng = np.random.default_rng([seed, 7])
        ang, ang_jt = [], []
        for it in range(n_it + 1):
            if it > 0:
                idx = rng.integers(0, len(data.train.X), size=bs)
                method.pretrain_feedback_step(data.train.X[idx])
            if it % every == 0:
                ang.append([theory.angle_Q_damped_pinv(method.weights, spec, Xe, g) for g in gam])
                ang_jt.append(theory.angle_Q_JT(method.weights, spec, Xe))
        label = f"alpha_fb={a_fb:g}, k_p_fb={kp_fb:g}"
        runs[label] = {
            "angle": np.asarray(ang),
            "angle_JT": np.asarray(ang_jt),
            "alpha_fb": a_fb,
            "k_p_fb": kp_fb,
        }
    return {
        "iterations": iters,
        "gammas": gam,
        "labels": list(runs),
        "runs": runs,
        "wall_s": time.perf_counter() - t0,
        "config": {
            "sizes": FB_SIZES,
            "iterations": n_it,
            "batch_size": bs,
            "eval_every": every,
            "seed": seed,
            "quick": quick,
            "base_sleep": base,
        },
    }
