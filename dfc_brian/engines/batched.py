"""Batched NumPy engine: the spec's Euler scheme for a whole minibatch with dense matmuls.

This module integrates exactly the discretisation of ``shared/spec/DFC_SPEC.md`` section 2
(the authors' code), for B samples at once. Layer index ``i = 0..L-1`` is paper layer
``i + 1``; rates are row vectors, so a layer's basal input is ``r_{i-1} @ W_i.T + b_i``.

Model (time in units of :math:`\\tau_u`, ``tcr`` :math:`= \\tau_v/\\tau_u`):

.. math::
    e[t] &= r_L^* - r_L[t] \\\\
    u^{int}[t+1] &= u^{int}[t] + dt\\,(e[t] - \\alpha u[t]), \\qquad
    u[t+1] = u^{int}[t+1] + k_p e[t] \\quad (\\text{form='code'}) \\\\
    u^{int}[t+1] &= u^{int}[t] + dt\\,(e[t] - \\alpha u^{int}[t]), \\qquad
    u[t+1] = K_I u^{int}[t+1] + k_p e[t] \\quad (\\text{form='slides'}) \\\\
    v^B_i[t+1] &= W_i r_{i-1}[\\cdot] + b_i, \\qquad v^A_i[t+1] = Q_i u[\\cdot] \\\\
    v_i[t+1] &= v_i[t] + \\frac{dt}{tcr}\\,(v^A_i[t+1] + v^B_i[t+1] - v_i[t]),
    \\qquad r_i = \\phi(v_i)

with ``r_{i-1}[t+1]`` (instantaneous transmission) or ``r_{i-1}[t]`` (otherwise), and
``u[t+1]`` (proactive controller) or ``u[t]``. The two controller forms differ in where the
leak acts: the authors' code (``'code'``, default) leaks the total output ``u`` and has
:math:`K_I = 1`, so the steady state is :math:`e = \\alpha u`; the slides leak only the
integral, so the steady state is :math:`e = \\alpha u^{int}`. In the sleep phase the apical
compartment is a noisy low-pass filter,
:math:`v^A_i[t+1] = v^A_i[t] + \\frac{dt}{\\tau_A}(-v^A_i[t] + Q_i u)
+ \\frac{\\sigma\\sqrt{dt}}{\\tau_A}\\xi`.

Forward updates (nonlinear difference), all per-sample means over the minibatch:

.. math::
    \\Delta W_i^{DFC} = \\frac{1}{B}\\sum_b \\frac{1}{T}\\sum_{t=0}^{T-1}
        \\big(\\phi(v_i[t]) - \\phi(v^B_i[t])\\big)\\, r_{i-1}[t]^T

accumulated while integrating (no trajectory is stored unless ``record=True``); DFC-SS is the
same expression at t = T-1 with the basal input rebuilt from ``r_{i-1}[T-1]``; DFC-SSA solves
the linearised steady state :math:`u = (JQ + \\alpha I)^{-1}\\delta_L` (see :meth:`BatchedDFC.ssa`).

Implementation notes:

- Deviation form: the state is carried as deviations from the feedforward pass
  (:math:`v_i - v_i^-`, :math:`v^B_i - v_i^-`, :math:`r_i - r_i^-`). The scheme is linear in
  v, so this is the same Euler scheme (equal to ``tests/reference.py`` to ~1e-15), but the
  controlled deviations, ~λ/B ≈ 1e-4 of the activations, keep their own relative precision;
  with :math:`\\tanh(a+d) - \\tanh a = \\tanh d\\,(1-\\tanh^2 a)/(1+\\tanh a\\tanh d)` this makes
  float32 agree with float64 to ~1e-5 degrees instead of ~0.5 degrees.
- The input is constant, so layer 1's basal input never changes and its update is a
  per-sample sum of differences times x (one matmul at the end). The other layers' terms are
  gathered for ``ACCUMULATION_CHUNK`` steps and summed with one (n_i x kB) @ (kB x n_{i-1})
  matmul (faster than k small ones). Sums are kept in float64 in both precisions.
  ``controlled_phase(exact=False)`` (the Table-1 DFC configs' ``exact_dfc: false``) splits each
  term :math:`d_t (r^-_{i-1} + \\delta r_{i-1,t})^T` into its first-order part, summed over time
  first (one GEMM at the end, exact), and its second-order part (~1e-4 of the sum at the MNIST
  settings), summed per block of 16 steps as a product of block sums: no per-step update GEMM.
- Samples that fail the convergence test are removed afterwards by re-integrating the smaller
  of the two subsets (samples evolve independently), so the update of the converged ones is
  exact.
- Sleep phase: its precision is selectable per call (``sleep_phase(dtype=...)``,
  ``training.dtype_fb``; float32 dQ within ~1e-6 of float64's with the same noise). It runs in
  its own loop (:meth:`BatchedDFC._sleep_integrate`: the same scheme and the same draws in the
  same order as the shared integrator, equal to ~1e-15; ``exact=True`` or ``record=True`` take
  the shared one). Measured split of one MNIST sleep phase (B 128, T_fb 48, float64, CPU time,
  2-core EPYC under load): the noise draws with their scaling ~37 %, the layer loop (two
  128x256x256 GEMMs per step, tanh, soma updates) ~44 %, the estimator and apical-drive GEMMs
  ~7 %, the rest (controller, divergence tests, feedforward, setup) ~12 %. Since numpy's
  ziggurat costs ~4 uniform draws per normal here, ``noise_method='box_muller'`` (opt-in, other
  numbers for the same seed, same distribution to float32 resolution) halves the draws' cost.
- BLAS threads: the phases run with ``threads`` BLAS threads (default 1, see
  :class:`BatchedDFC`); the per-step products are too small to share between threads.
- Optional stationary finish of the controlled phase (``stationary_tol``, off by default):
  once the state stops moving, the remaining steps' terms are added in closed form. It is an
  approximation whose error grows with the steps skipped and exceeds ``stationary_tol``
  (measured on a toy net, 16 samples: tol 1e-4 skips 887 of 1000 states with a 6.4e-4
  relative error of dW_dfc, tol 1e-6 skips 423 with 2.6e-6); samples dropped as non-converged
  are re-integrated and may stop at another step, so their removal is approximate too.
- ``feedforward``, ``output_target``, ``jacobian``, ``jq`` and ``ssa`` are the network
  mathematics of :mod:`dfc_brian.model.mlp` (float64 whatever the engine dtype, which applies
  to the integration loop only), bound to this engine's weights; DFC-SSA forms :math:`JQ` by
  pushing Q forward (one GEMM per layer for all samples), or, with a linear output layer,
  :math:`Q_L = I` and a narrower last hidden layer (the autoencoder), solves for u in the
  hidden width without forming it (:func:`~dfc_brian.model.mlp.ssa_control_low_rank`; 15x
  faster on the autoencoder); ``ssa(exact=True)`` keeps the stacked-Jacobian route.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import numpy as np

from dfc_brian.engines.convergence import convergence_test
from dfc_brian.engines.errors import DivergenceError
from dfc_brian.engines.result import PhaseResult
from dfc_brian.model import mlp
from dfc_brian.model.mlp import loss_and_grad, phi, phi_prime  # noqa: F401 - re-exported (brian2_engine, tests)
from dfc_brian.model.params import ConfigError, ControllerParams, ModelParams
from dfc_brian.model.weights import Weights

BLAS_THREADS = 1  # default BLAS threads of the engine's phases (see BatchedDFC ``threads``)
DIVERGENCE_LIMIT = 1e6  # |v| above this (or NaN) raises DivergenceError
ACCUMULATION_CHUNK = 16  # steps per update matmul (inner dimension chunk * B: faster GEMMs)
BLOCK_EXACT_STEPS = 32  # exact=False: second-order DFC term summed step by step this long
DIVERGENCE_CHECK_EVERY = 8  # sleep phase, controlled phase with exact=False: divergence test of
# the voltages every this many steps (and at the last)


# ----------------------------------------------------------------------------- BLAS threads
@functools.lru_cache(maxsize=1)
def _threadpool_controller():  # noqa: ANN202 - threadpoolctl is optional at import time
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    return ThreadpoolController()


def blas_threads(n: int | None) -> contextlib.AbstractContextManager:
    """Context that limits the BLAS library to ``n`` threads (``None``: leave it as it is)."""
    ctl = _threadpool_controller() if n is not None else None
    if ctl is None:
        return contextlib.nullcontext()
    return ctl.limit(limits=int(n), user_api="blas")


def _with_blas_threads(fn):  # noqa: ANN001, ANN202
    """Method decorator: run under ``blas_threads(self.threads)`` (signature kept)."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        with blas_threads(self.threads):
            return fn(self, *args, **kw)

    return wrapper


# ----------------------------------------------------------------------------- sleep noise
NOISE_METHODS = ("ziggurat", "box_muller")


def box_muller_normals(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` (1-D) with independent standard normals by the Box-Muller transform.

    :math:`z_1 = \\rho\\cos\\theta,\\ z_2 = \\rho\\sin\\theta`, :math:`\\rho = \\sqrt{-2\\ln(1 - U_1)}`,
    :math:`\\theta = 2\\pi U_2`, with ``U_1`` uniform in float64 (tails exact to 8.5 sigma) and
    ``U_2`` in float32 (cos and sin in single precision: each normal carries a relative error of
    ~1e-7, float32 resolution). The first half of ``out`` takes the cosines, the second the
    sines. About 2x cheaper than ``rng.standard_normal`` (numpy's ziggurat) on the development
    machine, but a different use of the generator: other numbers for the same seed.
    """
    n = out.size
    h = (n + 1) // 2
    rho = rng.random(h)
    np.subtract(1.0, rho, out=rho)
    np.log(rho, out=rho)
    rho *= -2.0
    np.sqrt(rho, out=rho)
    theta = rng.random(h, dtype=np.float32)
    theta *= np.float32(2.0 * np.pi)
    trig = np.cos(theta)
    np.multiply(trig, rho, out=out[:h])
    np.sin(theta[: n - h], out=trig[: n - h])
    np.multiply(trig[: n - h], rho[: n - h], out=out[h:])
    return out


# ----------------------------------------------------------------------------- engine
class BatchedDFC:
    """DFC dynamics of one network for a minibatch, in NumPy.

    Parameters
    ----------
    params : ModelParams
        Network, controller, sleep and convergence parameters.
    weights : Weights
        W, b, Q; read at every call (an optimiser may update them in place).
    dtype : numpy dtype
        ``np.float64`` (default, as the authors) or ``np.float32`` (about 2x faster; the
        update sums are still accumulated in float64).
    threads : int or None
        BLAS threads while a phase or the SSA solve runs (default ``BLAS_THREADS`` = 1;
        ``None``: whatever the BLAS library is set to). The per-step matrices (B x 256 times
        256 x 256) are too small to share: on the 2-core development machine with other jobs
        running, 2 OpenBLAS threads made one such product ~17x slower than 1 thread.
        Results do not depend on it beyond round-off.
    """

    def __init__(
        self,
        params: ModelParams,
        weights: Weights,
        dtype: type = np.float64,
        threads: int | None = BLAS_THREADS,
    ) -> None:
        if not isinstance(params, ModelParams):
            raise ConfigError(f"params must be a ModelParams, got {type(params).__name__}")
        if not isinstance(weights, Weights):
            raise ConfigError(f"weights must be a Weights, got {type(weights).__name__}")
        if np.dtype(dtype) not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise ConfigError(f"dtype must be float64 or float32, got {dtype!r}")
        weights.validate(params.network)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
        self.threads = threads
        self.params = params
        self.weights = weights
        self.dtype = np.dtype(dtype)
        self.acts = params.network.activations
        self.L = params.network.n_layers
        self.sizes = params.network.sizes

    # ------------------------------------------------------------------ helpers
    def _mats(
        self, dtype: np.dtype | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Transposed weights in the engine dtype: W_i.T (n_pre, n_post), b_i, Q_i.T (n_L, n_i)."""
        dt = self.dtype if dtype is None else dtype
        WT = [np.ascontiguousarray(w.T, dtype=dt) for w in self.weights.W]
        b = [np.asarray(x, dtype=dt) for x in self.weights.b]
        QT = [np.ascontiguousarray(q.T, dtype=dt) for q in self.weights.Q]
        return WT, b, QT

    def _identity_feedback(self) -> list[bool]:
        """Per layer, whether Q_i is the identity (Q_L = I: ``freeze_QL``, the weight product,
        and every Table-1 config). The phases then feed u itself (times the step's gain) to
        that layer's apical compartments instead of a GEMM with the identity: the same numbers
        bit for bit (each output element is one product plus exact zeros), and on the
        autoencoder the 784 x 784 product is the largest of each step."""
        return [q.shape[0] == q.shape[1] and np.array_equal(q, np.eye(q.shape[0])) for q in self.weights.Q]

    def _check_X(self, X: np.ndarray, name: str = "X") -> np.ndarray:
        try:
            X = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} is not a numeric array") from None
        n0 = self.sizes[0]
        if X.ndim != 2 or X.shape[1] != n0 or X.shape[0] < 1:
            raise ConfigError(f"{name} has shape {X.shape}, expected (B, {n0}) with B >= 1")
        if not np.all(np.isfinite(X)):
            raise ConfigError(f"{name} contains non-finite values (NaN or inf)")
        return X  # float64: only the integration loop runs in the engine dtype

    def _check_target(self, r_star: np.ndarray, B: int) -> np.ndarray:
        try:
            r_star = np.asarray(r_star, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError("r_star is not a numeric array") from None
        if r_star.shape != (B, self.sizes[-1]):
            raise ConfigError(f"r_star has shape {r_star.shape}, expected ({B}, {self.sizes[-1]})")
        if not np.all(np.isfinite(r_star)):
            raise ConfigError("r_star contains non-finite values (NaN or inf)")
        return r_star  # float64 whatever the engine dtype: r* - r_L^- is tiny

    # ------------------------------------------------------------------ feedforward
    @_with_blas_threads
    def feedforward(self, X: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Feedforward pass :math:`v_i = W_i r_{i-1} + b_i`, :math:`r_i = \\phi(v_i)`.

        Returns
        -------
        v, r : lists over layers of (B, n_i) arrays.
        """
        return mlp.feedforward(self.weights, self.acts, self._check_X(X))

    def output_target(self, r_L: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Output target :math:`r_L^* = r_L^- - \\lambda\\, \\partial\\mathcal{L}/\\partial r_L`.

        With the batch-mean loss: cross-entropy
        :math:`r^* = z - \\frac{\\lambda}{B}(\\mathrm{softmax}(z) - \\mathrm{onehot}(y))`,
        MSE :math:`r^* = r - \\lambda\\, 2 (r - y)/(B\\, n_{out})`.
        ``y``: integer labels (B,) or one-hot (B, n_L) for ``ce``; targets (B, n_L) for ``mse``.
        """
        r_L = np.asarray(r_L, dtype=np.float64)
        if r_L.ndim != 2 or r_L.shape[1] != self.sizes[-1]:
            raise ConfigError(f"r_L has shape {r_L.shape}, expected (B, {self.sizes[-1]})")
        return mlp.output_target(r_L, y, self.params.network.loss, self.params.controller.target_stepsize)

    @_with_blas_threads
    def jacobian(
        self, X: np.ndarray | None = None, v: Sequence[np.ndarray] | None = None, stacked: bool = True
    ) -> np.ndarray | list[np.ndarray]:
        """Jacobian of :math:`r_L` w.r.t. every layer's somatic voltage, per sample.

        .. math::
            J_L = \\mathrm{diag}(\\phi_L'(v_L)), \\qquad
            J_i = J_{i+1} W_{i+1} \\mathrm{diag}(\\phi_i'(v_i))

        Evaluated at the feedforward pass of ``X`` or at given voltages ``v`` (list of (B, n_i)).

        Returns
        -------
        (B, n_L, sum_i n_i) array if ``stacked`` (layers in order 1..L), else the list of
        blocks (B, n_L, n_i).
        """
        if v is None and X is not None:
            X = self._check_X(X)
        return mlp.jacobian(self.weights, self.acts, X, v=v, stacked=stacked)

    # ------------------------------------------------------------------ core integrator
    def _deviation(
        self,
        i: int,
        base: tuple[np.ndarray, np.ndarray, np.ndarray],
        d: np.ndarray,
        out: np.ndarray,
        scratch: np.ndarray,
    ) -> np.ndarray:
        """:math:`\\phi(v^- + d) - \\phi(v^-)` without cancellation (``base`` = v^-, tanh v^-, 1 - tanh^2).

        For tanh the exact identity
        :math:`\\tanh(a + d) - \\tanh a = \\tanh d\\,(1 - \\tanh^2 a)/(1 + \\tanh a \\tanh d)`
        keeps full relative precision on the small difference (this is what makes float32 usable).
        """
        act = self.acts[i]
        if act == "tanh" and out.dtype == np.float64:
            # float64: the plain difference loses ~1e-12 relative on a 1e-4 deviation; cheaper
            np.add(base[0], d, out=out)
            np.tanh(out, out=out)
            out -= base[1]
            return out
        if act == "tanh":
            _, ta, sa = base
            np.tanh(d, out=out)
            np.multiply(ta, out, out=scratch)
            scratch += 1.0
            out *= sa
            out /= scratch
            return out
        if act == "linear":
            np.copyto(out, d)
            return out
        a = base[0]  # relu: max(a + d, 0) - max(a, 0)
        out[...] = np.where(a >= 0, np.maximum(d, -a), np.maximum(a + d, 0.0))
        return out

    @staticmethod
    def _stationary(dv: list[np.ndarray], u: np.ndarray, snap: list[np.ndarray], tol: float) -> bool:
        """True if no voltage deviation nor u moved by more than ``tol`` x its largest value since
        the snapshot ``snap`` (taken one accumulation chunk earlier); refreshes the snapshot."""
        still = True
        for x, old in zip([*dv, u], snap, strict=True):
            scale = float(np.max(np.abs(x)))
            if float(np.max(np.abs(x - old))) > tol * scale:
                still = False
            np.copyto(old, x)
        return still

    def _ff_base(self, v_ff: Sequence[np.ndarray], dt: np.dtype) -> list[tuple]:
        """Per layer, in the phase dtype: v^-, and for tanh layers tanh(v^-) and 1 - tanh(v^-)^2
        (the expansion point of :meth:`_deviation`)."""
        base = []
        for i in range(self.L):
            ta = np.tanh(v_ff[i]) if self.acts[i] == "tanh" else None
            base.append(
                (
                    v_ff[i].astype(dt),
                    None if ta is None else ta.astype(dt),
                    None if ta is None else (1.0 - ta * ta).astype(dt),
                )
            )
        return base

    @staticmethod
    def _controller_step(
        ctrl: ControllerParams, h: float, e: np.ndarray, u: np.ndarray, u_int: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One Euler step of the PI controller; ``u_int`` is updated in place.

        ``form: code``: u_int += h (e - alpha u), u = u_int + k_p e; ``form: slides``:
        u_int += h (e - alpha u_int), u = K_I u_int + k_p e. Returns u[t+1] and the u that
        drives the apical compartments this step (u[t+1] if proactive, else u[t]).
        """
        if ctrl.form == "code":
            u_int += h * (e - ctrl.alpha * u)
            u_new = u_int + ctrl.k_p * e
        else:
            u_int += h * (e - ctrl.alpha * u_int)
            u_new = ctrl.K_I * u_int + ctrl.k_p * e
        return u_new, (u_new if ctrl.proactive else u)

    def _integrate(
        self,
        X: np.ndarray,
        r_star: np.ndarray,
        ctrl: ControllerParams,
        *,
        phase: str,
        tau_A: float | None = None,
        sigma: Sequence[float] | None = None,
        noise: Sequence[np.ndarray] | None = None,
        rng: np.random.Generator | None = None,
        record: bool = False,
        want_dfc: bool = False,
        want_sleep: bool = False,
        ff: tuple[Sequence[np.ndarray], Sequence[np.ndarray]] | None = None,
        dtype: np.dtype | None = None,
        stationary_tol: float | None = None,
        exact: bool = True,
    ) -> dict:
        r"""Euler-integrate T = ``ctrl.tmax`` stored states; return the final state and the sums.

        ``want_dfc`` sums, per layer i > 0, the terms :math:`d_t (r^-_{i-1} + \delta r_{i-1,t})^T`
        (:math:`d_t = \phi(v_i) - \phi(v^B_i)`). ``exact=True``: every step's product, one GEMM
        per ``ACCUMULATION_CHUNK`` steps. ``exact=False``: the first-order part
        :math:`(\sum_t d_t)^T r^-_{i-1}` is exact (one GEMM at the end) and the second-order part
        :math:`\sum_t d_t\,\delta r_{i-1,t}^T` (~1e-4 of the sum) is summed per block of K steps
        as :math:`(\sum_k d_k)(\sum_k \delta r_k)^T / K`, exact per step during the first
        ``BLOCK_EXACT_STEPS`` steps (the fast transient); see :data:`BLOCK_EXACT_STEPS`.

        The state is carried as deviations from the feedforward pass (``dv = v - v^-``,
        ``dvB = v^B - v^-``, ``dr = r - r^-``): the spec's update equations are linear in v, so
        this is the same scheme, but the small controlled deviations keep their own relative
        precision (the target step :math:`\\lambda/B` is ~1e-4 of the activations).
        """
        dt = self.dtype if dtype is None else np.dtype(dtype)
        WT, _, QT = self._mats(dt)
        q_eye = self._identity_feedback()
        L = self.L
        B = X.shape[0]
        T, h, tcr = ctrl.tmax, ctrl.dt, max(ctrl.tcr, ctrl.dt)
        gain = dt.type(h / tcr)
        sigmas = [0.0] * L if sigma is None else [float(x) for x in sigma]
        noise_scale = [0.0 if tau_A is None else s * np.sqrt(h) / tau_A for s in sigmas]
        a_decay = 0.0 if tau_A is None else h / tau_A

        # feedforward reference state (float64), t = 0: v = v^B = v^-, u = u_int = v_A = 0
        if ff is not None:  # the caller's feedforward pass of this X (same expression)
            v_ff, r_ff = list(ff[0]), list(ff[1])
        else:
            v_ff, r_ff = mlp.feedforward(self.weights, self.acts, X)
        base = self._ff_base(v_ff, dt)
        r_ff_dt = [x.astype(dt) for x in r_ff]
        dv = [np.zeros((B, n), dtype=dt) for n in self.sizes[1:]]
        dvB = [np.zeros((B, n), dtype=dt) for n in self.sizes[1:]]
        dr = [np.zeros((B, n), dtype=dt) for n in self.sizes[1:]]
        vA = [np.zeros((B, n), dtype=dt) for n in self.sizes[1:]]
        fb = [np.empty((B, n), dtype=dt) for n in self.sizes[1:]]
        tmp = [np.empty((B, n), dtype=dt) for n in self.sizes[1:]]
        scratch = [np.empty((B, n), dtype=dt) for n in self.sizes[1:]]
        n_L = self.sizes[-1]
        delta_L = (np.asarray(r_star, dtype=np.float64) - r_ff[-1]).astype(dt)  # r* - r_L^-
        u = np.zeros((B, n_L), dtype=dt)
        u_int = np.zeros((B, n_L), dtype=dt)

        out: dict = {}
        if record:
            rec = {
                k: [np.empty((B, T, n), dtype=dt) for n in self.sizes[1:]]
                for k in ("v_soma", "v_basal", "v_apical", "r")
            }
            rec_u = np.empty((B, T, n_L), dtype=dt)
            rec_ui = np.empty((B, T, n_L), dtype=dt)
            rec_e = np.empty((B, T, n_L), dtype=dt)

            def store(t: int) -> None:
                for i in range(L):
                    rec["v_soma"][i][:, t] = v_ff[i] + dv[i]
                    rec["v_basal"][i][:, t] = v_ff[i] + dvB[i]
                    rec["v_apical"][i][:, t] = vA[i]
                    rec["r"][i][:, t] = r_ff[i] + dr[i]
                rec_u[:, t] = u
                rec_ui[:, t] = u_int
                rec_e[:, t] = delta_L - dr[-1]

            store(0)
        if want_dfc:
            S_d = [np.zeros((B, n)) for n in self.sizes[1:]]  # per-sample sums of differences
            S_W = [None] + [np.zeros((self.sizes[i + 1], self.sizes[i])) for i in range(1, L)]
            K = max(1, min(ACCUMULATION_CHUNK, T - 1))
            k_buf = 0
            if exact:
                # differences and presynaptic rates of the last K steps; one GEMM per chunk
                D_buf = [None] + [np.empty((K, B, self.sizes[i + 1]), dtype=dt) for i in range(1, L)]
                R_buf = [None] + [np.empty((K, B, self.sizes[i]), dtype=dt) for i in range(1, L)]

                def flush(k: int) -> None:
                    for j in range(1, L):
                        Dm = D_buf[j][:k].reshape(k * B, -1)
                        S_W[j] += Dm.T @ R_buf[j][:k].reshape(k * B, -1)

            else:
                # this step's differences; running sums of the presynaptic deviations dr_{j-1};
                # both sums at the start of the block (the block sums are their differences)
                D_buf = [None] + [np.empty((1, B, self.sizes[i + 1]), dtype=dt) for i in range(1, L)]
                S_r = [None] + [np.zeros((B, self.sizes[i])) for i in range(1, L)]
                S_d0 = [None] + [np.zeros((B, n)) for n in self.sizes[2:]]
                S_r0 = [None] + [np.zeros((B, self.sizes[i])) for i in range(1, L)]

                def flush(k: int) -> None:
                    for j in range(1, L):
                        Db = S_d[j] - S_d0[j]
                        Rb = S_r[j] - S_r0[j]
                        S_W[j] += (Db.T @ Rb) / k  # sum_k d_k dr_k^T as a product of block sums
                        np.copyto(S_d0[j], S_d[j])
                        np.copyto(S_r0[j], S_r[j])

        # apical noise: explicit arrays scaled once (xi_s[i][t] drives step t -> t+1), or one draw
        # per step and layer from rng into a buffer (step by step, layer by layer)
        xi_s: list[np.ndarray | None] = [None] * L
        noise_buf: list[np.ndarray | None] = [None] * L
        for i in range(L):
            if tau_A is None or noise_scale[i] == 0.0:
                continue
            if noise is not None:
                xi_s[i] = np.multiply(np.asarray(noise[i], dtype=dt), dt.type(noise_scale[i]))
            else:
                noise_buf[i] = np.empty((B, self.sizes[i + 1]), dtype=dt)
        if want_sleep:
            S_Q = [np.zeros((n, n_L)) for n in self.sizes[1:]]

        inst = ctrl.instantaneous
        lim = DIVERGENCE_LIMIT
        steps = T  # stored states simulated (fewer if the stationary finish applies)
        finish_early = stationary_tol is not None and want_dfc and not record
        check_every = 1 if (exact or record) else DIVERGENCE_CHECK_EVERY  # divergence test of dv
        snap: list[np.ndarray] = [x.copy() for x in dv] + [u.copy()] if finish_early else []

        for t in range(T - 1):
            # --- controller: e = r* - r_L = delta_L - dr_L (u_new = u[t+1])
            e = delta_L - dr[-1]
            u, u_fb = self._controller_step(ctrl, h, e, u, u_int)
            if not (np.all(np.abs(u) <= lim)):
                raise DivergenceError(-1, t + 1, phase)
            if not inst:  # all basal inputs from the previous step's rates
                for i in range(1, L):
                    np.matmul(dr[i - 1], WT[i], out=dvB[i])
            # --- layers 1..L (layer 1's basal input W_1 x + b_1 never changes: dvB[0] = 0)
            for i in range(L):
                if inst and i > 0:
                    np.matmul(dr[i - 1], WT[i], out=dvB[i])
                if q_eye[i]:  # Q_i = I: u itself, bit for bit the product
                    np.copyto(fb[i], u_fb)
                else:
                    np.matmul(u_fb, QT[i], out=fb[i])
                if tau_A is None:
                    vA[i], fb[i] = fb[i], vA[i]
                else:
                    # v_A += dt/tau_A (-v_A + Q u) + sigma sqrt(dt)/tau_A xi
                    fb[i] -= vA[i]
                    fb[i] *= a_decay
                    if want_sleep:  # the authors' pairing: v_A[t] (not yet updated) with u[t+1]
                        S_Q[i] += vA[i].T @ u
                    vA[i] += fb[i]
                    if xi_s[i] is not None:
                        vA[i] += xi_s[i][t]
                    elif noise_buf[i] is not None:
                        xi = rng.standard_normal(dtype=dt, out=noise_buf[i])
                        xi *= dt.type(noise_scale[i])
                        vA[i] += xi
                # v += dt/tcr (v_A + v_B - v)
                np.add(vA[i], dvB[i], out=tmp[i])
                tmp[i] -= dv[i]
                tmp[i] *= gain
                dv[i] += tmp[i]
                if (t + 1) % check_every == 0 or t == T - 2:
                    if not (dv[i].max() <= lim and dv[i].min() >= -lim):
                        raise DivergenceError(i, t + 1, phase)
                self._deviation(i, base[i], dv[i], dr[i], scratch[i])
                if want_dfc:
                    if i == 0:  # phi(v) - phi(v_B) = dr for the constant basal input
                        S_d[0] += dr[0]
                    else:
                        kb = k_buf if exact else 0
                        d = self._deviation(i, base[i], dvB[i], D_buf[i][kb], scratch[i])
                        np.subtract(dr[i], d, out=d)
                        S_d[i] += d
                        if exact:
                            np.add(r_ff_dt[i - 1], dr[i - 1], out=R_buf[i][k_buf])
                        else:
                            S_r[i] += dr[i - 1]
            if want_dfc:
                k_buf += 1
                if k_buf == K or (not exact and t < BLOCK_EXACT_STEPS):
                    flush(k_buf)
                    k_buf = 0
                if k_buf == 0 and finish_early and t % K == K - 1:
                    if self._stationary(dv, u, snap, stationary_tol):
                        # the remaining T-2-t steps would add this step's terms again
                        n_rem = T - 2 - t
                        S_d[0] += n_rem * dr[0].astype(np.float64)
                        for j in range(1, L):
                            d_last = D_buf[j][-1].astype(np.float64)
                            r_last = (r_ff_dt[j - 1] + dr[j - 1]) if exact else dr[j - 1]
                            S_d[j] += n_rem * d_last
                            S_W[j] += n_rem * (d_last.T @ r_last.astype(np.float64))
                        steps = t + 2
                        break
            if record:
                store(t + 1)

        if want_dfc and k_buf:
            flush(k_buf)
        out["steps_simulated"] = steps
        out.update(
            dv=dv,
            dvB=dvB,
            dr=dr,
            vA=vA,
            u=u,
            u_int=u_int,
            v_ff=v_ff,
            r_ff=r_ff,
            base=base,
            r=[r_ff[i] + dr[i] for i in range(L)],
            delta_L=delta_L,
            e0=delta_L.astype(np.float64),
            e_last=(delta_L - dr[-1]).astype(np.float64),
        )
        if want_dfc:
            S_b = [x.sum(axis=0) for x in S_d]
            S_W[0] = S_d[0].T @ X.astype(np.float64)
            if not exact:  # the first-order part, (sum_t d_t)^T r^-_{j-1}
                for j in range(1, L):
                    S_W[j] += S_d[j].T @ r_ff[j - 1]
            out.update(S_d=S_d, S_W=S_W, S_b=S_b)
        if want_sleep:
            out["S_Q"] = S_Q
        if record:
            out["record"] = dict(rec, u=rec_u, u_int=rec_ui, e=rec_e)
        return out

    # ------------------------------------------------------------------ sleep integrator
    def _sleep_integrate(
        self,
        ctrl: ControllerParams,
        *,
        tau_A: float,
        sigma: Sequence[float],
        noise: Sequence[np.ndarray] | None,
        rng: np.random.Generator | None,
        ff: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
        dtype: np.dtype,
        noise_method: str = "ziggurat",
    ) -> dict:
        """The sleep phase's Euler scheme (that of :meth:`_integrate` with noisy apical filters),
        arranged for speed; returns the final state and :math:`S_Q = \\sum_b\\sum_t v^A[t] u[t+1]^T`.

        Same mathematics as ``_integrate(..., want_sleep=True)`` (equal to round-off, tested at
        1e-12) and the same draws in the same order (one ``standard_normal`` per step fills the
        noisy layers' (B, n_i) blocks one after the other, as one call per layer would). The
        savings: the apical voltages are carried scaled by :math:`g = dt/tcr` (so ``g W`` gives
        the somatic drive in one product and the soma update is two passes), all layers' apical
        filters are one flat array updated in a few whole-array passes, and the divergence test of
        the voltages runs every ``DIVERGENCE_CHECK_EVERY`` steps and at the end.
        """
        dt = dtype
        WT, _, QT = self._mats(dt)
        L = self.L
        sizes = self.sizes[1:]
        v_ff, r_ff = list(ff[0]), list(ff[1])
        B = v_ff[0].shape[0]
        T, h = ctrl.tmax, ctrl.dt
        g = h / max(ctrl.tcr, ctrl.dt)  # soma gain per step
        a = h / tau_A  # apical gain per step
        inst = ctrl.instantaneous
        # noise std per step of the g-scaled apical voltage
        gs = [g * float(s) * np.sqrt(h) / tau_A for s in sigma]
        base = self._ff_base(v_ff, dt)
        gWT = [None] + [np.multiply(WT[i], dt.type(g)) for i in range(1, L)]
        # all apical voltages (scaled by g) in one flat array, layer blocks (B, n_i) one after another
        off = np.concatenate([[0], np.cumsum([B * n for n in sizes])])
        vA_flat = np.zeros(off[-1], dtype=dt)
        fb_flat = np.empty(off[-1], dtype=dt)
        vA = [vA_flat[off[i] : off[i + 1]].reshape(B, sizes[i]) for i in range(L)]
        fb = [fb_flat[off[i] : off[i + 1]].reshape(B, sizes[i]) for i in range(L)]
        agQT = [np.multiply(QT[i], dt.type(a * g)) for i in range(L)]
        q_eye = self._identity_feedback()
        keep = dt.type(1.0 - a)
        dv = [np.zeros((B, n), dtype=dt) for n in sizes]
        dr = [np.zeros((B, n), dtype=dt) for n in sizes]
        tmp = [np.empty((B, n), dtype=dt) for n in sizes]
        scratch = [np.empty((B, n), dtype=dt) for n in sizes]
        leak = dt.type(1.0 - g)
        delta_L = np.zeros((B, sizes[-1]), dtype=dt)  # r* = r_L^-: no output error
        u = np.zeros((B, sizes[-1]), dtype=dt)
        u_int = np.zeros((B, sizes[-1]), dtype=dt)
        S_Q = [np.zeros((n, sizes[-1])) for n in sizes]

        noisy = [i for i in range(L) if gs[i] != 0.0]
        all_noisy = len(noisy) == L
        xi_s: list[np.ndarray | None] = [None] * L  # explicit noise, scaled once
        xi_flat = xi = None
        if noise is not None:
            for i in noisy:
                xi_s[i] = np.multiply(np.asarray(noise[i], dtype=dt), dt.type(gs[i]))
        elif noisy:
            # the noisy layers' blocks in layer order: one draw per step = one draw per layer
            n_draw = [B * sizes[i] for i in noisy]
            xi_flat = np.empty(sum(n_draw), dtype=dt)
            o = np.concatenate([[0], np.cumsum(n_draw)])
            xi = {i: xi_flat[o[k] : o[k + 1]].reshape(B, sizes[i]) for k, i in enumerate(noisy)}
            same_scale = len({gs[i] for i in noisy}) == 1

        lim = DIVERGENCE_LIMIT
        phase = "sleep"
        for t in range(T - 1):
            # --- controller (e = r* - r_L = -dr_L)
            e = delta_L - dr[-1]
            u, u_fb = self._controller_step(ctrl, h, e, u, u_int)
            if not (np.all(np.abs(u) <= lim)):
                raise DivergenceError(-1, t + 1, phase)
            # --- anti-Hebbian sum (v_A[t] with u[t+1]), then every apical filter at once:
            # g v_A += (dt/tau_A)(-g v_A + g Q u) + g sigma sqrt(dt)/tau_A xi
            for i in range(L):
                S_Q[i] += vA[i].T @ u
                if q_eye[i]:  # Q_i = I: (a g) u, bit for bit the product with a g I
                    np.multiply(u_fb, dt.type(a * g), out=fb[i])
                else:
                    np.matmul(u_fb, agQT[i], out=fb[i])
            vA_flat *= keep
            vA_flat += fb_flat
            if xi_flat is not None:
                if noise_method == "box_muller":
                    box_muller_normals(rng, xi_flat)
                else:
                    rng.standard_normal(dtype=dt, out=xi_flat)
                if same_scale:
                    xi_flat *= dt.type(gs[noisy[0]])
                else:
                    for i in noisy:
                        xi[i] *= dt.type(gs[i])
                if all_noisy:
                    vA_flat += xi_flat
                else:
                    for i in noisy:
                        vA[i] += xi[i]
            elif noise is not None:
                for i in noisy:
                    vA[i] += xi_s[i][t]
            # --- somata: v += g (v_A + v_B - v), as (1 - g) v + g v_A + (g W) r_{i-1}
            if not inst:  # all basal inputs from the previous step's rates
                for i in range(1, L):
                    np.matmul(dr[i - 1], gWT[i], out=tmp[i])
            for i in range(L):
                dv[i] *= leak
                if i == 0:  # layer 1's basal input W_1 x + b_1 never changes
                    dv[0] += vA[0]
                else:
                    if inst:
                        np.matmul(dr[i - 1], gWT[i], out=tmp[i])
                    tmp[i] += vA[i]
                    dv[i] += tmp[i]
                self._deviation(i, base[i], dv[i], dr[i], scratch[i])
            if (t + 1) % DIVERGENCE_CHECK_EVERY == 0 or t == T - 2:
                for i in range(L):
                    if not (dv[i].max() <= lim and dv[i].min() >= -lim):
                        raise DivergenceError(i, t + 1, phase)
        inv_g = 1.0 / g
        return {
            "S_Q": [x * inv_g for x in S_Q],
            "vA": [x * dt.type(inv_g) for x in vA],
            "u": u,
            "r": [r_ff[i] + dr[i] for i in range(L)],
            "e_last": (delta_L - dr[-1]).astype(np.float64),
        }

    # ------------------------------------------------------------------ controlled phase
    @_with_blas_threads
    def controlled_phase(
        self,
        X: np.ndarray,
        r_star: np.ndarray,
        record: bool = False,
        accumulate: bool = True,
        stationary_tol: float | None = None,
        exact: bool = True,
    ) -> PhaseResult:
        """Simulate the controlled ("forward") phase and accumulate the DFC updates.

        Parameters
        ----------
        X : (B, n_0) input.
        r_star : (B, n_L) output target (see :meth:`output_target`).
        record : bool
            Also return the trajectories (B, T, n_i) and u, u_int, e (B, T, n_L).
        accumulate : bool
            Accumulate the time-averaged DFC update (``dW_dfc``, ``db_dfc``). The last-step
            DFC-SS update (``dW_ss``, ``db_ss``) is always computed.
        stationary_tol : float or None
            ``None`` (default): exact, all T stored states are simulated. A number (e.g. 1e-7):
            at the end of each accumulation chunk (``ACCUMULATION_CHUNK`` steps), if no voltage
            deviation nor u moved by more than ``stationary_tol`` times its largest value over
            the chunk, the remaining steps are taken as repeats of the last one and their terms
            added in closed form (``extra['steps_simulated']`` says how many states were
            simulated). Needs ``accumulate`` and no ``record``; the final state, the
            convergence test and DFC-SS then use the stationary state.
        exact : bool
            ``True`` (default): every step's term of the DFC sum and the divergence test at every
            step (the reference scheme's sums to round-off). ``False``: the sum's second-order
            part (the product of the controlled deviations, ~1e-4 of the sum at the MNIST
            settings) is summed per block of ``ACCUMULATION_CHUNK`` steps after the first
            ``BLOCK_EXACT_STEPS`` and the divergence test runs every ``DIVERGENCE_CHECK_EVERY`` steps
            (see :meth:`_integrate`). Its error grows with the deviations: 6e-9 relative
            (1.5e-6 degrees) on an MNIST minibatch with the authors' settings, but up to ~1e-3
            where the deviations are of order one (a toy net with random feedback weights,
            whose loop barely settles). The trajectory is the same in both.

        Returns
        -------
        PhaseResult
            ``converged`` per sample; updates are per-sample means (sum over converged
            samples, or all samples if ``convergence.include_nonconverged``, divided by B).
        """
        X = self._check_X(X)
        B = X.shape[0]
        r_star = self._check_target(r_star, B)
        ctrl = self.params.controller
        if stationary_tol is not None and not (stationary_tol > 0):
            raise ConfigError(f"stationary_tol must be positive or None, got {stationary_tol!r}")
        tol = stationary_tol
        res = self._integrate(
            X,
            r_star,
            ctrl,
            phase="controlled",
            record=record,
            want_dfc=accumulate,
            stationary_tol=tol,
            exact=exact,
        )
        T = ctrl.tmax
        r_ff = res["r_ff"][-1]

        # --- convergence (spec section 2): the test shared with the Brian2 engine
        conv = self.params.convergence
        ct = convergence_test(
            res["r"][-1], r_star, res["u"], res["u_int"], res["e_last"], res["e0"], r_ff, ctrl, conv
        )
        converged, rel, e_last_n, e0_n = ct.converged, ct.rel_residual, ct.e_last_norm, ct.e0_norm
        mask = np.ones(B, bool) if conv.include_nonconverged else converged
        n_nc = int(B - converged.sum())

        out = PhaseResult(
            r_star=r_star,
            r_L_ff=r_ff,
            converged=converged,
            n_nonconverged=n_nc,
            u_last=res["u"].copy(),
            u_int_last=res["u_int"].copy(),
            convergence=ct,
            e_last=res["e_last"],
            r_last=res["r"],
        )
        out.extra.update(
            rel_residual=rel, e_last_norm=e_last_n, e0_norm=e0_n, steps_simulated=res["steps_simulated"]
        )

        # --- DFC-SS: last step, basal input rebuilt from r_{i-1}[T-1]:
        #     phi(v_B' + dv) - phi(v_B'), dv = v[T-1] - v_B[T-1], v_B' = W r_{i-1}[T-1] + b
        WT, _, _ = self._mats()
        mf = mask.astype(np.float64)[:, None]
        dW_ss, db_ss = [], []
        for i in range(self.L):
            dvB_re = np.zeros_like(res["dv"][i]) if i == 0 else res["dr"][i - 1] @ WT[i]
            dv = res["dv"][i] - res["dvB"][i]
            a = self._deviation(i, res["base"][i], dvB_re + dv, np.empty_like(dv), np.empty_like(dv))
            c = self._deviation(i, res["base"][i], dvB_re, np.empty_like(dv), np.empty_like(dv))
            d = (a - c).astype(np.float64) * mf
            pre = X if i == 0 else res["r"][i - 1]
            dW_ss.append(d.T @ pre / B)
            db_ss.append(d.sum(axis=0) / B)
        out.dW_ss, out.db_ss = dW_ss, db_ss

        # --- DFC: time average, non-converged samples removed exactly
        if accumulate:
            S_W, S_b = list(res["S_W"]), list(res["S_b"])
            if not mask.all():
                kw_sub = dict(phase="controlled", want_dfc=True, stationary_tol=tol, exact=exact)
                drop = ~mask
                if drop.sum() <= B // 2:
                    sub = self._integrate(X[drop], r_star[drop], ctrl, **kw_sub)
                    S_W = [S_W[i] - sub["S_W"][i] for i in range(self.L)]
                    S_b = [S_b[i] - sub["S_b"][i] for i in range(self.L)]
                elif mask.any():
                    sub = self._integrate(X[mask], r_star[mask], ctrl, **kw_sub)
                    S_W, S_b = sub["S_W"], sub["S_b"]
                else:
                    S_W = [np.zeros_like(x) for x in S_W]
                    S_b = [np.zeros_like(x) for x in S_b]
            out.dW_dfc = [x / (B * T) for x in S_W]
            out.db_dfc = [x / (B * T) for x in S_b]

        if record:
            self._attach_record(out, res["record"])
        return out

    @staticmethod
    def _attach_record(out: PhaseResult, rec: dict) -> None:
        out.v_soma, out.v_basal = rec["v_soma"], rec["v_basal"]
        out.v_apical, out.r = rec["v_apical"], rec["r"]
        out.u, out.u_int, out.e = rec["u"], rec["u_int"], rec["e"]

    # ------------------------------------------------------------------ sleep phase
    @_with_blas_threads
    def sleep_phase(
        self,
        X: np.ndarray,
        rng: np.random.Generator | None = None,
        record: bool = False,
        noise: Sequence[np.ndarray] | None = None,
        beta: float = 0.0,
        dtype: type | None = None,
        exact: bool = False,
        noise_method: str = "ziggurat",
    ) -> PhaseResult:
        """Feedback-learning ("sleep") phase: no output error, noisy apical compartments.

        The target is the network's own feedforward output (:math:`r_L^* = r_L^-`), the
        controller runs with the sleep parameters (``k_p_fb``, ``alpha_fb``, ``dt_fb``,
        ``tmax_fb``, ``tcr_fb``) and every apical compartment is the noisy low-pass filter of
        time constant ``tau_A``, with noise std ``sleep.sigma`` in the hidden layers and
        ``sleep.sigma_output_fb`` in the output layer (:meth:`SleepParams.sigma_layers`).
        The anti-Hebbian update, as the authors' code estimates it from the stored trajectory
        t = 0..T-1 (:math:`T` = ``tmax_fb``), pairs the apical voltage with the *next* control
        signal and averages the T-1 pairs:

        .. math::
            \\Delta Q_i = -\\frac{1}{\\tilde\\sigma^2}\\,\\frac{1}{B (T-1)}\\sum_b\\sum_{t=0}^{T-2}
                v^A_i[t]\\, u[t+1]^T - \\beta Q_i, \\qquad \\tilde\\sigma = \\max(\\sigma, 0.01)

        :math:`\\tilde\\sigma` uses the hidden layers' ``sigma`` for every layer, the output
        layer included, whatever ``sigma_output_fb`` is (as the authors' code).

        Parameters
        ----------
        X : (B, n_0) input.
        rng : numpy Generator drawing the white noise: at each step t -> t+1, for each layer in
            order whose noise std is not 0, one draw ``rng.standard_normal((B, n_i))`` (in the
            phase's dtype).
        noise : optional explicit noise, list over layers of (T_fb - 1, B, n_i) standard-normal
            arrays (``noise[i][t]`` drives the step t -> t+1); overrides ``rng``.
        beta : weight decay of the rule (0 by default: :mod:`~dfc_brian.engines.optim` adds the
            decay as L2 in the optimiser).
        dtype : precision of this phase's integration (default: the engine's). ``np.float32``
            is about twice as fast; on the MNIST settings its dQ differs from float64's by
            ~2e-7 relative with the same noise (the sums are kept in float64).
        exact : bool
            ``False`` (default): the sleep-specific loop :meth:`_sleep_integrate` (same scheme,
            same draws in the same order; measured 1.06x (float64) and 1.19x (float32) less CPU
            time than the engine of 54c366a). ``True``, or ``record=True``: the shared integrator
            :meth:`_integrate`. The two agree to round-off (tested at 1e-12 relative in
            float64, with explicit noise and with a seeded generator).
        noise_method : ``'ziggurat'`` or ``'box_muller'``
            How the white noise is drawn from ``rng``: ``'ziggurat'`` (default) is
            ``rng.standard_normal``, as documented for ``rng`` above; ``'box_muller'`` is
            :func:`box_muller_normals`, the same distribution (to float32 resolution) at about
            half the cost of the draws, but other numbers for the same seed. The draws are
            ~35-50 % of the phase. Default loop only (not with ``exact`` or ``record``).
        """
        X = self._check_X(X)
        B = X.shape[0]
        sp = self.params.sleep
        ctrl = sp.as_controller(self.params.controller)
        if noise is not None:
            if len(noise) != self.L:
                raise ConfigError(f"noise must hold {self.L} arrays (one per layer), got {len(noise)}")
            for i, xi in enumerate(noise):
                shp = (ctrl.tmax - 1, B, self.sizes[i + 1])
                if np.shape(xi) != shp:
                    raise ConfigError(f"noise[{i}] has shape {np.shape(xi)}, expected {shp} (T_fb-1, B, n_i)")
                if not np.all(np.isfinite(xi)):
                    raise ConfigError(f"noise[{i}] contains non-finite values")
        if noise_method not in NOISE_METHODS:
            raise ConfigError(f"noise_method must be one of {NOISE_METHODS}, got {noise_method!r}")
        if noise_method != "ziggurat" and (exact or record):
            raise ConfigError(
                "noise_method='box_muller' runs in the default loop only (exact=False, record=False)"
            )
        if noise is None and max(sp.sigma_layers(self.L)) > 0 and rng is None:
            raise ConfigError(
                "sleep_phase needs rng (a numpy Generator) or explicit noise when sleep.sigma > 0"
            )
        if dtype is None:
            dt_phase = self.dtype
        elif np.dtype(dtype) in (np.dtype(np.float64), np.dtype(np.float32)):
            dt_phase = np.dtype(dtype)
        else:
            raise ConfigError(f"dtype must be float64 or float32, got {dtype!r}")
        ff = self.feedforward(X)
        r_star = ff[1][-1]
        if record or exact:
            res = self._integrate(
                X,
                r_star,
                ctrl,
                phase="sleep",
                tau_A=sp.tau_A,
                sigma=sp.sigma_layers(self.L),
                noise=noise,
                rng=rng,
                record=record,
                want_sleep=True,
                ff=ff,
                dtype=dt_phase,
            )
        else:
            res = self._sleep_integrate(
                ctrl,
                tau_A=sp.tau_A,
                sigma=sp.sigma_layers(self.L),
                noise=noise,
                rng=rng,
                ff=ff,
                dtype=dt_phase,
                noise_method=noise_method,
            )
        T = ctrl.tmax
        s2 = sp.sigma_tilde**2
        dQ = [-res["S_Q"][i] / (s2 * B * (T - 1)) - beta * self.weights.Q[i] for i in range(self.L)]
        out = PhaseResult(
            r_star=r_star,
            r_L_ff=r_star,
            converged=np.ones(B, bool),
            n_nonconverged=0,
            u_last=res["u"].copy(),
            e_last=res["e_last"],
            r_last=res["r"],
            dQ=dQ,
        )
        out.extra["v_apical_last"] = res["vA"]  # v_A[T-1] of every layer
        if record:
            self._attach_record(out, res["record"])
        return out

    # ------------------------------------------------------------------ DFC-SSA
    @_with_blas_threads
    def jq(self, v: Sequence[np.ndarray]) -> np.ndarray:
        """:math:`J Q = \\sum_i J_i Q_i` per sample (B, n_L, n_L) (:func:`~dfc_brian.model.mlp.jq`)."""
        return mlp.jq(self.weights, self.acts, v)

    @_with_blas_threads
    def ssa(
        self,
        X: np.ndarray,
        r_star: np.ndarray,
        exact: bool = False,
        ff: tuple[Sequence[np.ndarray], Sequence[np.ndarray]] | None = None,
    ) -> PhaseResult:
        """DFC-SSA: analytic linearised steady state, no simulation (:func:`~dfc_brian.model.mlp.ssa`).

        .. math::
            u = (J Q + \\alpha I)^{-1}\\delta_L, \\quad \\delta_L = r_L^* - r_L^-, \\quad
            \\Delta v_i = Q_i u, \\quad v_i = W_i \\phi(v_{i-1}) + b_i + \\Delta v_i

        and the nonlinear-difference update on the propagated target rates.

        Parameters
        ----------
        X, r_star : (B, n_0) input and (B, n_L) output target.
        exact : bool
            ``False`` (default): :math:`JQ` by pushing Q forward (:meth:`jq`, one GEMM per
            layer) and layer 1's basal input taken from the feedforward pass. ``True``: the
            original route, the stacked Jacobian (:meth:`jacobian`) times Q and a second full
            forward pass. The two agree to round-off (~1e-13 relative; tested at 1e-10).
        ff : optional ``(v, r)`` of :meth:`feedforward` for this X (saves recomputing it).

        ``extra``: ``delta_v``, ``v_target`` and ``JQ`` (None where the low-rank route of
        :func:`~dfc_brian.model.mlp.ssa_control_low_rank` solved without forming it).
        """
        X = self._check_X(X)
        B = X.shape[0]
        r_star = self._check_target(r_star, B)
        if ff is None:
            v_ff, r_ff = self.feedforward(X)
        else:
            v_ff, r_ff = ff
            if len(v_ff) != self.L or len(r_ff) != self.L:
                raise ConfigError(f"ff must hold {self.L} voltages and {self.L} rates")
        delta = r_star - r_ff[-1]
        ss = mlp.ssa(
            self.weights, self.acts, X, delta, self.params.controller.alpha, ff=(v_ff, r_ff), exact=exact
        )
        u, r_t, prev = ss.u, ss.r, ss.r[-1]
        dW, db = [dW for dW, _ in ss.update], [db for _, db in ss.update]
        out = PhaseResult(
            r_star=r_star,
            r_L_ff=r_ff[-1],
            converged=np.ones(B, bool),
            n_nonconverged=0,
            u_last=u,
            e_last=r_star - prev,
            r_last=r_t,
            dW_ssa=dW,
            db_ssa=db,
            u=u,
        )
        out.extra.update(delta_v=ss.dv, v_target=ss.v, JQ=ss.JQ)
        return out
