"""Training methods: BP, DFA and the three DFC variants, behind one small interface.

``make_method(cfg, seed)`` reads the whole YAML dict (sections ``model``, ``controller``,
``sleep``, ``convergence`` via :class:`~dfc_brian.model.params.ModelParams`, and ``training``)
and returns a :class:`Method`::

    m.pretrain_feedback_step(X) -> dict   # sleep-only step with lr_fb_pretrain (no-op w/o trained Q)
    m.feedback_step(X) -> dict            # sleep-only step with lr_fb (extra sleep epochs)
    m.train_step(X, y) -> dict            # one minibatch
    m.predict(X) -> (B, n_L)              # feedforward output r_L^-
    m.weights -> Weights
    m.state_dict() / m.load_state_dict(d) # exact resume, arrays only (no pickle)

Keys of the ``training`` section (unknown keys raise ConfigError):

==================  ==========  ================================================================
key                 default     meaning
==================  ==========  ================================================================
method              (required)  ``BP``, ``DFA``, ``DFC``, ``DFC-SS`` or ``DFC-SSA``
q                   trained     DFC feedback: ``trained`` (xavier-normal Q, Q_L = I, sleep phase)
                                or ``fixed`` (Q_i = W_{i+1}^T...W_L^T at init, Q_L = I, frozen)
lr                  (required)  forward learning rate as listed in the spec ("lr_eff")
optimizer           adam        ``adam`` or ``sgd`` (forward weights)
optimizer_fb        adam        ``adam`` or ``sgd`` (feedback weights Q; the toy figures use sgd)
adam_betas          [0.99,0.99] Adam betas (forward and feedback)
adam_eps            1e-8        Adam epsilon, forward weights
adam_eps_fb         1e-8        Adam epsilon, feedback weights
lr_fb               1e-4        feedback learning rate during training
lr_fb_pretrain      = lr_fb     feedback learning rate of the sleep-only pre-training epochs
wd_fb               0.0         L2 weight decay of Q (the rule's beta), added to the gradient
epochs              (required)  forward training epochs; required where the section drives a
                                training run (``validate_training(..., run=True)``, the loop and
                                the CLI), read by the loop only
epochs_fb           0           sleep-only pre-training epochs (read by the experiment loop)
batch_size          128         minibatch size (read by the experiment loop)
clip                1.0         per-tensor clipping norm of forward gradients (null/0: none; BP: null)
clip_fb             1.0         joint clipping norm of the gradient of all Q_i together (null: none)
init_Q              (from q)    ``xavier_normal`` (q: trained) or ``weight_product`` (q: fixed)
dfa_convention      target      DFA: ``target`` (the authors': hidden targets h + B_i(r_L* - r_L),
                                2 lambda/B times the textbook gradient) or ``textbook``
freeze_QL           false       keep Q_L at the identity
extra_sleep         2           sleep passes after each forward update
extra_sleep_mode    minibatch   ``minibatch``: train_step = sleep, forward, ``extra_sleep`` x
                                sleep on the same minibatch (the contract); ``epoch`` (the
                                authors' order): train_step = forward only; per epoch the loop
                                runs one sleep-only epoch of :meth:`Method.feedback_step`, one
                                forward epoch, then ``extra_sleep`` sleep-only epochs
dtype               float64     engine precision, ``float64`` or ``float32``
stationary_tol      null        DFC: finish the controlled phase in closed form once stationary to
                                this relative tolerance (null: exact, all T steps; see
                                :meth:`BatchedDFC.controlled_phase`)
exact_dfc           true        DFC, DFC-SS: ``true`` sums every step's term of the time-averaged
                                update and tests for divergence at every step (the reference's
                                sums to round-off); ``false`` sums the update's second-order part
                                per block of 16 steps (~1.5x faster; within 6e-9 relative at the
                                Table-1 MNIST settings, where the Table-1 DFC configs use it, up
                                to ~1e-3 where the deviations are of order one;
                                :meth:`BatchedDFC.controlled_phase`)
dtype_fb            (= dtype)   precision of the sleep phase, ``float64`` or ``float32`` (float32:
                                ~2x faster, dQ within ~1e-6 relative of float64's)
==================  ==========  ================================================================

Learning rates: the spec lists effective rates lr_eff = lr_code/λ. The authors' configs store
lr_code (e.g. MNIST DFC: 9.27e-5 with λ = 0.0779) and their ``normalize_lr`` flag divides it by
λ before building the optimiser, so the optimiser runs with lr_eff (1.19e-3). Hence
``training.lr`` is lr_eff and the optimiser uses it unchanged (for BP/DFA as well: their listed
rates are the code's lr divided by its target_stepsize, too).

Gradients (what the optimiser subtracts): DFC variants
:math:`g_{W_i} = -2\\,\\Delta W_i` with :math:`\\Delta W_i` the batch-mean nonlinear-difference
update (time-averaged for DFC, last step for DFC-SS, analytic for DFC-SSA; the factor 2 is the
code's); feedback :math:`g_{Q_i} = \\frac{1}{\\tilde\\sigma^2}\\langle v^A_i[t] u[t+1]^T\\rangle`
(see :meth:`BatchedDFC.sleep_phase`), clipped jointly over every Q_i at ``clip_fb`` (Q_L
included even when frozen, as the authors' code), then the optimiser (``optimizer_fb``) adds
``wd_fb * Q_i`` and steps; BP the exact gradient of the batch-mean loss; DFA the authors'
target-based gradient (``dfa_convention: target``, :func:`~dfc_brian.engines.baselines.dfa_gradient`,
which needs ``controller.target_stepsize`` in the config) or the textbook one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from dfc_brian.engines.baselines import bp_gradient, dfa_feedback, dfa_gradient
from dfc_brian.engines.batched import NOISE_METHODS, BatchedDFC
from dfc_brian.engines.optim import SGD, Adam, clip_joint, clip_per_tensor, make_optimizer
from dfc_brian.model import mlp
from dfc_brian.model.params import ConfigError, ModelParams, check_int, check_nonnegative, check_positive
from dfc_brian.model.weights import Weights, init_weights, weight_product_Q

METHODS = ("BP", "DFA", "DFC", "DFC-SS", "DFC-SSA")

TRAINING_DEFAULTS: dict[str, Any] = {
    "method": None,
    "q": "trained",
    "lr": None,
    "optimizer": "adam",
    "optimizer_fb": "adam",
    "adam_betas": (0.99, 0.99),
    "adam_eps": 1e-8,
    "adam_eps_fb": 1e-8,
    "lr_fb": 1e-4,
    "lr_fb_pretrain": None,
    "wd_fb": 0.0,
    "epochs": None,  # required by the training loop (run=True); no silent run length
    "epochs_fb": 0,
    "batch_size": 128,
    "clip": 1.0,
    "clip_fb": 1.0,
    "init_Q": None,
    "dfa_convention": "target",
    "freeze_QL": False,
    "extra_sleep": 2,
    "extra_sleep_mode": "minibatch",
    "dtype": "float64",
    "dtype_fb": None,
    "noise_method_fb": "ziggurat",  # sleep-phase normal draws: ziggurat (numpy) | box_muller (faster)
    "stationary_tol": None,
    "exact_dfc": True,
}


# ----------------------------------------------------------------------------- validation
def _pos(name: str, v: Any) -> float:
    return check_positive(f"training.{name}", v)


def _nonneg(name: str, v: Any) -> float:
    return check_nonnegative(f"training.{name}", v)


def _int(name: str, v: Any, minimum: int) -> int:
    return check_int(f"training.{name}", v, minimum)


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"training.{name} must be true or false, got {v!r}")
    return v


def validate_training(section: Mapping[str, Any] | None, *, run: bool = False) -> dict[str, Any]:
    """Fill defaults and validate the ``training`` section; ConfigError names the field.

    The one check of the section, used by :func:`make_method`, the training loop
    (:func:`dfc_brian.experiments.train.train`) and the CLI. Unknown keys are rejected, as by
    the strict config loader (:mod:`dfc_brian.config`), so that a typo never falls back to a
    default.

    Parameters
    ----------
    section : mapping
        ``cfg['training']``.
    run : bool
        The section drives a training run: ``epochs`` (the run length, read by the loop only)
        is required. Without ``run`` a missing ``epochs`` stays None (building a method).
    """
    if section is None:
        raise ConfigError("config is missing the required section 'training' (a mapping)")
    if not isinstance(section, Mapping):
        raise ConfigError("config section 'training' must be a mapping")
    unknown = sorted(set(section) - set(TRAINING_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown key(s) in section 'training': {unknown}; known keys: {sorted(TRAINING_DEFAULTS)}"
        )
    t = dict(TRAINING_DEFAULTS)
    t.update(section)
    if t["method"] not in METHODS:
        raise ConfigError(f"training.method = {t['method']!r} is unknown; choose one of {METHODS}")
    if t["q"] not in ("trained", "fixed"):
        raise ConfigError(f"training.q = {t['q']!r} is unknown; choose 'trained' or 'fixed'")
    if t["epochs"] is not None:
        t["epochs"] = _int("epochs", t["epochs"], 0)
    elif run:
        raise ConfigError("config is missing the required key 'training.epochs' (the number of epochs)")
    if t["lr"] is None:
        raise ConfigError("training.lr is required (the effective learning rate listed in the spec)")
    t["lr"] = _pos("lr", t["lr"])
    if t["optimizer"] not in ("adam", "sgd"):
        raise ConfigError(f"training.optimizer = {t['optimizer']!r} is unknown; choose 'adam' or 'sgd'")
    betas = t["adam_betas"]
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        raise ConfigError(f"training.adam_betas must be a pair [beta1, beta2], got {betas!r}")
    for k, bv in enumerate(betas):
        x = _nonneg(f"adam_betas[{k}]", bv)
        if x >= 1:
            raise ConfigError(f"training.adam_betas[{k}] must be < 1, got {bv!r}")
    t["adam_betas"] = (float(betas[0]), float(betas[1]))
    t["adam_eps"] = _pos("adam_eps", t["adam_eps"])
    t["adam_eps_fb"] = _pos("adam_eps_fb", t["adam_eps_fb"])
    t["lr_fb"] = _pos("lr_fb", t["lr_fb"])
    lr_pre = t["lr_fb_pretrain"]
    t["lr_fb_pretrain"] = t["lr_fb"] if lr_pre is None else _pos("lr_fb_pretrain", lr_pre)
    t["wd_fb"] = _nonneg("wd_fb", t["wd_fb"])
    t["epochs_fb"] = _int("epochs_fb", t["epochs_fb"], 0)
    t["batch_size"] = _int("batch_size", t["batch_size"], 1)
    t["clip"] = None if t["clip"] in (None, 0, 0.0) else _pos("clip", t["clip"])
    t["clip_fb"] = None if t["clip_fb"] in (None, 0, 0.0) else _pos("clip_fb", t["clip_fb"])
    if t["optimizer_fb"] not in ("adam", "sgd"):
        raise ConfigError(f"training.optimizer_fb = {t['optimizer_fb']!r} is unknown; choose 'adam' or 'sgd'")
    q_init = {"trained": "xavier_normal", "fixed": "weight_product"}[t["q"]]
    if t["init_Q"] is None:
        t["init_Q"] = q_init
    elif t["init_Q"] != q_init:
        raise ConfigError(
            f"training.init_Q = {t['init_Q']!r} does not go with training.q = {t['q']!r} "
            f"(q: {t['q']} uses init_Q: {q_init})"
        )
    if t["dfa_convention"] not in ("target", "textbook"):
        raise ConfigError(
            f"training.dfa_convention = {t['dfa_convention']!r} is unknown; choose 'target' or 'textbook'"
        )
    t["freeze_QL"] = _bool("freeze_QL", t["freeze_QL"])
    t["extra_sleep"] = _int("extra_sleep", t["extra_sleep"], 0)
    if t["extra_sleep_mode"] not in ("minibatch", "epoch"):
        raise ConfigError(
            f"training.extra_sleep_mode = {t['extra_sleep_mode']!r}; choose 'minibatch' or 'epoch'"
        )
    if t["dtype"] not in ("float64", "float32"):
        raise ConfigError(f"training.dtype = {t['dtype']!r}; choose 'float64' or 'float32'")
    if t["stationary_tol"] is not None:
        t["stationary_tol"] = _pos("stationary_tol", t["stationary_tol"])
    t["exact_dfc"] = _bool("exact_dfc", t["exact_dfc"])
    if t["dtype_fb"] is None:
        t["dtype_fb"] = t["dtype"]
    if t["noise_method_fb"] not in NOISE_METHODS:
        raise ConfigError(
            f"training.noise_method_fb = {t['noise_method_fb']!r} is unknown; choose one of {NOISE_METHODS}"
        )
    if t["dtype_fb"] not in ("float64", "float32"):
        raise ConfigError(f"training.dtype_fb = {t['dtype_fb']!r}; choose 'float64' or 'float32' (or null)")
    return t


def learns_feedback(training: Mapping[str, Any]) -> bool:
    """Whether a validated ``training`` section learns its feedback weights in sleep phases.

    True for the DFC variants with ``q: trained``; BP, DFA and fixed Q have no sleep phase, so
    the loop runs neither feedback pre-training nor sleep-only epochs for them.
    """
    return training["method"] not in ("BP", "DFA") and training["q"] == "trained"


# ----------------------------------------------------------------------------- methods
class Method:
    """The training-method interface the loop drives, and the base class of every method.

    The loop (:mod:`dfc_brian.experiments.train`) calls only ``pretrain_feedback_step``,
    ``feedback_step``, ``train_step``, ``predict``, ``state_dict`` and ``load_state_dict``
    (and reads ``name`` and ``weights`` for its messages and results); a stand-in for tests
    needs just these. This base class trains the forward weights by an optimiser from a
    method-specific gradient; subclasses implement :meth:`train_step`.
    """

    name = "base"

    def __init__(self, params: ModelParams, training: dict[str, Any], seed: int, weights: Weights) -> None:
        self.params = params
        self.training = training
        self.seed = int(seed)
        self.weights = weights
        self.n_steps = 0
        self.fwd_opt: Adam | SGD = make_optimizer(
            training["optimizer"], training["lr"], training["adam_betas"], training["adam_eps"]
        )

    # -- interface
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Feedforward output :math:`r_L^-` (B, n_L), float64."""
        return mlp.feedforward(self.weights, self.params.network, X)[1][-1]

    def pretrain_feedback_step(self, X: np.ndarray) -> dict:
        """Sleep-only step with ``lr_fb_pretrain``; a no-op for methods without trained Q."""
        return {}

    def feedback_step(self, X: np.ndarray) -> dict:
        """Sleep-only step with ``lr_fb``; a no-op for methods without trained Q."""
        return {}

    def train_step(self, X: np.ndarray, y: np.ndarray) -> dict:
        """One forward update on the minibatch ``(X, y)``; returns ``loss`` and diagnostics."""
        raise NotImplementedError

    # -- helpers
    def _forward_params(self) -> list[np.ndarray]:
        out = []
        for W, b in zip(self.weights.W, self.weights.b, strict=True):
            out += [W, b]
        return out

    def _apply_forward(self, gW: list[np.ndarray], gb: list[np.ndarray]) -> float:
        grads = []
        for a, c in zip(gW, gb, strict=True):
            grads += [a, c]
        norm = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads)))
        clip = self.training["clip"]
        if clip is not None:
            grads = [clip_per_tensor(g, clip) for g in grads]
        self.fwd_opt.step(self._forward_params(), grads)
        self.n_steps += 1
        return norm

    def state_dict(self) -> dict[str, np.ndarray]:
        """All arrays needed for an exact resume (no pickled objects)."""
        d = {k: v.copy() for k, v in self.weights.to_npz_dict().items()}
        d["method"] = np.array(self.name)
        d["n_steps"] = np.array(self.n_steps)
        d.update(self.fwd_opt.state_dict("fwd_opt."))
        return d

    def load_state_dict(self, d: Mapping[str, np.ndarray]) -> None:
        """Restore from :meth:`state_dict` (arrays are copied in place)."""
        if "method" in d and str(np.asarray(d["method"])) != self.name:
            raise ConfigError(f"state_dict is for method {str(np.asarray(d['method']))!r}, not {self.name!r}")
        w = Weights.from_npz_dict(d, self.params.network.n_layers).validate(self.params.network)
        for dst, src in ((self.weights.W, w.W), (self.weights.b, w.b), (self.weights.Q, w.Q)):
            for a, c in zip(dst, src, strict=True):
                np.copyto(a, c)
        self.n_steps = int(d["n_steps"])
        self.fwd_opt.load_state_dict(d, "fwd_opt.")


class BPMethod(Method):
    """Backpropagation of the batch-mean loss through the same MLP."""

    name = "BP"

    def train_step(self, X: np.ndarray, y: np.ndarray) -> dict:
        loss, gW, gb = bp_gradient(self.params.network, self.weights, X, y)
        norm = self._apply_forward(gW, gb)
        return {"loss": loss, "grad_norm": norm}


class DFAMethod(Method):
    """Direct feedback alignment with fixed random feedback B_i (xavier-normal, seeded)."""

    name = "DFA"

    def __init__(
        self,
        params: ModelParams,
        training: dict[str, Any],
        seed: int,
        weights: Weights,
        fb_seed: np.random.SeedSequence,
    ) -> None:
        super().__init__(params, training, seed, weights)
        self.B_fb = dfa_feedback(params.network, fb_seed)

    def train_step(self, X: np.ndarray, y: np.ndarray) -> dict:
        loss, gW, gb = dfa_gradient(
            self.params.network,
            self.weights,
            self.B_fb,
            X,
            y,
            self.training["dfa_convention"],
            self.params.controller.target_stepsize,
        )
        norm = self._apply_forward(gW, gb)
        return {"loss": loss, "grad_norm": norm}

    def state_dict(self) -> dict[str, np.ndarray]:
        d = super().state_dict()
        for i, Bm in enumerate(self.B_fb):
            d[f"dfa_B{i}"] = Bm.copy()
        return d

    def load_state_dict(self, d: Mapping[str, np.ndarray]) -> None:
        super().load_state_dict(d)
        for i in range(len(self.B_fb)):
            if f"dfa_B{i}" in d:
                self.B_fb[i] = np.array(d[f"dfa_B{i}"], dtype=np.float64)


class DFCMethod(Method):
    """DFC, DFC-SS or DFC-SSA with trained or fixed feedback weights Q."""

    def __init__(
        self,
        params: ModelParams,
        training: dict[str, Any],
        seed: int,
        weights: Weights,
        noise_seed: np.random.SeedSequence,
    ) -> None:
        super().__init__(params, training, seed, weights)
        self.name = training["method"]
        self.q_trained = training["q"] == "trained"
        dtype = np.float32 if training["dtype"] == "float32" else np.float64
        self.engine = BatchedDFC(params, weights, dtype=dtype)
        self.rng = np.random.default_rng(noise_seed)
        t = training
        self.fb_opt: Adam | SGD = make_optimizer(
            t["optimizer_fb"], t["lr_fb"], t["adam_betas"], t["adam_eps_fb"], t["wd_fb"]
        )
        self.fb_pre_opt: Adam | SGD = make_optimizer(
            t["optimizer_fb"], t["lr_fb_pretrain"], t["adam_betas"], t["adam_eps_fb"], t["wd_fb"]
        )
        self.n_sleep = 0

    # -- sleep phase
    def _q_indices(self) -> list[int]:
        L = self.params.network.n_layers
        return list(range(L - 1)) if self.training["freeze_QL"] else list(range(L))

    def _sleep(self, X: np.ndarray, opt: Adam | SGD) -> dict:
        """One sleep phase and one feedback-optimiser step, as the authors' code.

        The raw gradient :math:`g_{Q_i} = -\\Delta Q_i` of EVERY layer (Q_L included, even when
        ``freeze_QL``: the authors clip the list of all feedback weights, while their optimiser
        leaves Q_L out) is clipped with one joint norm (``clip_fb``); then the optimiser steps
        the trained Q_i, adding ``wd_fb * Q_i`` inside its step.
        """
        dtype = np.float32 if self.training["dtype_fb"] == "float32" else np.float64
        res = self.engine.sleep_phase(
            X, rng=self.rng, dtype=dtype, noise_method=self.training["noise_method_fb"]
        )
        grads = [-dq for dq in res.dQ]  # optimiser subtracts; it adds wd_fb * Q itself
        clip = self.training["clip_fb"]
        if clip is not None:
            grads, norm = clip_joint(grads, clip)
        else:
            norm = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads)))
        idx = self._q_indices()
        opt.step([self.weights.Q[i] for i in idx], [grads[i] for i in idx])
        self.n_sleep += 1
        # the joint norm of the raw feedback gradient, before the clip and the weight decay
        return {"sleep_dQ_norm": norm}

    def pretrain_feedback_step(self, X: np.ndarray) -> dict:
        return self._sleep(X, self.fb_pre_opt) if self.q_trained else {}

    def feedback_step(self, X: np.ndarray) -> dict:
        return self._sleep(X, self.fb_opt) if self.q_trained else {}

    # -- training
    def train_step(self, X: np.ndarray, y: np.ndarray) -> dict:
        out: dict[str, Any] = {}
        minibatch_mode = self.training["extra_sleep_mode"] == "minibatch"
        if self.q_trained and minibatch_mode:
            out.update(self._sleep(X, self.fb_opt))
        eng = self.engine
        ff = eng.feedforward(X)
        r_ff = ff[1][-1]
        loss = mlp.loss_value(r_ff, y, self.params.network.loss)
        r_star = eng.output_target(r_ff, y)
        if self.name == "DFC-SSA":
            res = eng.ssa(X, r_star, ff=ff)
            dW, db = res.dW_ssa, res.db_ssa
        else:
            tol = self.training["stationary_tol"] if self.name == "DFC" else None
            res = eng.controlled_phase(
                X, r_star, accumulate=self.name == "DFC", stationary_tol=tol, exact=self.training["exact_dfc"]
            )
            dW, db = (res.dW_dfc, res.db_dfc) if self.name == "DFC" else (res.dW_ss, res.db_ss)
        norm = self._apply_forward([-2.0 * a for a in dW], [-2.0 * c for c in db])
        if self.q_trained and minibatch_mode:
            for _ in range(self.training["extra_sleep"]):
                out.update(self._sleep(X, self.fb_opt))
        out.update(
            loss=loss,
            grad_norm=norm,
            n_nonconverged=res.n_nonconverged,
            frac_nonconverged=res.n_nonconverged / len(res.converged),
        )
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        d = super().state_dict()
        d["n_sleep"] = np.array(self.n_sleep)
        d["rng_state"] = np.array(json.dumps(self.rng.bit_generator.state))
        d.update(self.fb_opt.state_dict("fb_opt."))
        d.update(self.fb_pre_opt.state_dict("fb_pre_opt."))
        return d

    def load_state_dict(self, d: Mapping[str, np.ndarray]) -> None:
        super().load_state_dict(d)
        self.n_sleep = int(d["n_sleep"])
        self.rng.bit_generator.state = json.loads(str(np.asarray(d["rng_state"])))
        self.fb_opt.load_state_dict(d, "fb_opt.")
        self.fb_pre_opt.load_state_dict(d, "fb_pre_opt.")


def make_method(cfg: Mapping[str, Any], seed: int) -> Method:
    """Build the training method of a whole config dict (see the module docstring)."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config must be a mapping, got {type(cfg).__name__}")
    params = ModelParams.from_dict(cfg)
    training = validate_training(cfg.get("training"))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    spec = params.network
    method = training["method"]
    weights = init_weights(spec, seed=int(seed), q_init="random")
    aux = np.random.SeedSequence([int(seed), 0xDFC]).spawn(2)
    if method == "BP":
        return BPMethod(params, training, seed, weights)
    if method == "DFA":
        ctrl = cfg.get("controller")
        if training["dfa_convention"] == "target" and not (
            isinstance(ctrl, Mapping) and "target_stepsize" in ctrl
        ):
            raise ConfigError(
                "training.dfa_convention = 'target' (the default) needs controller.target_stepsize "
                "(the lambda of the output target r_L* = r_L - lambda dL/dr_L; 0.001 in the Table-1 "
                "DFA configs); state it, or choose training.dfa_convention: textbook"
            )
        return DFAMethod(params, training, seed, weights, aux[0])
    if training["q"] == "fixed":
        weights.Q = weight_product_Q(weights.W)
    return DFCMethod(params, training, seed, weights, aux[1])
