"""The spiking DFC network in Brian2: create -> connect -> run -> store.

:class:`SpikingDFC` builds ordinary Brian2 objects from :class:`SpikingParams` and the weights
(``dfc_brian.model.weights.Weights``: W, b, Q in the rate model's conventions) and runs a stream
of samples in one ``run`` call: the inputs, targets and the per-sample learn/control flags are
TimedArrays, so the same code runs on the runtime targets (numpy, cython) and on cpp_standalone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from dfc_brian.model.params import ConfigError
from dfc_brian.model.weights import Weights
from dfc_brian.network.build import limit_make_jobs
from dfc_brian.spiking import equations as eq
from dfc_brian.spiking.params import SpikingParams, namespace

TARGETS = ("numpy", "cython", "cpp_standalone")


def _all_to_all(n_pre: int, n_post: int) -> tuple[np.ndarray, np.ndarray]:
    """Synapse k connects pre k // n_post to post k % n_post, so that w = W.T.ravel()."""
    return np.repeat(np.arange(n_pre), n_post), np.tile(np.arange(n_post), n_pre)


class SpikingDFC:
    """Spiking DFC network of ``params.sizes`` with weights ``weights``.

    Parameters
    ----------
    params : SpikingParams
    weights : Weights
        Initial W_i (n_i, n_{i-1}), b_i, Q_i (n_i, n_L).
    target : str
        Brian2 code generation target: ``numpy``, ``cython`` or ``cpp_standalone``.
    record_neurons : int
        Record v_basal, v_apical, v_soma of the first ``record_neurons`` neurons of every layer,
        the controller (u, r_L, r_star) and the spikes of every layer (0: output spikes only).
    record_weights_every : int
        Record W_i and b_i every this many samples (0: only the final weights).
    record_dt : float
        Sampling step (ms) of the compartment monitors.
    sleep : bool
        Build the sleep phase (feedback learning): apical background noise and the anti-Hebbian Q
        rule (:data:`dfc_brian.spiking.equations.FEEDBACK_SLEEP`), active in the samples that
        :meth:`run` flags as sleep (``asleep``; by default every sample of a sleep network): there
        forward plasticity is off and the controller's target is r* = r^- with the sleep gains.
        Wake samples of the same network learn W as a network without sleep (Q fixed), so sleep
        and wake can alternate in one run. ``record_weights_every`` also records Q.
    record_control_dt : float
        If > 0, record the controller's r_L (filtered output), r_star, r_ff and the output layer's
        expected rate f(v_soma) of every unit at this step (ms): how far control closes the gap.
    build_dir : str
        cpp_standalone project folder.
    """

    def __init__(
        self,
        params: SpikingParams,
        weights: Weights,
        target: str = "numpy",
        record_neurons: int = 0,
        record_weights_every: int = 0,
        record_dt: float = 0.5,
        build_dir: str = "/tmp/dfc_spiking_standalone",
        record_control_dt: float = 0.0,
        sleep: bool = False,
    ) -> None:
        if not isinstance(params, SpikingParams):
            raise ConfigError(f"params must be a SpikingParams, got {type(params).__name__}")
        if target not in TARGETS:
            raise ConfigError(f"target = {target!r} is unknown; choose one of {TARGETS}")
        self.p = params
        self.target = target
        self.build_dir = build_dir
        self.record_neurons = int(record_neurons)
        self.record_weights_every = int(record_weights_every)
        self.record_dt = float(record_dt)
        self.record_control_dt = float(record_control_dt)
        self.sleep = bool(sleep)
        self._check_weights(weights)
        self.weights = weights.copy()
        self._t_run0 = 0.0
        self._create()
        self._connect()

    # ------------------------------------------------------------------ create
    def _check_weights(self, w: Weights) -> None:
        s = self.p.sizes
        L = self.p.n_layers
        for name, arrs in (("W", w.W), ("b", w.b), ("Q", w.Q)):
            if len(arrs) != L:
                raise ConfigError(f"weights.{name} must hold {L} arrays, got {len(arrs)}")
        for i in range(L):
            for name, a, shape in (
                ("W", w.W[i], (s[i + 1], s[i])),
                ("b", w.b[i], (s[i + 1],)),
                ("Q", w.Q[i], (s[i + 1], s[-1])),
            ):
                a = np.asarray(a, float)
                if a.shape != shape or not np.all(np.isfinite(a)):
                    raise ConfigError(f"weights.{name}[{i}] must be finite with shape {shape}, got {a.shape}")

    def _create(self) -> None:
        import brian2 as b2

        p = self.p
        if self.target == "cpp_standalone":
            from brian2.devices.cpp_standalone.device import CPPStandaloneDevice

            if isinstance(b2.get_device(), CPPStandaloneDevice):
                b2.device.reinit()  # a second network in the same process
            b2.set_device("cpp_standalone", directory=self.build_dir, build_on_run=False)
            limit_make_jobs(b2)
        else:
            b2.set_device("runtime")
            b2.prefs.codegen.target = self.target
        b2.start_scope()
        b2.defaultclock.dt = p.dt * b2.ms
        b2.seed(p.seed)
        self.ns = namespace(p)
        self.net = b2.Network()
        pop = p.n_pop > 1
        self.inp = b2.NeuronGroup(
            p.sizes[0],
            eq.INPUT_EQS,
            threshold=eq.POP_THRESHOLD if pop else eq.INPUT_THRESHOLD,
            reset=eq.INPUT_RESET,
            method="euler",
            name="input",
        )
        self.inp.rho = p.rho_in * b2.Hz
        self._population(self.inp)
        self.layers = []
        layer_eqs = eq.with_rate_function(eq.LAYER_EQS, p.rate_function)
        for i in range(p.n_layers):
            g = b2.NeuronGroup(
                p.sizes[i + 1],
                layer_eqs,
                threshold=eq.POP_THRESHOLD if pop else eq.LAYER_THRESHOLD,
                reset=eq.LAYER_RESET,
                method="euler",
                name=f"layer{i + 1}",
            )
            g.rho = p.rho_max * b2.Hz
            last = i == p.n_layers - 1
            g.eta = (p.eta if last else p.eta * p.eta_hidden_scale) * b2.Hz  # gated off in sleep samples
            g.b = self.weights.b[i]
            self._population(g)
            if self.sleep:  # balanced background Poisson input at the apical synapse (gated by asleep)
                rate = p.sleep_rho_bg / eq.N_BACKGROUND * b2.Hz  # per background neuron
                for sign in (1.0, -1.0):
                    self.net.add(b2.PoissonInput(g, "noise_A", eq.N_BACKGROUND, rate, sign * p.sleep_jump))
            g.run_regularly(
                eq.LAYER_SAMPLE_START, dt=p.T_sample * b2.ms, when="start", name=f"layer{i + 1}_start"
            )
            self.layers.append(g)
        out = self.layers[-1]
        self.ctrl = b2.NeuronGroup(p.sizes[-1], eq.CONTROLLER_EQS, method="euler", name="controller")
        self.ctrl.r_L = b2.linked_var(out, "r_filt")
        self.ctrl.r_ff = b2.linked_var(out, "r_ff")
        self.ctrl.run_regularly(
            eq.CONTROLLER_SAMPLE_START, dt=p.T_sample * b2.ms, when="start", name="ctrl_start"
        )
        self.net.add(self.inp, *self.layers, self.ctrl)

    def _population(self, g: Any) -> None:
        """n_pop = 1: every event is one spike (n_spk = 1); else draw n_spk before the threshold."""
        import brian2 as b2

        g.n_spk = 1.0
        if self.p.n_pop > 1:
            g.run_regularly(
                eq.with_rate_function(eq.population_draw(self.p.n_pop), self.p.rate_function),
                dt=self.p.dt * b2.ms,
                when="thresholds",
                order=-1,
                name=f"{g.name}_population",
            )

    # ------------------------------------------------------------------ connect
    def _connect(self) -> None:
        import brian2 as b2

        p = self.p
        self.forward, self.feedback = [], []
        pre_groups = [self.inp, *self.layers[:-1]]
        for i, (pre, post) in enumerate(zip(pre_groups, self.layers)):
            if p.mode == "spiking":
                syn = b2.Synapses(
                    pre,
                    post,
                    eq.FORWARD_SPIKING,
                    on_pre=eq.FORWARD_ON_PRE,
                    on_post=eq.FORWARD_ON_POST,
                    name=f"W{i + 1}",
                )
            else:
                syn = b2.Synapses(pre, post, eq.FORWARD_RATE, name=f"W{i + 1}")
            ii, jj = _all_to_all(pre.N, post.N)
            syn.connect(i=ii, j=jj)
            syn.w = np.asarray(self.weights.W[i], float).T.ravel()
            syn.run_regularly(eq.FORWARD_CONTINUOUS, dt=p.dt_plasticity * b2.ms, name=f"W{i + 1}_continuous")
            fb = b2.Synapses(self.ctrl, post, eq.FEEDBACK, name=f"Q{i + 1}")
            ii, jj = _all_to_all(self.ctrl.N, post.N)
            fb.connect(i=ii, j=jj)
            fb.Q = np.asarray(self.weights.Q[i], float).T.ravel()
            if self.sleep:
                fb.run_regularly(eq.FEEDBACK_SLEEP, dt=p.dt_plasticity * b2.ms, name=f"Q{i + 1}_sleep")
            self.forward.append(syn)
            self.feedback.append(fb)
        self.net.add(*self.forward, *self.feedback)
        # monitors
        self.spikes = [b2.SpikeMonitor(self.layers[-1], "n_spk", name="spikes_out")]
        if self.record_neurons > 0:
            k = self.record_neurons
            self.spikes = [
                b2.SpikeMonitor(g, "n_spk", name=f"spikes{i + 1}") for i, g in enumerate(self.layers)
            ]
            self.spikes.insert(0, b2.SpikeMonitor(self.inp, "n_spk", name="spikes0"))
            self.state = [
                b2.StateMonitor(
                    g,
                    ["v_basal", "v_apical", "v_soma"],
                    record=np.arange(min(k, g.N)),
                    dt=self.record_dt * b2.ms,
                    name=f"state{i + 1}",
                )
                for i, g in enumerate(self.layers)
            ]
            self.ctrl_mon = b2.StateMonitor(
                self.ctrl, ["u", "r_L", "r_star"], record=True, dt=self.record_dt * b2.ms, name="state_ctrl"
            )
            self.net.add(*self.state, self.ctrl_mon)
        self.net.add(*self.spikes)
        self.ctrl_rec = None
        if self.record_control_dt > 0:
            self.ctrl_rec = [
                b2.StateMonitor(
                    self.ctrl, ["r_L", "r_star", "r_ff"], record=True, dt=self.record_control_dt * b2.ms,
                    name="rec_ctrl",
                ),
                b2.StateMonitor(
                    self.layers[-1], "fr", record=True, dt=self.record_control_dt * b2.ms, name="rec_out_fr"
                ),
            ]  # fmt: skip
            self.net.add(*self.ctrl_rec)
        self.w_mon = []
        if self.record_weights_every > 0:
            every = self.record_weights_every * p.T_sample * b2.ms
            self.w_mon = [
                b2.StateMonitor(s, "w", record=True, dt=every, name=f"wmon{k}")
                for k, s in enumerate(self.forward)
            ]
            self.w_mon += [
                b2.StateMonitor(g, "b", record=True, dt=every, name=f"bmon{k}")
                for k, g in enumerate(self.layers)
            ]
            if self.sleep:
                self.w_mon += [
                    b2.StateMonitor(s, "Q", record=True, dt=every, name=f"qmon{k}")
                    for k, s in enumerate(self.feedback)
                ]
            self.net.add(*self.w_mon)

    # ------------------------------------------------------------------ run
    def run(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        learn: np.ndarray | bool = True,
        control: np.ndarray | bool = True,
        report: str | None = None,
        asleep: np.ndarray | bool | None = None,
    ) -> dict[str, Any]:
        """Present the samples ``X`` (N, n_0) in [0, 1] with targets ``Y`` (N, n_L) in order.

        ``learn`` / ``control`` (bool or per-sample bool array): forward plasticity / controller on.
        ``asleep`` (bool or per-sample bool array; default: ``sleep`` of the network): sleep
        samples (apical noise, Q plastic, W fixed, target r* = r^-; ``Y`` ignored there); only a
        network built with ``sleep=True`` can sleep.
        Returns a dict of recordings (see :meth:`_collect`); with cpp_standalone only one call
        per network (the project is built and run here).
        """
        import brian2 as b2

        X = np.asarray(X, float)
        Y = np.asarray(Y, float)
        N = X.shape[0] if X.ndim == 2 else 0
        if X.ndim != 2 or X.shape[1] != self.p.sizes[0] or N < 1:
            raise ConfigError(f"X has shape {X.shape}, expected (N, {self.p.sizes[0]}) with N >= 1")
        if Y.shape != (N, self.p.sizes[-1]):
            raise ConfigError(f"Y has shape {Y.shape}, expected ({N}, {self.p.sizes[-1]})")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
            raise ConfigError("X and Y must be finite")
        if X.min() < 0 or X.max() > 1:
            raise ConfigError("X must lie in [0, 1] (input rates rho_in * x)")
        learn = np.broadcast_to(np.asarray(learn, float), (N,))
        control = np.broadcast_to(np.asarray(control, float), (N,))
        asleep = np.broadcast_to(np.asarray(self.sleep if asleep is None else asleep, float), (N,))
        if not np.all((asleep == 0) | (asleep == 1)):
            raise ConfigError("asleep must hold 0/1 (or bool) per sample")
        if asleep.any() and not self.sleep:
            raise ConfigError("asleep: the network was built without sleep=True (no apical noise, no Q rule)")
        Ts = self.p.T_sample * b2.ms
        ns = dict(self.ns)
        ns.update(
            x_input=b2.TimedArray(X, dt=Ts),
            y_input=b2.TimedArray(Y, dt=Ts),
            learn_input=b2.TimedArray(learn, dt=Ts),
            control_input=b2.TimedArray(control, dt=Ts),
            sleep_input=b2.TimedArray(asleep, dt=Ts),
            t_run0=self._t_run0 * b2.ms,
        )
        t0 = time.perf_counter()
        self.net.run(N * Ts, namespace=ns, report=report)
        if self.target == "cpp_standalone":
            b2.device.build(directory=self.build_dir, compile=True, run=True, debug=False)
        wall = time.perf_counter() - t0
        out = self._collect(N)
        out["wall_s"] = wall
        self._t_run0 += N * self.p.T_sample
        return out

    # ------------------------------------------------------------------ collect / store
    def get_weights(self) -> Weights:
        s = self.p.sizes
        W = [
            np.asarray(syn.w[:], float).reshape(s[i], s[i + 1]).T.copy() for i, syn in enumerate(self.forward)
        ]
        b = [np.asarray(g.b[:], float).copy() for g in self.layers]
        Q = [
            np.asarray(fb.Q[:], float).reshape(s[-1], s[i + 1]).T.copy() for i, fb in enumerate(self.feedback)
        ]
        return Weights(W, b, Q)

    def output_counts(self, N: int, t_from: float | None = None) -> np.ndarray:
        """Output spike counts per sample (N, n_L) in [t_from, T_sample) of each sample of the last run,
        per neuron (a unit's count divided by n_pop)."""
        p = self.p
        t_from = p.t_plastic if t_from is None else t_from
        mon = self.spikes[-1]
        t = np.asarray(mon.t[:] / 1e-3) - self._t_run0  # ms since the start of this run
        i = np.asarray(mon.i[:])
        w = np.asarray(mon.n_spk[:], float) / self.p.n_pop
        k = np.floor((t + 0.5 * p.dt) / p.T_sample).astype(int)
        tin = t - k * p.T_sample
        keep = (tin >= t_from) & (k >= 0) & (k < N)
        counts = np.zeros((N, p.sizes[-1]))
        np.add.at(counts, (k[keep], i[keep]), w[keep])
        return counts

    def _collect(self, N: int) -> dict[str, Any]:
        out: dict[str, Any] = {"n_samples": N}
        out["output_counts"] = self.output_counts(N)
        out["n_spikes"] = [int(m.num_spikes) for m in self.spikes]
        if self.record_neurons > 0:
            out["t_ms"] = np.asarray(self.state[0].t[:] / 1e-3)
            for i, m in enumerate(self.state):
                for v in ("v_basal", "v_apical", "v_soma"):
                    out[f"{v}{i + 1}"] = np.asarray(getattr(m, v)[:])
            for v in ("u", "r_L", "r_star"):
                out[f"ctrl_{v}"] = np.asarray(getattr(self.ctrl_mon, v)[:])
            for k, m in enumerate(self.spikes):
                out[f"spike_t{k}"] = np.asarray(m.t[:] / 1e-3)
                out[f"spike_i{k}"] = np.asarray(m.i[:])
                out[f"spike_n{k}"] = np.asarray(m.n_spk[:])
        if self.ctrl_rec is not None:
            out["ctrl_t_ms"] = np.asarray(self.ctrl_rec[0].t[:] / 1e-3) - self._t_run0
            for v in ("r_L", "r_star", "r_ff"):
                out[f"ctrl_rec_{v}"] = np.asarray(getattr(self.ctrl_rec[0], v)[:])
            out["ctrl_rec_fr"] = np.asarray(self.ctrl_rec[1].fr[:])
        if self.w_mon:
            L = self.p.n_layers
            s = self.p.sizes
            out["ckpt_t_ms"] = np.asarray(self.w_mon[0].t[:] / 1e-3)
            for i in range(L):
                w = np.asarray(self.w_mon[i].w[:])  # (n_syn, n_ckpt)
                out[f"ckpt_W{i}"] = w.T.reshape(-1, s[i], s[i + 1]).transpose(0, 2, 1)
                out[f"ckpt_b{i}"] = np.asarray(self.w_mon[L + i].b[:]).T
                if self.sleep:
                    q = np.asarray(self.w_mon[2 * L + i].Q[:])  # (n_L n_i, n_ckpt)
                    out[f"ckpt_Q{i}"] = q.T.reshape(-1, s[-1], s[i + 1]).transpose(0, 2, 1)
        self.weights = self.get_weights()
        return out

    def store(
        self, stem: str | Path, result: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> tuple[Path, Path]:
        """Write ``stem.npz`` (arrays, final weights) and ``stem.json`` (params, scalars, meta)."""
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.asarray(v) for k, v in result.items() if isinstance(v, np.ndarray)}
        arrays.update(self.weights.to_npz_dict())
        np.savez_compressed(stem.with_suffix(".npz"), **arrays)
        scalars = {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
        doc = {"params": self.p.to_dict(), "target": self.target, **scalars, **(meta or {})}
        stem.with_suffix(".json").write_text(json.dumps(doc, indent=1, default=float))
        return stem.with_suffix(".npz"), stem.with_suffix(".json")
