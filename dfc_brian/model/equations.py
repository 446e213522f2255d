r"""The DFC model as Brian2 equations: the single source of truth of the dynamics.

Read top to bottom like a methods section. Time is in units of the controller time constant
:math:`\tau_u` (``tau_u`` below, ``ControllerParams.tau_u_ms`` milliseconds in Brian2); all
state variables are dimensionless. The order in which the code runners fire inside one time
step reproduces the authors' forward-Euler scheme (``shared/spec/DFC_SPEC.md`` section 2)
exactly; see :data:`SCHEDULE`.

Model
-----
Layers :math:`i = 1..L`, input :math:`r_0 = x`, rate :math:`r_i = \phi(v_i)`.

.. math::

    v_i^B &= W_i r_{i-1} + b_i                                 &\text{(basal compartment)}\\
    \tau_A \, dv_i^A &= (-v_i^A + Q_i u)\,dt + \sigma \sqrt{\tau_u}\, d\xi
                                                             &\text{(apical compartment)}\\
    \tau_v \frac{dv_i}{dt} &= -v_i + v_i^B + v_i^A           &\text{(soma)}\\
    e &= r_L^* - r_L                                          &\text{(output error)}\\
    \tau_u \frac{du^{int}}{dt} &= e - \alpha u, \quad u = u^{int} + k_p e
                                                             &\text{(PI controller, code form)}

In the controlled (forward) phase :math:`\tau_A = dt` and :math:`\sigma = 0`, so that
:math:`v_i^A = Q_i u` at every step, as in the authors' code.

Plasticity (local in space and time):

.. math::

    \tau_W \frac{dW_i}{dt} = (\phi(v_i) - \phi(v_i^B))\, r_{i-1}^T, \qquad
    \tau_Q \frac{dQ_i}{dt} = -\frac{1}{\tilde\sigma^2} v_i^A u^T - \beta Q_i.

The feedback rule is discretised as the authors estimate it (spec section 2, sleep phase):
each step pairs the apical voltage *before* its update with the *new* control signal,
:math:`v^A_i[t]\, u[t+1]^T`, for the T-1 pairs t = 0..T-2 of a sample (the Q plasticity
runs after the controller and before the layer's apical update, see :data:`SCHEDULE`; the
controller's step counter ``step_in_sample`` drops the pair that would straddle two samples).
The noise std of the apical compartments is per layer (``SleepParams.sigma_layers``: hidden
layers ``sigma``, output layer ``sigma_output_fb``).

Discretisation (one Brian2 time step = one step of the spec, ``dt`` = ``controller.dt``):

1. controller: :math:`e[t] = r_L^* - r_L[t]`, :math:`u^{int}[t+1] = u^{int}[t] + dt(e[t] - \alpha u[t])`
   (Brian2 ``euler`` on ``du_int/dt``), then :math:`u[t+1] = u^{int}[t+1] + k_p e[t]`;
2. for each layer in order (instantaneous transmission): summed synapses give
   :math:`W_i r_{i-1}[t+1]` and :math:`Q_i u[t+1]`; :math:`v^B`, then :math:`v^A` (Euler-Maruyama),
   then the soma :math:`v[t+1] = v[t] + (dt/tcr)(v^A[t+1] + v^B[t+1] - v[t])` and the rates.

Every ``T`` steps a new sample starts: the first step of a sample is the feedforward pass
(:math:`v = v^B`, :math:`u = u^{int} = v^A = 0`), the stored state :math:`t = 0` of the spec.

Why the soma is a written-out Euler step and not a Brian2 ODE: the apical compartment carries
Brian2's white noise ``xi`` and therefore must be the group's differential equation, and the
soma must see the *new* apical value within the same step (spec); Brian2 integrates all ODEs
of a group simultaneously from old values, so the soma step runs as its own code runner right
after the apical integration.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------
# Nonlinearities phi, written in Brian2's code syntax
# ---------------------------------------------------------------------------------------------
PHI = {
    "tanh": "tanh({v})",
    "linear": "{v}",
    "relu": "clip({v}, 0, inf)",
}


def phi(activation: str, var: str) -> str:
    """Brian2 expression of :math:`\\phi(\\mathrm{var})` for an activation name."""
    return PHI[activation].format(v=var)


# ---------------------------------------------------------------------------------------------
# Schedule: all code runners fire in the 'groups' slot; these are their `order` values.
# Layer i (1-based) has base order 100*i; the controller comes first, the plasticity last.
# ---------------------------------------------------------------------------------------------
SCHEDULE = {
    "controller_keep_u": 1,  # u_prev = u (used when the controller is not proactive)
    "controller_count": 1,  # step_in_sample += 1 (sleep phase: which steps form Q pairs)
    "controller_integrate": 2,  # state updater: u_int[t+1] (Euler)
    "controller_output": 3,  # u[t+1] = u_int[t+1] + k_p e[t]
    "sample_start_input": 4,  # new sample: load x into the input population
    "keep_rates": 6,  # every layer: r_prev = r (non-instantaneous transmission only)
    # per layer, offsets from 100*i:
    "feedback_plasticity": -5,  # Q_i: pair v_apical[t] (not yet updated) with u[t+1] (new)
    "summed_inputs": -4,  # W r_{i-1} -> I_basal, Q u -> I_apical (summed synapses)
    "apical": -2,  # state updater: Euler(-Maruyama) step of v_apical (sleep phase)
    "soma": -1,  # v_basal, v_soma Euler step, rates, divergence check, bias plasticity
    "sample_start_layer": 0,  # new sample: feedforward values
    "softmax_sum": 2,  # (output layer) sum of exp(r_L) for the CE target
    "sample_start_controller": 3,  # (output layer) new sample: r_star, u = u_int = 0
    # after all layers:
    "learning_signal": 9,  # delta = phi(v) - phi(v_B) per neuron, bias plasticity
    "plasticity": 10,  # forward/feedback weight dynamics and update accumulators
}


def layer_order(i: int, key: str) -> int:
    """`order` of the code runner ``key`` of layer ``i`` (1-based)."""
    return 100 * i + SCHEDULE[key]


def plasticity_order(n_layers: int, key: str = "plasticity") -> int:
    return 100 * (n_layers + 1) + SCHEDULE[key]


# ---------------------------------------------------------------------------------------------
# Model definition
# ---------------------------------------------------------------------------------------------
def layer_equations(filtered_apical: bool, noise: bool) -> str:
    """Equations of one layer of multi-compartment neurons (a NeuronGroup of n_i units).

    ``filtered_apical`` (sleep phase): the apical compartment low-pass filters Q u with time
    constant tau_A, plus white noise if ``noise``. Otherwise (controlled phase, tau_A = dt in
    the authors' code) the apical compartment is Q u itself, summed by the feedback synapses.
    """
    if filtered_apical:
        noise_term = " + sigma*sqrt(tau_u)*xi/tau_A" if noise else ""
        apical = f"""
    dv_apical/dt = (I_apical - v_apical)/tau_A{noise_term} : 1  # apical compartment (feedback)
    I_apical : 1        # Q_i u, summed over the feedback synapses"""
    else:
        apical = """
    v_apical : 1        # apical compartment Q_i u, summed over the feedback synapses
    I_apical = v_apical : 1  # (the apical input is the compartment itself: tau_A = dt)"""
    return (
        apical
        + """
    v_soma : 1          # somatic voltage v_i (Euler step in `soma_code`)
    v_basal : 1         # basal compartment W_i r_(i-1) + b_i
    I_basal : 1         # W_i r_(i-1), summed over the forward synapses
    r : 1               # rate phi(v_soma), a state variable updated once per step
    r_basal : 1         # phi(v_basal): the rate without feedback, for the plasticity rule
    r_prev : 1          # r of the previous step (non-instantaneous transmission)
    b : 1               # bias b_i
    db_acc : 1          # time-averaged bias update (DFC), accumulated during the phase
    keep : 1            # 1 if the current sample's DFC update counts, else 0 (convergence)
    delta : 1           # learning signal phi(v_soma) - phi(v_basal), set before the plasticity
    t_diverged : 1      # first time (units of tau_u) |v_soma| > v_max or NaN; -1 if never
    """
    )


def soma_code(activation: str) -> str:
    """One step of a layer after its synaptic inputs are summed (spec section 2, step 3).

    The basal compartment, the forward-Euler step of the soma, the rates and the divergence
    check (remember the first time |v_soma| > v_max or NaN): one pass over the neurons.
    """
    return f"""
    v_basal = I_basal + b
    v_soma = v_soma + dt/tau_v*(v_apical + v_basal - v_soma)
    r = {phi(activation, "v_soma")}
    r_basal = {phi(activation, "v_basal")}
    t_diverged = t_diverged + (t/tau_u - t_diverged)*int(t_diverged < 0 and not (abs(v_soma) < v_max))
    """


# The local learning signal of each neuron, phi(v) - phi(v_B), and the bias plasticity: run
# once per neuron after every layer has been updated (and after a new sample's feedforward
# reset, whose signal is zero), just before the weight plasticity, which reads `delta_post`
# (one value per neuron instead of two per synapse).
LEARNING_SIGNAL_CODE = {
    "online": """
    delta = r - r_basal      # phi(v) - phi(v_B)
    b += dt*delta/tau_W      # tau_W db/dt = phi(v) - phi(v_B)
    """,
    "accumulate": """
    delta = keep*(r - r_basal)  # phi(v) - phi(v_B), zero for a sample whose update is dropped
    db_acc += delta/T_steps     # time-averaged DFC bias update
    """,
}
# Accumulate mode: whether the new sample's update counts (TimedArray `keep_input`, one value per
# sample; the engine re-runs with zeros for the samples that did not converge, see
# ``convergence.include_nonconverged``).
KEEP_SAMPLE_START_CODE = "keep = keep_input(t)"


def layer_sample_start_code(activation: str) -> str:
    """First step of a sample: the feedforward state (v = v_B, v_A = 0)."""
    return f"""
    v_soma = v_basal
    v_apical = 0
    r = {phi(activation, "v_soma")}
    r_basal = r
    r_prev = r
    """


KEEP_RATE_CODE = "r_prev = r"

# Input population: r = x of the current sample (TimedArray `x_input`, one row per sample).
INPUT_EQUATIONS = """
r : 1       # input rate r_0 = x
r_prev : 1  # same value; lets every layer read `r_prev` of the layer below
"""
INPUT_SAMPLE_START_CODE = """
r = x_input(t, i)
r_prev = r
"""


def controller_equations(form: str) -> str:
    """The PI controller: its own population of n_L units.

    Code form (default): :math:`\\tau_u \\dot u^{int} = e - \\alpha u`, :math:`u = u^{int} + k_p e`.
    Slides form: :math:`\\tau_u \\dot u^{int} = e - \\alpha u^{int}`, :math:`u = K_I u^{int} + k_p e`.
    Both integrate ``u_int`` with forward Euler from the state at the start of the step.
    """
    leak = "u" if form == "code" else "u_int"
    return f"""
    du_int/dt = (error - alpha*{leak})/tau_u : 1  # integral part of the control
    error = r_star - r_L : 1                 # output error e = r_L* - r_L (`e` is reserved)
    r_star : 1                               # output target r_L* of the current sample
    r_L : 1 (linked)                         # output rate r_L (linked to the output layer)
    sum_exp : 1                              # sum_j exp(r_L_j), for a softmax (CE) target
    u : 1                                    # control signal u, sent to all apical compartments
    u_prev : 1                               # u of the previous step (non-proactive feedback)
    step_in_sample : 1                       # steps since the sample started (0 at its first)
    """


def controller_output_code(form: str) -> str:
    gain = "" if form == "code" else "K_I*"
    return f"u = {gain}u_int + k_p*error"


CONTROLLER_KEEP_CODE = "u_prev = u"
CONTROLLER_COUNT_CODE = "step_in_sample += 1"
# New sample: the output target from the network's own feedforward output r_L^- and the
# label/target y of the sample (batch-mean loss over B samples: target_scale = lambda/B).
TARGET_CODE = {
    "mse": "r_star = r_L - target_scale*2*(r_L - y_input(t, i))/n_out",
    "ce": "r_star = r_L - target_scale*(exp(r_L)/sum_exp - y_input(t, i))",
}
SOFTMAX_SUM = "sum_exp_post = exp(r_L_pre) : 1 (summed)"
CONTROLLER_SAMPLE_START_CODE = """
u_int = 0
u = 0
u_prev = 0
step_in_sample = 0
"""


# ---------------------------------------------------------------------------------------------
# Synapses
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SynapseModel:
    """Equations, summed-variable line and per-step code of one Synapses object."""

    model: str
    on_step: str = ""  # code run every step at the plasticity order ('' for none)


def forward_synapse_model(pre_rate: str, plasticity: str) -> SynapseModel:
    """Forward weights W_i: carry W r_{i-1} into the basal compartment.

    plasticity: ``none``; ``accumulate`` (the DFC time-averaged update is accumulated in
    ``dW_acc`` while the weights stay fixed, to be applied by an optimiser outside; the
    last-step DFC-SS update is computed by the engine from the states at the end of each
    sample); ``online`` (continuous plasticity
    :math:`\\tau_W \\dot W = (\\phi(v) - \\phi(v^B)) r_{i-1}^T`, minibatch of 1).
    """
    if plasticity == "online":
        weight = "dw/dt = delta_post*r_pre/tau_W : 1 (clock-driven)  # W_i[post, pre], plastic"
    else:
        weight = "w : 1  # forward weight W_i[post, pre]"
    lines = [weight, f"I_basal_post = w*{pre_rate}_pre : 1 (summed)  # basal input W_i r_(i-1)"]
    code = ""
    if plasticity == "accumulate":
        lines += ["dW_acc : 1  # time-averaged DFC update"]
        code = "dW_acc += delta_post*r_pre/T_steps"
    return SynapseModel("\n".join(lines), code)


# A step forms a (v_A[t], u[t+1]) pair of the sleep estimator when it is not the first step of a
# sample (step_in_sample = 1..T-1 after the controller's count; T at a sample's first step).
PAIR_OK = "int(step_in_sample_pre < T_steps - 0.5)"


def feedback_synapse_model(u_var: str, plasticity: str, target: str = "I_apical") -> SynapseModel:
    r"""Feedback weights Q_i: carry Q u into the apical compartment.

    ``plasticity`` (sleep phase; its code runs at ``feedback_plasticity``, after the controller
    and before the layer's apical update, so it pairs :math:`v^A[t]` with :math:`u[t+1]`):

    - ``none``: Q fixed;
    - ``accumulate``: Q fixed, ``dQ_acc`` sums :math:`v^A_i[t]\, u[t+1]^T` over the T-1 pairs
      t = 0..T-2 of every sample (the engine scales it by :math:`-1/(\tilde\sigma^2 N (T-1))`);
    - ``online``: the anti-Hebbian rule
      :math:`Q \leftarrow Q + \frac{dt}{\tau_Q}\big(-\frac{T}{T-1}\tilde\sigma^{-2}
      v^A[t]\,u[t+1]^T\,[\text{pair}] - \beta Q\big)` every step, so that one sample (duration
      T dt) moves Q by :math:`T dt/\tau_Q` times the sleep estimator (plus the decay).
    """
    lines = ["Q : 1  # feedback weight Q_i[post, pre]"]
    code = ""
    if plasticity == "accumulate":
        lines.append("dQ_acc : 1  # sum over the sleep pairs of v_A[t] u[t+1]")
        code = f"dQ_acc += {PAIR_OK}*v_apical_post*u_pre"
    elif plasticity == "online":
        code = f"Q += dt/tau_Q*(-{PAIR_OK}*T_steps/(T_steps - 1)*v_apical_post*u_pre/sigma_tilde**2 - beta*Q)"
    elif plasticity != "none":
        raise ValueError(f"unknown feedback plasticity {plasticity!r}")
    lines.append(f"{target}_post = Q*{u_var}_pre : 1 (summed)  # apical input Q_i u")
    return SynapseModel("\n".join(lines), code)
