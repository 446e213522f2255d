"""The DFC network in Brian2: NeuronGroups, Synapses and the PI controller, code-generated.

Create → connect → simulate → read back::

    net = BrianDFC(params, weights, target="numpy")            # or "cython", "cpp_standalone"
    res = net.controlled_phase(X, y, record=("v_soma", "v_apical"), layers=[0, 2])
    res.v_soma[0]       # (n_samples, T, n_1) somatic voltages of (paper) layer 1 over time
    res.u               # (n_samples, T, n_L) control signal
    res.dW_dfc          # time-averaged DFC update of every layer (sample mean)
    net.sleep_phase(X)  # noisy apical compartments, anti-Hebbian Q plasticity
    net.get_weights()   # back to NumPy arrays (n_post, n_pre)

Samples are presented one after another, each for T time steps, through TimedArrays; a
new sample starts with a feedforward pass done by `run_regularly` operations (no Python in
the loop, no `run()` per sample). The equations and the parameter namespace come from
:mod:`dfc_brian.model.equations`, the Brian2 objects and the schedule from
:mod:`dfc_brian.network`; the result is the :class:`~dfc_brian.engines.result.PhaseResult` of
both engines (layer lists 0-based: entry ``i`` is paper layer ``i + 1``).

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
from dataclasses import dataclass, replace

import numpy as np

from dfc_brian.engines.convergence import convergence_test
from dfc_brian.engines.errors import DivergenceError
from dfc_brian.engines.result import LayerRecord, PhaseResult
from dfc_brian.model import equations as eq
from dfc_brian.model.mlp import phi
from dfc_brian.model.params import ConfigError, ControllerParams, ModelParams
from dfc_brian.model.weights import Weights, init_weights
from dfc_brian.network import build as net

TARGETS = ("numpy", "cython", "cpp_standalone")
RECORDABLE = net.LAYER_RECORDABLE
CONTROLLER_RECORDABLE = net.CONTROLLER_RECORDABLE
PLASTICITY = eq.PLASTICITY


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
        tau_W: float = eq.TAU_W,
        tau_Q: float = eq.TAU_Q,
        beta: float = eq.BETA,
        v_max: float = eq.V_MAX,
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
    ) -> PhaseResult:
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
        the ``layers`` (0-based: ``i`` is paper layer ``i + 1``; default all) and
        ``u, u_int, e, r_star`` of the controller.
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
    ) -> PhaseResult:
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
        layers = tuple(range(L)) if layers is None else tuple(int(i) for i in layers)
        for i in layers:
            if not 0 <= i < L:
                raise ConfigError(
                    f"layers: {i} is not a layer index in 0..{L - 1} (0-based: i is paper layer i+1)"
                )
        if neurons is None:
            neurons = (None,) * len(layers)
        if len(neurons) != len(layers):
            raise ConfigError("neurons must give one index list (or None) per recorded layer")
        neurons = tuple(None if n is None else tuple(int(k) for k in n) for n in neurons)
        for i, n in zip(layers, neurons):
            n_i = self.params.network.sizes[i + 1]
            if n is not None and (min(n) < 0 or max(n) >= n_i):
                raise ConfigError(f"neurons of layers[{i}] must lie in 0..{n_i - 1}")
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

    def _drop_nonconverged(self, sim, key, ctrl, B, X, y, res: PhaseResult) -> None:
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
    """One built Brian2 network for one configuration; re-runnable with new data.

    Create (groups) → connect (synapses) → simulate (:meth:`run`) → store (:meth:`_collect`),
    every Brian2 object from :mod:`dfc_brian.network`.
    """

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
        self.N, self.T = key.n_samples, ctrl.tmax
        self.X = X  # the input of this run (layer 1's presynaptic rate in the DFC-SS update)
        self._device(owner)
        self.clocks = net.make_clocks(ctrl)
        self.clock_dt = self.clocks.step.dt
        self.keep = np.ones(self.N) if keep is None else np.asarray(keep, dtype=np.float64)
        ns = eq.namespace(
            owner.params,
            key.phase,
            plasticity=key.plasticity,
            batch_size=B,
            tau_W=owner.tau_W,
            tau_Q=owner.tau_Q,
            beta=owner.beta,
            v_max=owner.v_max,
        )
        inputs = net.data_inputs(X, y, self.clocks, self.keep)
        self.x_input, self.y_input, self.keep_input = (
            inputs[k] for k in ("x_input", "y_input", "keep_input")
        )
        ns.update(inputs)
        self.namespace = ns
        objs = self._create(ns) + self._connect(ns)
        self.monitors = net.add_monitors(
            self.layers, self.controller, self.clocks, key.record, key.layers, key.neurons, key.record_every
        )
        self.net = b2.Network(objs + self.monitors["all"])
        # one extra step: it ends the last sample (its end-of-sample monitors fire)
        self.duration = (self.N * self.T + 1) * self.clock_dt
        self.built = False

    def _device(self, owner: BrianDFC) -> None:
        b2 = self.b2
        if b2.get_device().__class__.__name__ == "CPPStandaloneDevice":
            b2.device.reinit()  # one standalone project per process: forget the previous one
        if owner.target == "cpp_standalone":
            self.directory = owner.directory or tempfile.mkdtemp(prefix="dfc_brian_standalone_")
            b2.set_device("cpp_standalone", build_on_run=False, directory=self.directory)
            b2.prefs.devices.cpp_standalone.openmp_threads = owner.threads
            net.limit_make_jobs(b2)
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

    def _create(self, ns: dict) -> list:
        spec, phase = self.owner.params.network, self.key.phase
        learning = phase == "controlled" and self.key.plasticity != "none"
        self.input = net.make_input(spec.sizes[0], ns, self.clocks)
        self.layers = [
            net.make_layer(i, spec, phase, ns, self.clocks, learning=learning) for i in range(spec.n_layers)
        ]
        self.controller = net.make_controller(spec, self.layers[-1], ns, self.clocks)
        return [self.input, *self.layers, self.controller]

    def _connect(self, ns: dict) -> list:
        spec, key = self.owner.params.network, self.key
        L = spec.n_layers
        fwd = key.plasticity if key.phase == "controlled" else "none"
        fb = "none" if key.phase == "controlled" else key.plasticity
        pres = [self.input, *self.layers[:-1]]
        self.fwd = [
            net.connect_forward(i, pres[i], G, ns, self.clocks, L, plasticity=fwd)
            for i, G in enumerate(self.layers)
        ]
        self.fb = [
            net.connect_feedback(i, self.controller, G, ns, self.clocks, plasticity=fb)
            for i, G in enumerate(self.layers)
        ]
        objs = self.fwd + self.fb
        if spec.loss == "ce":
            objs.append(net.connect_softmax(self.controller, L, ns, self.clocks))
        return objs

    # -------------------------------------------------------------- simulate
    def _write_weights(self, w: Weights) -> dict:
        args = {}
        for i, (S, F, G) in enumerate(zip(self.fwd, self.fb, self.layers)):
            args.update({S.w: net.to_synapses(w.W[i]), F.Q: net.to_synapses(w.Q[i]), G.b: w.b[i]})
            args.update({S.dW_acc: np.zeros(w.W[i].size), G.db_acc: np.zeros(len(w.b[i]))})
            args[F.dQ_acc] = np.zeros(w.Q[i].size)
        return args

    def run(self, X: np.ndarray, y: np.ndarray, keep: np.ndarray | None = None) -> PhaseResult:
        """Run with these inputs and targets; ``keep`` (N,): 1 where a sample's DFC update counts."""
        b2 = self.b2
        owner = self.owner
        weight_args = self._write_weights(owner.weights)
        keep = self.keep if keep is None else np.asarray(keep, dtype=np.float64)
        self.X = X
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
            run_args = {self.x_input: net.pad(X), self.y_input: net.pad(y), self.keep_input: net.pad(keep)}
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

    # -------------------------------------------------------------- store
    def _check_divergence(self) -> None:
        for i, G in enumerate(self.layers):
            td = np.asarray(G.t_diverged[:])
            if np.any(td >= 0):
                t_first = float(td[td >= 0].min())
                k = int(round(t_first / self.ctrl.dt))
                raise DivergenceError(
                    i,
                    k % self.T,
                    self.key.phase,
                    f"Brian2 engine, sample {k // self.T}, t = {t_first:.6g} tau_u, |v_soma| > "
                    f"{self.owner.v_max:g} or NaN; reduce the step size, the gains or the learning rate",
                )

    def _recordings(self) -> dict:
        """Recorded trajectories: per-layer LayerRecords and controller arrays (N, T_rec, n)."""
        key, N, L = self.key, self.N, self.owner.params.network.n_layers
        n_rec = self.T // key.record_every
        out: dict = {}
        recorded = sorted(self.monitors["layers"])
        for v in (v for v in key.record if v in net.LAYER_RECORDABLE):
            vals = [None] * L
            for i, m in self.monitors["layers"].items():
                a = np.asarray(getattr(m, v))[:, : N * n_rec]  # (n_rec_neurons, N*n_rec)
                vals[i] = a.T.reshape(N, n_rec, -1)
            out[v] = LayerRecord(v, vals, recorded)
        m = self.monitors["controller"]
        for v in (v for v in key.record if v in net.CONTROLLER_RECORDABLE):
            a = np.asarray(getattr(m, net.CONTROLLER_RECORDABLE[v]))[:, : N * n_rec]
            out[v] = a.T.reshape(N, n_rec, -1)
        return out

    def _collect(self) -> PhaseResult:
        owner, key, N, T = self.owner, self.key, self.N, self.T
        spec = owner.params.network
        self._check_divergence()
        mons = self.monitors
        start = {v: np.asarray(getattr(mons["sample_start"], v)).T[:N] for v in ("r_L", "error")}
        end = {
            v: np.asarray(getattr(mons["sample_end"], v)).T[1 : N + 1]
            for v in ("r_L", "error", "u", "u_int", "r_star")
        }
        self.end_layers = [
            {k: np.asarray(getattr(m, k)).T[1 : N + 1] for k in ("v_soma", "v_basal", "r")}
            for m in mons["layers_sample_end"]
        ]
        conv = owner.params.convergence
        ct = convergence_test(
            end["r_L"], end["r_star"], end["u"], end["u_int"], end["error"], start["error"], start["r_L"],
            self.ctrl, conv,
        )  # fmt: skip
        rec = self._recordings()
        n_rec = T // key.record_every
        neurons: list = [None] * spec.n_layers
        for i, nrn in zip(key.layers, key.neurons):
            neurons[i] = np.arange(spec.sizes[i + 1]) if nrn is None else np.array(nrn)
        res = PhaseResult(
            r_star=end["r_star"],
            r_L_ff=start["r_L"],
            converged=ct.converged,
            n_nonconverged=int(N - ct.converged.sum()),
            u_last=end["u"],
            e_last=end["error"],
            u_int_last=end["u_int"],
            r_last=[d["r"] for d in self.end_layers],
            convergence=ct,
            t=np.arange(n_rec) * key.record_every * self.ctrl.dt,
            neurons=neurons,
            **rec,
        )
        res.extra.update(rel_residual=ct.rel_residual, e_last_norm=ct.e_last_norm, e0_norm=ct.e0_norm)
        if key.phase == "controlled" and key.plasticity == "accumulate":
            res.dW_dfc = [
                net.from_synapses(S.dW_acc[:], (spec.sizes[i + 1], spec.sizes[i])) / N
                for i, S in enumerate(self.fwd)
            ]
            res.db_dfc = [np.asarray(G.db_acc[:]) / N for G in self.layers]
            mask = np.ones(N, bool) if conv.include_nonconverged else res.converged
            res.dW_ss, res.db_ss = self._steady_state_update(mask)
        if key.plasticity == "accumulate" and key.phase != "controlled":
            s2, Tm1 = owner.params.sleep.sigma_tilde**2, T - 1
            res.dQ = [
                -net.from_synapses(F.dQ_acc[:], owner.weights.Q[i].shape) / (s2 * N * Tm1)
                - owner.beta * owner.weights.Q[i]
                for i, F in enumerate(self.fb)
            ]
        if key.plasticity == "online":
            self._read_back_weights()
        return res

    def _read_back_weights(self) -> None:
        """The learned weights into ``owner.weights``; non-finite ones raise DivergenceError."""
        w = self.owner.weights
        for i, (S, F, G) in enumerate(zip(self.fwd, self.fb, self.layers)):
            w.W[i] = net.from_synapses(S.w[:], w.W[i].shape)
            w.Q[i] = net.from_synapses(F.Q[:], w.Q[i].shape)
            w.b[i] = np.asarray(G.b[:]).copy()
        for name, arrs in (("W", w.W), ("Q", w.Q), ("b", w.b)):
            for i, a in enumerate(arrs):
                if not np.all(np.isfinite(a)):
                    raise DivergenceError(
                        i, self.N * self.T - 1, self.key.phase, f"{name}[{i}] became non-finite"
                    )

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
        for i, d_end in enumerate(self.end_layers):
            v, vB, r = d_end["v_soma"], d_end["v_basal"], d_end["r"]
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


__all__ = ["BrianDFC", "DivergenceError", "LayerRecord", "PhaseResult", "TARGETS"]
