"""Brian2 objects of the DFC network, built from :mod:`dfc_brian.model.equations`.

Each function returns an ordinary Brian2 object (``NeuronGroup``, ``Synapses``,
``StateMonitor``) with its code runners attached, so that a notebook can build and inspect
one layer by hand::

    import brian2 as b2
    from dfc_brian.model import equations as eq
    from dfc_brian.network import build

    ns = eq.namespace(params, "controlled")
    clocks = build.make_clocks(params.controller)
    ns.update(build.data_inputs(X, y, clocks))
    layer = build.make_layer(0, params.network, "controlled", ns, clocks)  # paper layer 1
    layer.I_basal, layer.I_apical = 0.3, 0.1  # drive the compartments by hand
    mon = b2.StateMonitor(layer, ["v_soma", "v_apical"], record=True, when="end")
    b2.Network(layer, mon).run(params.controller.tmax * clocks.step.dt)
    mon.v_soma  # relaxes with tau_v = tcr tau_u toward v_basal + v_apical (tests/test_network.py)

Layer indices are 0-based: layer ``i`` is paper layer ``i + 1`` (Brian2 names it
``layer{i+1}``, its synapses ``W{i+1}``, ``Q{i+1}``). All code runners fire in the
``groups`` slot of the time step; :data:`ORDER` gives their ``order`` values.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dfc_brian.model import equations as eq

# ---------------------------------------------------------------------------------------------
# Schedule inside one time step (spec section 2): the `order` of every code runner.
# Layer i (0-based) has base order 100 (i + 1); the controller comes first, plasticity last.
# ---------------------------------------------------------------------------------------------
ORDER = {
    "controller_step_start": 1,  # u_prev = u, step_in_sample += 1 (which steps form sleep pairs)
    "controller_integrate": 2,  # state updater: u_int[t+1] (Euler)
    "controller_output": 3,  # u[t+1] = K_I u_int[t+1] + k_p e[t]
    "sample_start_input": 4,  # new sample: load x into the input population
    # per layer, offsets from 100 (i + 1):
    "feedback_plasticity": -5,  # Q_i: pairs v_apical[t] (not yet updated) with u[t+1]
    "summed_inputs": -4,  # W r_(i-1) -> I_basal, Q u -> I_apical (summed synapses)
    "apical": -2,  # state updater (sleep phase): Euler-Maruyama step of v_apical
    "soma": -1,  # v_apical = Q u (controlled), v_basal, the soma's Euler step, rates, divergence
    "sample_start_layer": 0,  # new sample: feedforward values
    "softmax_sum": 2,  # (output layer) sum of exp(r_L) for the CE target
    "sample_start_controller": 3,  # (output layer) new sample: r_star, u = u_int = 0
    # after all layers:
    "learning_signal": 9,  # delta = phi(v) - phi(v_B), bias plasticity
    "plasticity": 10,  # forward weight plasticity and update accumulators
}


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def limit_make_jobs(b2) -> list[str]:  # noqa: ANN001 - the brian2 module
    """Compile cpp_standalone projects with one ``make`` job per usable core.

    Brian2's default, ``make -j`` without a number, starts every compiler at once: 72 ``cc1plus``
    on the 2-core development machine (load average 64, other jobs starved). Returns the make
    arguments set in ``prefs.devices.cpp_standalone.extra_make_args_unix``.
    """
    args = [f"-j{usable_cores()}"]
    b2.prefs.devices.cpp_standalone.extra_make_args_unix = args
    return args


def layer_order(i: int, key: str) -> int:
    """``order`` of the code runner ``key`` of layer ``i`` (0-based)."""
    return 100 * (i + 1) + ORDER[key]


def after_layers_order(n_layers: int, key: str = "plasticity") -> int:
    """``order`` of a code runner that fires after all ``n_layers`` layers."""
    return 100 * (n_layers + 1) + ORDER[key]


@dataclass(frozen=True)
class Clocks:
    """The Euler step and the start of each sample (every T steps)."""

    step: object  # brian2.Clock
    sample: object  # brian2.Clock


def make_clocks(ctrl) -> Clocks:
    """Clocks of one phase from its ControllerParams (``dt``, ``tmax``, ``tau_u_ms``)."""
    import brian2 as b2

    dt = ctrl.dt * ctrl.tau_u_ms * b2.ms
    return Clocks(b2.Clock(dt=dt, name="step_clock"), b2.Clock(dt=ctrl.tmax * dt, name="sample_clock"))


def pad(a: np.ndarray) -> np.ndarray:
    """Repeat the last row: the extra final step of a run reads one row past the samples."""
    return np.concatenate([a, a[-1:]])


def data_inputs(X: np.ndarray, y: np.ndarray, clocks: Clocks, keep: np.ndarray | None = None) -> dict:
    """TimedArrays ``x_input``, ``y_input``, ``keep_input``: one row per sample (plus one)."""
    import brian2 as b2

    # read only at a sample's first step, where t is a multiple of the sample duration up to
    # round-off (Brian2 rounds t/dt to the nearest index); the "time grids not aligned"
    # warning about a ratio like 49.999999999 is harmless
    b2.BrianLogger.suppress_name("brian2.input.timedarray")
    keep = np.ones(len(X)) if keep is None else np.asarray(keep, dtype=np.float64)
    sdt = clocks.sample.dt
    return {
        "x_input": b2.TimedArray(pad(X), dt=sdt, name="x_input"),
        "y_input": b2.TimedArray(pad(y), dt=sdt, name="y_input"),
        "keep_input": b2.TimedArray(pad(keep), dt=sdt, name="keep_input"),
    }


# ---------------------------------------------------------------------------------------------
# Create
# ---------------------------------------------------------------------------------------------
def make_input(n: int, ns: dict, clocks: Clocks):
    """The input population r_0 = x (``x_input`` in ``ns``)."""
    import brian2 as b2

    order = ORDER["sample_start_input"]
    G = b2.NeuronGroup(n, eq.INPUT, name="input", order=order, clock=clocks.step, namespace=ns)
    G.run_regularly(
        eq.INPUT_SAMPLE_START, clock=clocks.sample, order=order, when="groups", name="input_sample_start"
    )
    return G


def make_layer(i: int, spec, phase: str, ns: dict, clocks: Clocks, learning: bool = False):
    """Layer ``i`` (0-based) of ``spec`` (NetworkSpec) as a NeuronGroup of ``spec.sizes[i+1]``
    multi-compartment neurons, with its code runners (soma step, sample start and, if
    ``learning``, the learning signal with the bias plasticity)."""
    import brian2 as b2

    act = spec.activations[i]
    name = f"layer{i + 1}"
    apical = eq.APICAL_CONTROLLED if phase == "controlled" else eq.APICAL_SLEEP
    G = b2.NeuronGroup(
        spec.sizes[i + 1],
        apical + eq.LAYER,
        method="euler",
        name=name,
        order=layer_order(i, "apical"),
        clock=clocks.step,
        namespace={**ns, "sigma": ns["sigma_layers"][i]},
    )
    G.t_diverged = -1
    G.run_regularly(
        eq.with_phi(eq.SOMA_STEP, act), order=layer_order(i, "soma"), when="groups", name=f"{name}_soma"
    )
    G.run_regularly(
        eq.with_phi(eq.LAYER_SAMPLE_START, act),
        clock=clocks.sample,
        order=layer_order(i, "sample_start_layer"),
        when="groups",
        name=f"{name}_sample_start",
    )
    if learning:
        order = after_layers_order(spec.n_layers, "learning_signal")
        G.run_regularly(eq.LEARNING_SIGNAL, order=order, when="groups", name=f"{name}_learning_signal")
    return G


def make_controller(spec, output_layer, ns: dict, clocks: Clocks):
    """The PI controller: a NeuronGroup of n_L units, ``r_L`` linked to ``output_layer``'s
    rate; at each sample start it sets the target from the loss ``spec.loss`` and resets u."""
    import brian2 as b2

    C = b2.NeuronGroup(
        spec.n_out,
        eq.CONTROLLER,
        method="euler",
        name="controller",
        order=ORDER["controller_integrate"],
        clock=clocks.step,
        namespace=ns,
    )
    C.r_L = b2.linked_var(output_layer, "r")
    C.step_in_sample = ns["T_steps"]  # the run's first step forms no sleep pair
    C.run_regularly(
        eq.CONTROLLER_STEP_START, order=ORDER["controller_step_start"], when="groups", name="controller_step"
    )
    C.run_regularly(
        eq.CONTROLLER_OUTPUT, order=ORDER["controller_output"], when="groups", name="controller_output"
    )
    C.run_regularly(
        eq.TARGET[spec.loss] + "\n" + eq.CONTROLLER_SAMPLE_START,
        clock=clocks.sample,
        order=layer_order(spec.n_layers - 1, "sample_start_controller"),
        when="groups",
        name="controller_sample_start",
    )
    return C


# ---------------------------------------------------------------------------------------------
# Connect (all-to-all, pre-major synapse order: see _pre_index)
# ---------------------------------------------------------------------------------------------
def connect_forward(i: int, pre, post, ns: dict, clocks: Clocks, n_layers: int, plasticity: str = "none"):
    """W_i: Synapses ``W{i+1}`` from ``pre`` (layer i-1 or the input) into ``post``'s
    basal compartment, with the forward plasticity runner of mode ``plasticity`` (``none``,
    ``accumulate`` or ``online``; after all ``n_layers`` layers)."""
    import brian2 as b2

    S = b2.Synapses(pre, post, eq.FORWARD, name=f"W{i + 1}", clock=clocks.step, namespace=ns)
    S.connect(i=_pre_index(len(pre), len(post)), j=_post_index(len(pre), len(post)))
    S.summed_updaters["I_basal_post"].order = layer_order(i, "summed_inputs")
    if plasticity != "none":
        order = after_layers_order(n_layers, "plasticity")
        S.run_regularly(
            eq.FORWARD_PLASTICITY[plasticity], order=order, when="groups", name=f"W{i + 1}_plasticity"
        )
    return S


def connect_feedback(i: int, controller, post, ns: dict, clocks: Clocks, plasticity: str = "none"):
    """Q_i: Synapses ``Q{i+1}`` from the controller into ``post``'s apical compartment, with
    the anti-Hebbian runner (sleep phase) of mode ``plasticity`` (``none``, ``accumulate``,
    ``online``)."""
    import brian2 as b2

    F = b2.Synapses(controller, post, eq.FEEDBACK, name=f"Q{i + 1}", clock=clocks.step, namespace=ns)
    F.connect(i=_pre_index(len(controller), len(post)), j=_post_index(len(controller), len(post)))
    F.summed_updaters["I_apical_post"].order = layer_order(i, "summed_inputs")
    if plasticity != "none":
        order = layer_order(i, "feedback_plasticity")
        F.run_regularly(
            eq.FEEDBACK_PLASTICITY[plasticity], order=order, when="groups", name=f"Q{i + 1}_plasticity"
        )
    return F


def connect_softmax(controller, n_layers: int, ns: dict, clocks: Clocks):
    """sum_j exp(r_L_j) into every controller unit (softmax cross-entropy target)."""
    import brian2 as b2

    S = b2.Synapses(
        controller, controller, eq.SOFTMAX_SUM, name="softmax_sum", clock=clocks.step, namespace=ns
    )
    S.connect()
    S.summed_updaters["sum_exp_post"].order = layer_order(n_layers - 1, "softmax_sum")
    return S


# ---------------------------------------------------------------------------------------------
# Monitors
# ---------------------------------------------------------------------------------------------
LAYER_RECORDABLE = ("v_soma", "v_basal", "v_apical", "r", "I_basal", "I_apical", "r_basal")
# result name -> Brian2 variable of the controller (`e` is reserved in Brian2 equations)
CONTROLLER_RECORDABLE = {"u": "u", "u_int": "u_int", "e": "error", "r_star": "r_star"}


def add_monitors(
    layers: Sequence,
    controller,
    clocks: Clocks,
    record: Sequence[str] = (),
    record_layers: Sequence[int] = (),
    neurons: Sequence[Sequence[int] | None] | None = None,
    record_every: int = 1,
) -> dict:
    """StateMonitors: the ``record``-ed variables of the layers ``record_layers`` (0-based;
    ``neurons``: per recorded layer an index list or None for all) and of the controller,
    every ``record_every`` steps; and the state at the first step (feedforward) and at the
    last step of each sample (controller, and every layer's v_soma, v_basal, r).

    Returns a dict: ``layers`` {i: monitor}, ``controller`` (or None), ``sample_start``,
    ``sample_end``, ``layers_sample_end`` (list over layers); ``all`` lists them all.
    """
    import brian2 as b2

    rec_layer = [v for v in record if v in LAYER_RECORDABLE]
    rec_ctrl = [CONTROLLER_RECORDABLE[v] for v in record if v in CONTROLLER_RECORDABLE]
    rec_dt = record_every * clocks.step.dt
    neurons = [None] * len(record_layers) if neurons is None else neurons
    mons: dict = {"layers": {}, "controller": None}
    if rec_layer:
        for i, nrn in zip(record_layers, neurons):
            mons["layers"][i] = b2.StateMonitor(
                layers[i],
                rec_layer,
                record=True if nrn is None else list(nrn),
                dt=rec_dt,
                when="end",
                name=f"monitor_layer{i + 1}",
            )
    if rec_ctrl:
        mons["controller"] = b2.StateMonitor(
            controller, rec_ctrl, record=True, dt=rec_dt, when="end", name="monitor_controller"
        )
    mons["sample_start"] = b2.StateMonitor(
        controller,
        ["r_L", "error"],
        record=True,
        clock=clocks.sample,
        when="end",
        name="monitor_sample_start",
    )
    end = {"record": True, "clock": clocks.sample, "when": "groups", "order": 0}
    mons["sample_end"] = b2.StateMonitor(
        controller, ["r_L", "error", "u", "u_int", "r_star"], name="monitor_sample_end", **end
    )
    mons["layers_sample_end"] = [
        b2.StateMonitor(G, ["v_soma", "v_basal", "r"], name=f"monitor_layer{i + 1}_sample_end", **end)
        for i, G in enumerate(layers)
    ]
    mons["all"] = [
        *mons["layers"].values(),
        *([mons["controller"]] if mons["controller"] is not None else []),
        mons["sample_start"],
        mons["sample_end"],
        *mons["layers_sample_end"],
    ]
    return mons


# Synapse order: pre-major (all synapses of presynaptic neuron 0, then of neuron 1, ...).
# The summed-variable loop adds into I[post] for consecutive synapses; with pre-major order
# consecutive synapses target different neurons, so the additions do not wait on each other
# (post-major order chains every addition through one memory location and is much slower).
# The sum over presynaptic neurons of each neuron still runs in increasing pre order.
def _pre_index(n_pre: int, n_post: int) -> np.ndarray:
    return np.repeat(np.arange(n_pre), n_post)


def _post_index(n_pre: int, n_post: int) -> np.ndarray:
    return np.tile(np.arange(n_post), n_pre)


def to_synapses(M: np.ndarray) -> np.ndarray:
    """(n_post, n_pre) matrix -> synapse values in pre-major order."""
    return np.ascontiguousarray(M.T).ravel()


def from_synapses(values, shape: tuple[int, int]) -> np.ndarray:
    """Synapse values in pre-major order -> (n_post, n_pre) matrix (a copy)."""
    return np.asarray(values).reshape(shape[1], shape[0]).T.copy()
