"""The DFC network in Brian2: NeuronGroups, Synapses and the PI controller, code-generated.

Create → connect → simulate → read back::

    net = BrianDFC(params, weights, target="numpy")            # or "cython", "cpp_standalone"
    res = net.controlled_phase(X, y, record=("v_soma", "v_apical"), layers=[1, 3])
    res.v_soma[0]       # (n_samples, T, n_1) somatic voltages of layer 1 over time
    res.u               # (n_samples, T, n_L) control signal
    res.dW_dfc          # time-averaged DFC update of every layer (sample mean)
    net.sleep_phase(X)  # noisy apical compartments, anti-Hebbian Q plasticity
    net.get_weights()   # back to NumPy arrays (n_post, n_pre)

Samples are presented one after another, each for T time steps, through TimedArrays; a
new sample starts with a feedforward pass done by `run_regularly` operations (no Python in
the loop, no `run()` per sample). The equations and the schedule come from
:mod:`dfc_brian.model.equations`.

With ``target="cpp_standalone"`` each simulation configuration (phase, plasticity,
recording, number of samples per chunk) is built and compiled once; later calls with new
inputs, targets and weights re-run the compiled binary with ``device.run(run_args=...)``.
Only one standalone project can be active per process (a Brian2 restriction): creating a
standalone simulation with another configuration re-initialises the device.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from dfc_brian.engines.batched import phi
from dfc_brian.engines.convergence import ConvergenceResult, convergence_test
from dfc_brian.engines.errors import DivergenceError
from dfc_brian.model import equations as eq
from dfc_brian.model.params import ConfigError, ControllerParams, ModelParams
from dfc_brian.model.weights import Weights, init_weights

TARGETS = ("numpy", "cython", "cpp_standalone")
RECORDABLE = ("v_soma", "v_basal", "v_apical", "r", "I_basal", "I_apical", "r_basal")
# result name -> Brian2 variable of the controller (`e` is reserved in Brian2 equations)
CONTROLLER_RECORDABLE = {"u": "u", "u_int": "u_int", "e": "error", "r_star": "r_star"}
PLASTICITY = ("none", "accumulate", "online")


class LayerRecord(list):
    """A recorded variable per layer: entry ``i`` is paper layer ``i + 1`` (as every layer list
    of the engines). Reading a layer that was not in ``layers=`` raises an error saying which
    layers were recorded, instead of returning ``None``."""

    def __init__(self, name: str, values: list, recorded: Sequence[int]) -> None:
        super().__init__(values)
        self.name, self.recorded = name, tuple(recorded)

    def __getitem__(self, i):
        out = super().__getitem__(i)
        if out is None:
            idx = ", ".join(str(k - 1) for k in self.recorded)
            raise KeyError(
                f"{self.name}[{i}] is layer {int(i) % len(self) + 1}, which was not recorded; recorded "
                f"layers (layers=): {list(self.recorded)}, i.e. {self.name}[{idx}]"
            )
        return out


@dataclass
class BrianResult:
    """What one simulation returns. Arrays are NumPy, time in units of tau_u.

    Layer-indexed lists have one entry per layer 1..L: ``res.v_apical[i]`` is paper layer
    ``i + 1`` whatever ``layers=`` was; reading a layer that was not recorded raises a KeyError
    naming the recorded ones.
    """

    t: np.ndarray  # (T_rec,) time within a sample
    layer_vars: dict[str, list[np.ndarray | None]] = field(default_factory=dict)
    controller_vars: dict[str, np.ndarray] = field(default_factory=dict)
    neurons: list[np.ndarray | None] = field(default_factory=list)  # recorded neuron indices
    r_L_ff: np.ndarray | None = None  # (N, n_L) feedforward output r_L^-
    r_L_end: np.ndarray | None = None  # (N, n_L) r_L[T-1]
    r_star: np.ndarray | None = None  # (N, n_L) output target
    u_end: np.ndarray | None = None  # (N, n_L) u[T-1]
    e_end: np.ndarray | None = None  # (N, n_L)
    u_int_end: np.ndarray | None = None  # (N, n_L) u_int[T-1]
    converged: np.ndarray | None = None  # (N,) bool, the spec's two criteria (shared test)
    convergence: ConvergenceResult | None = None  # the criteria's values per sample
    dW_dfc: list[np.ndarray] | None = None  # sample mean of the time-averaged update
    db_dfc: list[np.ndarray] | None = None
    dW_ss: list[np.ndarray] | None = None  # sample mean of the last-step (DFC-SS) update
    db_ss: list[np.ndarray] | None = None
    dQ: list[np.ndarray] | None = None  # sleep estimator (plasticity='accumulate')

    def __getattr__(self, name):
        d = self.__dict__
        if name in d.get("layer_vars", {}):
            return d["layer_vars"][name]
        if name in d.get("controller_vars", {}):
            return d["controller_vars"][name]
        raise AttributeError(f"{name!r} was not recorded; pass it in record=...")


@dataclass(frozen=True)
class _SimKey:
    phase: str
    plasticity: str
    n_samples: int
    record: tuple[str, ...]
    layers: tuple[int, ...]
    neurons: tuple[tuple[int, ...] | None, ...]
    record_every: int


class BrianDFC:
    """A DFC network in Brian2.

    Parameters
    ----------
    params : ModelParams
        Network, controller, sleep and convergence parameters (from a YAML config).
    weights : Weights
        Initial W_i, b_i, Q_i (validated against ``params.network``).
    target : str
        ``numpy`` (no compiler, unit tests), ``cython`` or ``cpp_standalone`` (fastest).
    tau_W, tau_Q : float
        Plasticity time constants of the online rules, in units of tau_u.
    beta : float
        Weight decay of the anti-Hebbian feedback rule.
    v_max : float
        Divergence bound: a run stops with :class:`DivergenceError` if |v_soma| exceeds it.
    seed : int, optional
        Seed of Brian2's random number generator (noise in the sleep phase).
    directory : str, optional
        Where cpp_standalone projects are written (default: a temporary folder).
    dtype : str
        ``float64`` (default, the authors' precision) or ``float32`` (Brian2's
        ``core.default_float_dtype``; less memory traffic per synapse).
    threads : int
        OpenMP threads of the cpp_standalone target (0: none, the default; Brian2's
        ``devices.cpp_standalone.openmp_threads``). Helps only large networks.
    """

    def __init__(
        self,
        params: ModelParams,
        weights: Weights,
        target: str = "numpy",
        *,
        tau_W: float = 100.0,
        tau_Q: float = 100.0,
        beta: float = 0.0,
        v_max: float = 1e6,
        seed: int | None = None,
        directory: str | None = None,
        dtype: str = "float64",
        threads: int = 0,
    ) -> None:
        if target not in TARGETS:
            raise ConfigError(f"target = {target!r} is unknown; choose one of {TARGETS}")
        if not isinstance(params, ModelParams):
            raise ConfigError("params must be a ModelParams (see ModelParams.from_dict)")
        for name, val in (("tau_W", tau_W), ("tau_Q", tau_Q), ("v_max", v_max)):
            if not np.isfinite(val) or val <= 0:
                raise ConfigError(f"{name} must be positive and finite, got {val!r}")
        if dtype not in ("float64", "float32"):
            raise ConfigError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
        self.dtype = dtype
        if int(threads) != threads or threads < 0:
            raise ConfigError(f"threads must be a non-negative integer, got {threads!r}")
        self.threads = int(threads)
        if not np.isfinite(beta) or beta < 0:
            raise ConfigError(f"beta must be non-negative, got {beta!r}")
        self.params = params
        self.weights = weights.copy().validate(params.network)
        self.target = target
        self.tau_W, self.tau_Q, self.beta, self.v_max = tau_W, tau_Q, beta, v_max
        self.seed = seed
        self.directory = directory
        self._standalone_sim: _Simulation | None = None
        self.n_builds = 0  # simulations built so far: the noise of build k is seeded seed + k

    @classmethod
    def from_config(
        cls,
        config: str | os.PathLike,
        weights: Weights | None = None,
        *,
        seed: int = 0,
        q_init: str = "random",
        **kwargs,
    ) -> BrianDFC:
        """Build from a YAML config (a path, or a name under ``models/`` such as ``toy/demo``).

        Without ``weights``, W is xavier-normal, b = 0 and Q is ``q_init`` (``random`` with
        Q_L = I, or ``weight_product``), drawn with ``seed``. Other keyword arguments go to
        :class:`BrianDFC` (``target``, ``tau_W``, ...); ``seed`` also seeds the sleep-phase noise.
        """
        from dfc_brian.config import load_model_params

        params = load_model_params(config)
        if weights is None:
            weights = init_weights(params.network, seed=seed, q_init=q_init)
        return cls(params, weights, seed=seed, **kwargs)

    # ------------------------------------------------------------------ public API
    def controlled_phase(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        plasticity: str = "accumulate",
        batch_size: int | None = None,
        record: Sequence[str] = (),
        layers: Sequence[int] | None = None,
        neurons: Sequence[Sequence[int] | None] | None = None,
        record_every: int = 1,
    ) -> BrianResult:
        """Present each row of ``X`` for T steps with the output target computed from ``y``.

        The target is :math:`r_L^* = r_L^- - \\lambda \\, \\partial L / \\partial r_L` with the
        batch-mean loss over ``batch_size`` samples (default: all rows of ``X``), computed by
        the controller population from the network's own feedforward output.

        ``plasticity``: ``accumulate`` (weights fixed; DFC and DFC-SS updates returned, sums
        over the samples divided by the number of samples; unless
        ``convergence.include_nonconverged``, the samples that fail the convergence test of
        :mod:`dfc_brian.engines.convergence` contribute zero: the simulation is re-run with
        their updates switched off), ``online`` (continuous plasticity of W and b, minibatch
        of 1: the weights change during the run and are read back by :meth:`get_weights`;
        every sample counts), or ``none``.
        ``record``: any of ``v_soma, v_basal, v_apical, r, I_basal, I_apical, r_basal`` for
        the ``layers`` (1-based, default all) and ``u, u_int, e, r_star`` of the controller.
        """
        X, y = self._check_inputs(X, y)
        B = len(X) if batch_size is None else batch_size
        if plasticity == "online":
            B = 1
        return self._simulate("controlled", plasticity, X, y, B, record, layers, neurons, record_every)

    def sleep_phase(
        self,
        X: np.ndarray,
        *,
        plastic: bool = True,
        noise: bool = True,
        plasticity: str | None = None,
        record: Sequence[str] = (),
        layers: Sequence[int] | None = None,
        neurons: Sequence[Sequence[int] | None] | None = None,
        record_every: int = 1,
    ) -> BrianResult:
        r"""Feedback-learning phase: the output target is the network's own output, white
        noise drives the apical compartments (std ``SleepParams.sigma_layers``: ``sigma`` in
        hidden layers, ``sigma_output_fb`` in the output layer) and Q learns by the
        anti-Hebbian rule, pairing :math:`v^A_i[t]` with :math:`u[t+1]` over the T-1 pairs of
        each sample (spec section 2).

        ``plasticity``: ``online`` (default if ``plastic``; Q changes continuously, read back
        with :meth:`get_weights`), ``accumulate`` (Q fixed; ``result.dQ`` is the estimator
        :math:`-\frac{1}{\tilde\sigma^2 N (T-1)}\sum_b\sum_{t=0}^{T-2} v^A_i[t] u[t+1]^T
        - \beta Q_i`) or ``none`` (default if not ``plastic``).
        """
        X, _ = self._check_inputs(X, None)
        phase = "sleep" if noise else "sleep_noiseless"
        plast = ("online" if plastic else "none") if plasticity is None else plasticity
        if plast not in PLASTICITY:
            raise ConfigError(f"plasticity = {plast!r} is unknown; choose one of {PLASTICITY}")
        return self._simulate(phase, plast, X, None, 1, record, layers, neurons, record_every)

    def get_weights(self) -> Weights:
        """Current weights as NumPy arrays: W[i] (n_post, n_pre), b[i], Q[i] (n_i, n_L)."""
        return self.weights.copy()

    def set_weights(self, weights: Weights) -> None:
        self.weights = weights.copy().validate(self.params.network)

    # ------------------------------------------------------------------ internals
    def _check_inputs(self, X, y):
        spec = self.params.network
        try:
            X = np.array(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError("X is not a numeric array") from None
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != spec.sizes[0]:
            raise ConfigError(f"X has shape {X.shape}, expected (n_samples, {spec.sizes[0]})")
        if len(X) == 0:
            raise ConfigError("X holds no samples")
        if not np.all(np.isfinite(X)):
            raise ConfigError("X contains non-finite values (NaN or inf)")
        if y is None:
            return X, None
        y = np.asarray(y)
        if spec.loss == "ce" and y.ndim == 1:
            if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= spec.n_out:
                raise ConfigError(f"y must hold integer class labels in [0, {spec.n_out})")
            y = np.eye(spec.n_out)[y]
        y = np.array(y, dtype=np.float64)
        if y.ndim == 1:
            y = y[None, :]
        if y.shape != (len(X), spec.n_out):
            raise ConfigError(f"y has shape {y.shape}, expected ({len(X)}, {spec.n_out})")
        if not np.all(np.isfinite(y)):
            raise ConfigError("y contains non-finite values (NaN or inf)")
        return X, y

    def _simulate(self, phase, plasticity, X, y, B, record, layers, neurons, record_every):
        L = self.params.network.n_layers
        record = tuple(record)
        for name in record:
            if name not in RECORDABLE + tuple(CONTROLLER_RECORDABLE):
                raise ConfigError(
                    f"cannot record {name!r}; choose from {RECORDABLE + tuple(CONTROLLER_RECORDABLE)}"
                )
        layers = tuple(range(1, L + 1)) if layers is None else tuple(int(i) for i in layers)
        for i in layers:
            if not 1 <= i <= L:
                raise ConfigError(f"layers: {i} is not a layer index in 1..{L}")
        if neurons is None:
            neurons = (None,) * len(layers)
        if len(neurons) != len(layers):
            raise ConfigError("neurons must give one index list (or None) per recorded layer")
        neurons = tuple(None if n is None else tuple(int(k) for k in n) for n in neurons)
        for i, n in zip(layers, neurons):
            if n is not None and (min(n) < 0 or max(n) >= self.params.network.sizes[i]):
                raise ConfigError(f"neurons of layer {i} must lie in 0..{self.params.network.sizes[i] - 1}")
        if record_every < 1:
            raise ConfigError("record_every must be >= 1")
        ctrl = self._phase_controller(phase)
        if ctrl.tmax % record_every:
            raise ConfigError(
                f"record_every = {record_every} must divide the number of steps T = {ctrl.tmax}"
            )
        if y is None:
            y = np.zeros((len(X), self.params.network.n_out))
        key = _SimKey(phase, plasticity, len(X), record, layers, neurons, record_every)
        if self.target == "cpp_standalone":
            sim = self._standalone_sim
            if sim is None or sim.key != key:
                sim = _Simulation(self, key, ctrl, B, X, y)
                self._standalone_sim = sim
            elif sim.B != B:
                raise ConfigError(
                    "a built standalone simulation cannot change batch_size; make a new BrianDFC"
                )
        else:
            sim = _Simulation(self, key, ctrl, B, X, y)
        res = sim.run(X, y)
        if phase == "controlled" and plasticity == "accumulate" and not self._include_all():
            self._drop_nonconverged(sim, key, ctrl, B, X, y, res)
        return res

    def _include_all(self) -> bool:
        return bool(self.params.convergence.include_nonconverged)

    def _drop_nonconverged(self, sim, key, ctrl, B, X, y, res: BrianResult) -> None:
        """Time-averaged DFC update without the samples that did not converge (as the batched
        engine: they contribute zero but still count in the mean). Samples evolve
        independently, so a re-run with their learning signal switched off (``keep`` = 0)
        gives exactly the sum over the converged ones."""
        keep = res.converged
        if keep.all():
            return
        if not keep.any():
            res.dW_dfc = [np.zeros_like(x) for x in res.dW_dfc]
            res.db_dfc = [np.zeros_like(x) for x in res.db_dfc]
            return
        keep = keep.astype(np.float64)
        if self.target == "cpp_standalone":  # re-run the built project with new run_args
            again = sim.run(X, y, keep=keep)
        else:  # a runtime network runs once: build it again, without monitors
            again = _Simulation(self, replace(key, record=()), ctrl, B, X, y, keep=keep).run(X, y)
        res.dW_dfc, res.db_dfc = again.dW_dfc, again.db_dfc

    def _phase_controller(self, phase: str) -> ControllerParams:
        if phase == "controlled":
            return self.params.controller
        return self.params.sleep.as_controller(self.params.controller)


class _Simulation:
    """One built Brian2 network for one configuration; re-runnable with new data."""

    def __init__(
        self,
        owner: BrianDFC,
        key: _SimKey,
        ctrl: ControllerParams,
        B: int,
        X: np.ndarray,
        y: np.ndarray,
        keep: np.ndarray | None = None,
    ) -> None:
        import brian2 as b2

        self.b2 = b2
        self.owner, self.key, self.ctrl, self.B = owner, key, ctrl, B
        p = owner.params
        spec = p.network
        L = spec.n_layers
        standalone = owner.target == "cpp_standalone"
        if b2.get_device().__class__.__name__ == "CPPStandaloneDevice":
            b2.device.reinit()  # one standalone project per process: forget the previous one
        if standalone:
            self.directory = owner.directory or tempfile.mkdtemp(prefix="dfc_brian_standalone_")
            b2.set_device("cpp_standalone", build_on_run=False, directory=self.directory)
            b2.prefs.devices.cpp_standalone.openmp_threads = owner.threads
        else:
            b2.set_device("runtime")
            b2.prefs.codegen.target = owner.target
        b2.start_scope()
        b2.prefs.core.default_float_dtype = np.float32 if owner.dtype == "float32" else np.float64
        if owner.seed is not None:
            # a new noise stream per simulation, reproducible from (seed, number of builds);
            # a standalone project re-run with run_args reuses the stream it was built with
            b2.seed(owner.seed + owner.n_builds)
        owner.n_builds += 1
        T = ctrl.tmax
        N = key.n_samples
        tau_u = ctrl.tau_u_ms * b2.ms
        self.clock_dt = ctrl.dt * tau_u
        sample_dt = T * self.clock_dt
        phase = key.phase
        sigmas = p.sleep.sigma_layers(L)  # apical noise std per layer (sleep phase)
        filtered_apical = phase != "controlled"
        apical_target = "I_apical" if filtered_apical else "v_apical"
        tau_A = ctrl.dt * tau_u if phase == "controlled" else p.sleep.tau_A * tau_u
        self.N, self.T = N, T
        self.X = X

        ns = {
            "tau_u": tau_u,
            "tau_v": ctrl.tcr * tau_u,
            "tau_A": tau_A,
            "sigma": p.sleep.sigma,
            "alpha": ctrl.alpha,
            "k_p": ctrl.k_p,
            "K_I": ctrl.K_I,
            "T_steps": float(T),
            "tau_W": owner.tau_W * tau_u,
            "tau_Q": owner.tau_Q * tau_u,
            "beta": owner.beta,
            "sigma_tilde": p.sleep.sigma_tilde,
            "v_max": owner.v_max,
            "n_out": float(spec.n_out),
            "target_scale": ctrl.target_stepsize / B if phase == "controlled" else 0.0,
        }
        # TimedArrays are read only at the first step of a sample, where t is a multiple of
        # sample_dt up to round-off (Brian2 rounds t/dt to the nearest index, safe here); its
        # "time grids not aligned" warning about a ratio like 49.999999999 is harmless.
        b2.BrianLogger.suppress_name("brian2.input.timedarray")
        # one row per sample, plus one for the extra final step that ends the last sample
        self.x_input = b2.TimedArray(_pad(X), dt=sample_dt, name="x_input")
        self.y_input = b2.TimedArray(_pad(y), dt=sample_dt, name="y_input")
        # 1 where a sample's DFC update counts (re-run with zeros: non-converged samples dropped)
        self.keep = np.ones(N) if keep is None else np.asarray(keep, dtype=np.float64)
        self.keep_input = b2.TimedArray(_pad(self.keep), dt=sample_dt, name="keep_input")
        ns["x_input"], ns["y_input"], ns["keep_input"] = self.x_input, self.y_input, self.keep_input
        self.namespace = ns

        # two clocks: the Euler step, and the start of each sample (every T steps)
        step_clock = b2.Clock(dt=self.clock_dt, name="step_clock")
        sample_clock = b2.Clock(dt=sample_dt, name="sample_clock")
        u_var = "u" if ctrl.proactive else "u_prev"
        fwd_plast = key.plasticity if phase == "controlled" else "none"
        fb_plast = "none" if phase == "controlled" else key.plasticity
        objs = []
        # Input population r_0 = x
        inp = b2.NeuronGroup(
            spec.sizes[0],
            eq.INPUT_EQUATIONS,
            method="euler",
            name="input",
            order=eq.SCHEDULE["sample_start_input"],
            clock=step_clock,
            namespace=ns,
        )
        inp.run_regularly(
            eq.INPUT_SAMPLE_START_CODE,
            clock=sample_clock,
            when="groups",
            order=eq.SCHEDULE["sample_start_input"],
            name="input_sample_start",
        )
        objs.append(inp)
        # Layers of multi-compartment neurons
        self.layers, self.fwd, self.fb = [], [], []
        pre = inp
        pre_rate = "r" if ctrl.instantaneous else "r_prev"
        for i in range(1, L + 1):
            act = spec.activations[i - 1]
            noise = phase == "sleep" and sigmas[i - 1] > 0
            G = b2.NeuronGroup(
                spec.sizes[i],
                eq.layer_equations(filtered_apical, noise),
                method="euler",
                name=f"layer{i}",
                order=eq.layer_order(i, "apical"),
                clock=step_clock,
                namespace={**ns, "sigma": sigmas[i - 1]},
            )
            G.t_diverged = -1
            G.run_regularly(
                eq.soma_code(act),
                when="groups",
                order=eq.layer_order(i, "soma"),
                name=f"layer{i}_soma",
            )
            start_code = eq.layer_sample_start_code(act)
            if fwd_plast == "accumulate":
                start_code += "\n" + eq.KEEP_SAMPLE_START_CODE
            G.run_regularly(
                start_code,
                clock=sample_clock,
                when="groups",
                order=eq.layer_order(i, "sample_start_layer"),
                name=f"layer{i}_sample_start",
            )
            if not ctrl.instantaneous:
                G.run_regularly(
                    eq.KEEP_RATE_CODE,
                    when="groups",
                    order=eq.SCHEDULE["keep_rates"],
                    name=f"layer{i}_keep_rate",
                )
            self.layers.append(G)
            objs.append(G)
            pre = G
        out = self.layers[-1]
        # PI controller population
        C = b2.NeuronGroup(
            spec.n_out,
            eq.controller_equations(ctrl.form),
            method="euler",
            name="controller",
            order=eq.SCHEDULE["controller_integrate"],
            clock=step_clock,
            namespace=ns,
        )
        C.r_L = b2.linked_var(out, "r")
        if fb_plast != "none":
            C.step_in_sample = T  # the run's first step forms no pair
            C.run_regularly(
                eq.CONTROLLER_COUNT_CODE,
                when="groups",
                order=eq.SCHEDULE["controller_count"],
                name="controller_count",
            )
        if not ctrl.proactive:
            C.run_regularly(
                eq.CONTROLLER_KEEP_CODE,
                when="groups",
                order=eq.SCHEDULE["controller_keep_u"],
                name="controller_keep_u",
            )
        C.run_regularly(
            eq.controller_output_code(ctrl.form),
            when="groups",
            order=eq.SCHEDULE["controller_output"],
            name="controller_output",
        )
        # new sample: the target from the network's own feedforward output (after the
        # output layer's feedforward reset), and u = u_int = 0
        target_order = eq.layer_order(L, "sample_start_controller")
        if spec.loss == "ce":
            S_exp = b2.Synapses(C, C, eq.SOFTMAX_SUM, name="softmax_sum", clock=step_clock, namespace=ns)
            S_exp.connect()
            S_exp.summed_updaters["sum_exp_post"].order = eq.layer_order(L, "softmax_sum")
            objs.append(S_exp)
        target_code = eq.TARGET_CODE[spec.loss]
        C.run_regularly(
            target_code + "\n" + eq.CONTROLLER_SAMPLE_START_CODE,
            clock=sample_clock,
            when="groups",
            order=target_order,
            name="controller_sample_start",
        )
        objs.append(C)
        # Synapses
        pre = inp
        plast_order = eq.plasticity_order(L)
        for i in range(1, L + 1):
            G = self.layers[i - 1]
            n_post, n_pre = spec.sizes[i], spec.sizes[i - 1]
            sm = eq.forward_synapse_model(pre_rate, fwd_plast)
            S = b2.Synapses(
                pre,
                G,
                sm.model,
                method="euler",
                name=f"W{i}",
                order=plast_order,
                clock=step_clock,
                namespace=ns,
            )
            S.connect(i=_pre_index(n_pre, n_post), j=_post_index(n_pre, n_post))
            S.summed_updaters["I_basal_post"].order = eq.layer_order(i, "summed_inputs")
            if sm.on_step:
                S.run_regularly(sm.on_step, when="groups", order=plast_order, name=f"W{i}_accumulate")
            if fwd_plast in eq.LEARNING_SIGNAL_CODE:
                G.run_regularly(
                    eq.LEARNING_SIGNAL_CODE[fwd_plast],
                    when="groups",
                    order=eq.plasticity_order(L, "learning_signal"),
                    name=f"layer{i}_learning_signal",
                )
            fm = eq.feedback_synapse_model(u_var, fb_plast, target=apical_target)
            F = b2.Synapses(
                C,
                G,
                fm.model,
                method="euler",
                name=f"Q{i}",
                order=plast_order,
                clock=step_clock,
                namespace=ns,
            )
            F.connect(i=_pre_index(spec.n_out, n_post), j=_post_index(spec.n_out, n_post))
            F.summed_updaters[f"{apical_target}_post"].order = eq.layer_order(i, "summed_inputs")
            if fm.on_step:
                F.run_regularly(
                    fm.on_step,
                    when="groups",
                    order=eq.layer_order(i, "feedback_plasticity"),
                    name=f"Q{i}_plasticity",
                )
            self.fwd.append(S)
            self.fb.append(F)
            objs += [S, F]
            pre = G
        # Monitors
        rec_layer = [v for v in key.record if v in RECORDABLE]
        rec_ctrl = [v for v in key.record if v in CONTROLLER_RECORDABLE]
        rec_dt = key.record_every * self.clock_dt
        self.layer_mons = {}
        if rec_layer:
            for li, nrn in zip(key.layers, key.neurons):
                G = self.layers[li - 1]
                m = b2.StateMonitor(
                    G,
                    rec_layer,
                    record=True if nrn is None else list(nrn),
                    dt=rec_dt,
                    when="end",
                    name=f"monitor_layer{li}",
                )
                self.layer_mons[li] = m
                objs.append(m)
        self.ctrl_mon = None
        if rec_ctrl:
            self.ctrl_mon = b2.StateMonitor(
                C,
                [CONTROLLER_RECORDABLE[v] for v in rec_ctrl],
                record=True,
                dt=rec_dt,
                when="end",
                name="monitor_controller",
            )
            objs.append(self.ctrl_mon)
        # state at the first step (feedforward) and at the last step of each sample
        self.start_mon = b2.StateMonitor(
            C, ["r_L", "error"], record=True, clock=sample_clock, when="end", name="monitor_sample_start"
        )
        self.end_mon = b2.StateMonitor(
            C,
            ["r_L", "error", "u", "u_int", "r_star"],
            record=True,
            clock=sample_clock,
            when="groups",
            order=0,
            name="monitor_sample_end",
        )
        objs += [self.start_mon, self.end_mon]
        # every layer's state at the last step of each sample: the DFC-SS update
        self.end_layer_mons = []
        if fwd_plast == "accumulate":
            for i, G in enumerate(self.layers, start=1):
                m = b2.StateMonitor(
                    G,
                    ["v_soma", "v_basal", "r"],
                    record=True,
                    clock=sample_clock,
                    when="groups",
                    order=0,
                    name=f"monitor_layer{i}_sample_end",
                )
                self.end_layer_mons.append(m)
            objs += self.end_layer_mons
        self.controller = C
        self.input = inp
        self.net = b2.Network(objs)
        # one extra step: it ends the last sample (its end-of-sample monitors fire)
        self.duration = (N * T + 1) * self.clock_dt
        self.built = False

    # -------------------------------------------------------------- running
    def _write_weights(self, w: Weights) -> dict:
        args = {}
        for i, (S, F, G) in enumerate(zip(self.fwd, self.fb, self.layers)):
            vals = {S.w: _to_synapses(w.W[i]), F.Q: _to_synapses(w.Q[i]), G.b: w.b[i]}
            if "dW_acc" in S.variables:
                vals.update({S.dW_acc: np.zeros(w.W[i].size), G.db_acc: np.zeros(len(w.b[i]))})
            if "dQ_acc" in F.variables:
                vals[F.dQ_acc] = np.zeros(w.Q[i].size)
            args.update(vals)
        return args

    def run(self, X: np.ndarray, y: np.ndarray, keep: np.ndarray | None = None) -> BrianResult:
        """Run with these inputs and targets; ``keep`` (N,): 1 where a sample's DFC update counts."""
        b2 = self.b2
        owner = self.owner
        weight_args = self._write_weights(owner.weights)
        keep = self.keep if keep is None else np.asarray(keep, dtype=np.float64)
        self.X = X  # the input of this run (layer 1's presynaptic rate in the DFC-SS update)
        if owner.target == "cpp_standalone":
            if not self.built:
                for var, val in weight_args.items():
                    var[:] = val
                self.net.run(self.duration, namespace=self.namespace)
                b2.device.build(directory=self.directory, compile=False, run=False)
                _drop_per_step_cpu_clock(self.directory)
                from brian2.codegen.cpp_prefs import get_compiler_and_args

                b2.device.compile_source(self.directory, get_compiler_and_args()[0], debug=False, clean=False)
                self.built = True
            run_args = {self.x_input: _pad(X), self.y_input: _pad(y), self.keep_input: _pad(keep)}
            run_args.update(weight_args)
            b2.device.run(run_args=run_args)
        else:
            if self.built:
                raise RuntimeError("a runtime simulation runs once; BrianDFC builds a new one per call")
            if not np.array_equal(keep, self.keep):
                raise RuntimeError("a runtime simulation takes `keep` when it is built")
            for var, val in weight_args.items():
                var[:] = val
            self.net.run(self.duration, namespace=self.namespace)
            self.built = True
        return self._collect()

    def _collect(self) -> BrianResult:
        owner, key, N, T = self.owner, self.key, self.N, self.T
        spec = owner.params.network
        L = spec.n_layers
        for i, G in enumerate(self.layers, start=1):
            td = np.asarray(G.t_diverged[:])
            if np.any(td >= 0):
                t_first = float(td[td >= 0].min())
                k = int(round(t_first / self.ctrl.dt))
                raise DivergenceError(
                    i - 1,
                    k % T,
                    key.phase,
                    f"Brian2 engine, sample {k // T}, t = {t_first:.6g} tau_u, |v_soma| > {owner.v_max:g} "
                    "or NaN; reduce the step size, the gains or the learning rate",
                )
        n_rec = T // key.record_every
        t = np.arange(n_rec) * key.record_every * self.ctrl.dt
        res = BrianResult(t=t)
        rec_layer = [v for v in key.record if v in RECORDABLE]
        for v in rec_layer:
            res.layer_vars[v] = LayerRecord(v, [None] * L, sorted(self.layer_mons))
        for li, m in self.layer_mons.items():
            for v in rec_layer:
                a = np.asarray(getattr(m, v))[:, : N * n_rec]  # (n_rec_neurons, N*n_rec)
                list.__setitem__(res.layer_vars[v], li - 1, a.T.reshape(N, n_rec, -1))
        res.neurons = [None] * L
        for li, nrn in zip(key.layers, key.neurons):
            res.neurons[li - 1] = np.arange(spec.sizes[li]) if nrn is None else np.array(nrn)
        if self.ctrl_mon is not None:
            for v in key.record:
                if v in CONTROLLER_RECORDABLE:
                    a = np.asarray(getattr(self.ctrl_mon, CONTROLLER_RECORDABLE[v]))[:, : N * n_rec]
                    res.controller_vars[v] = a.T.reshape(N, n_rec, -1)
        start = {v: np.asarray(getattr(self.start_mon, v)).T[:N] for v in ("r_L", "error")}
        end_vars = ("r_L", "error", "u", "u_int", "r_star")
        end = {v: np.asarray(getattr(self.end_mon, v)).T[1 : N + 1] for v in end_vars}
        res.r_L_ff, res.r_L_end, res.u_end, res.e_end = start["r_L"], end["r_L"], end["u"], end["error"]
        res.r_star, res.u_int_end = end["r_star"], end["u_int"]
        conv = owner.params.convergence
        res.convergence = convergence_test(
            res.r_L_end,
            res.r_star,
            res.u_end,
            res.u_int_end,
            res.e_end,
            start["error"],
            res.r_L_ff,
            self.ctrl,
            conv,
        )
        res.converged = res.convergence.converged
        if key.phase == "controlled" and key.plasticity == "accumulate":
            res.dW_dfc, res.db_dfc = [], []
            for i, (S, G) in enumerate(zip(self.fwd, self.layers)):
                shape = (spec.sizes[i + 1], spec.sizes[i])
                res.dW_dfc.append(_from_synapses(S.dW_acc[:], shape) / N)
                res.db_dfc.append(np.asarray(G.db_acc[:]) / N)
            mask = np.ones(N, bool) if conv.include_nonconverged else res.converged
            res.dW_ss, res.db_ss = self._steady_state_update(mask)
        if key.plasticity == "accumulate" and key.phase != "controlled":
            s2, Tm1 = owner.params.sleep.sigma_tilde**2, T - 1
            res.dQ = []
            for i, F in enumerate(self.fb):
                S_Q = _from_synapses(F.dQ_acc[:], owner.weights.Q[i].shape)
                res.dQ.append(-S_Q / (s2 * N * Tm1) - owner.beta * owner.weights.Q[i])
        # read back the (possibly learned) weights
        if key.plasticity == "online":
            w = owner.weights
            for i, (S, F, G) in enumerate(zip(self.fwd, self.fb, self.layers)):
                w.W[i] = _from_synapses(S.w[:], w.W[i].shape)
                w.Q[i] = _from_synapses(F.Q[:], w.Q[i].shape)
                w.b[i] = np.asarray(G.b[:]).copy()
            for name, arrs in (("W", w.W), ("Q", w.Q), ("b", w.b)):
                for i, a in enumerate(arrs):
                    if not np.all(np.isfinite(a)):
                        raise DivergenceError(i, N * T - 1, key.phase, f"{name}[{i}] became non-finite")
        return res

    def _steady_state_update(self, mask: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        r"""DFC-SS from the state at the last step of each sample (spec section 2): the basal
        input is rebuilt from the presynaptic rate at T-1,
        :math:`\phi(v^{B\prime} + \Delta v) - \phi(v^{B\prime})` with
        :math:`v^{B\prime} = W_i r_{i-1}[T-1] + b_i` and :math:`\Delta v = v[T-1] - v^B[T-1]`
        (equal to :math:`\phi(v) - \phi(v^B)` with instantaneous transmission). Samples where
        ``mask`` is False contribute zero; the sum is divided by the number of samples."""
        N = self.N
        spec = self.owner.params.network
        w = self.owner.weights
        m = mask.astype(np.float64)[:, None]
        pre = self.X
        dW, db = [], []
        for i, mon in enumerate(self.end_layer_mons):
            v, vB, r = (np.asarray(getattr(mon, k)).T[1 : N + 1] for k in ("v_soma", "v_basal", "r"))
            vB_re = pre @ w.W[i].T + w.b[i]
            act = spec.activations[i]
            d = (phi(act, vB_re + (v - vB)) - phi(act, vB_re)) * m
            dW.append(d.T @ pre / N)
            db.append(d.sum(axis=0) / N)
            pre = r
        return dW, db

    def scheduling_summary(self):
        """Brian2's schedule of this network (check the `order` of every code runner)."""
        return self.net.scheduling_summary()


# Brian2's standalone main loop reads the process CPU clock (std::clock) after every time
# step, only to report the run time; here that system call costs ~0.5 us, a third of a whole
# step of a small network. Read it once after the loop instead (no report, no time limit is
# used by this engine). Left untouched if the generated code differs from what is expected.
_PER_STEP_CLOCK = """        current = std::clock();
        elapsed_realtime = (double)(current - start)/(1 * CLOCKS_PER_SEC);
"""
_AFTER_LOOP = "    Network::_globally_running = false;\n"


def _drop_per_step_cpu_clock(directory: str) -> bool:
    path = os.path.join(directory, "network.cpp")
    with open(path) as fh:
        src = fh.read()
    if src.count(_PER_STEP_CLOCK) != 1 or src.count(_AFTER_LOOP) != 1:
        return False
    src = src.replace(_PER_STEP_CLOCK, "").replace(_AFTER_LOOP, _PER_STEP_CLOCK + _AFTER_LOOP)
    with open(path, "w") as fh:
        fh.write(src)
    return True


# Synapse order: pre-major (all synapses of presynaptic neuron 0, then of neuron 1, ...).
# The summed-variable loop adds into I[post] for consecutive synapses; with pre-major order
# consecutive synapses target different neurons, so the additions do not wait on each other
# (post-major order chains every addition through one memory location and is much slower).
# The sum over presynaptic neurons of each neuron still runs in increasing pre order.
def _pre_index(n_pre: int, n_post: int) -> np.ndarray:
    return np.repeat(np.arange(n_pre), n_post)


def _post_index(n_pre: int, n_post: int) -> np.ndarray:
    return np.tile(np.arange(n_post), n_pre)


def _to_synapses(M: np.ndarray) -> np.ndarray:
    """(n_post, n_pre) matrix -> synapse values in pre-major order."""
    return np.ascontiguousarray(M.T).ravel()


def _from_synapses(values, shape: tuple[int, int]) -> np.ndarray:
    """Synapse values in pre-major order -> (n_post, n_pre) matrix (a copy)."""
    return np.asarray(values).reshape(shape[1], shape[0]).T.copy()


def _pad(a: np.ndarray) -> np.ndarray:
    """Repeat the last row: the extra final step of a run reads one row past the samples."""
    return np.concatenate([a, a[-1:]])


__all__ = ["BrianDFC", "BrianResult", "DivergenceError", "TARGETS"]
