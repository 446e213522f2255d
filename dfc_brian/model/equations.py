r"""The DFC rate model as Brian2 equations: the single source of truth of the dynamics.

Read top to bottom like a methods section (spec: ``shared/spec/DFC_SPEC.md``, sections 1-2).
Time is in units of the controller time constant :math:`\tau_u` (``tau_u``, that is
``ControllerParams.tau_u_ms`` milliseconds in Brian2); every state variable is dimensionless.
Layers :math:`i = 1..L`, input :math:`r_0 = x`, rates :math:`r_i = \phi(v_i)`:

.. math::

    v_i^B &= W_i r_{i-1} + b_i                                  &\text{(basal compartment)}\\
    \tau_A \, dv_i^A &= (-v_i^A + Q_i u)\,dt + \sigma \sqrt{\tau_u}\, d\xi
                                                               &\text{(apical compartment)}\\
    \tau_v \, \dot v_i &= -v_i + v_i^B + v_i^A                 &\text{(soma)}\\
    e = r_L^* - r_L, \quad \tau_u \dot u^{int} &= e - \alpha u, \quad u = u^{int} + k_p e
                                                               &\text{(PI controller, code form)}\\
    \tau_W \dot W_i = (\phi(v_i) - \phi(v_i^B))\, r_{i-1}^T, &\quad
    \tau_Q \dot Q_i = -\tilde\sigma^{-2} v_i^A u^T - \beta Q_i &\text{(plasticity)}

:math:`W_i r_{i-1}` and :math:`Q_i u` reach the compartments through ``(summed)`` synaptic
variables, the continuous coupling of Brian2's gap-junction example. One Brian2 time step is
one forward-Euler step of the spec; the order of the code runners inside a step (the
``order`` values in :data:`dfc_brian.network.build.ORDER`) reproduces the authors' scheme.
Every ``T`` steps a sample starts with its feedforward pass (:math:`v = v^B`,
:math:`u = u^{int} = v^A = 0`), the stored state :math:`t = 0` of the spec.

The phases and the controller variants differ by the values that :func:`namespace` puts in
the Brian2 namespace (a noise std of 0, 0/1 switches), never by editing these strings. Three
choices keep a second literal string, each said where it stands: the apical compartment
(an assignment in the controlled phase, an SDE in the sleep phase), the output target
(mean squared error or softmax cross-entropy) and the per-synapse plasticity statement.
``phi(...)`` is replaced per layer by the Brian2 expression of its activation (:func:`with_phi`).
"""

from __future__ import annotations

import re

PHI = {"tanh": "tanh({v})", "linear": "{v}", "relu": "clip({v}, 0, inf)"}  # phi in Brian2 syntax


def with_phi(code: str, activation: str) -> str:
    """Replace every ``phi(x)`` in ``code`` by the Brian2 expression of ``activation``."""
    return re.sub(r"\bphi\(([^()]*)\)", lambda m: PHI[activation].format(v=m.group(1)), code)


# ---------------------------------------------------------------------------------------------
# Input population (n_0 units): r_0 = x of the current sample
# ---------------------------------------------------------------------------------------------
INPUT = """
r : 1      # input rate r_0 = x
r_out : 1  # the rate the layer above reads (= r)
"""
INPUT_SAMPLE_START = """
r = x_input(t, i)  # TimedArray: one row per sample
r_out = r
"""

# ---------------------------------------------------------------------------------------------
# Layer i (n_i multi-compartment neurons)
# ---------------------------------------------------------------------------------------------
# The apical compartment: the one branch of the layer. Controlled phase: the authors take
# tau_A = dt, i.e. v_A = Q_i u at every step, written as an assignment in SOMA_STEP
# (instant_A = 1): exact, and no random numbers are drawn. Sleep phase: the noisy low-pass
# filter of Q_i u (noise std ``sigma`` of the layer, 0 for a noiseless sleep phase),
# integrated by Euler-Maruyama (the group's state updater, just before SOMA_STEP).
APICAL_CONTROLLED = """
v_apical : 1  # apical compartment v_A = Q_i u (set in SOMA_STEP)
"""
APICAL_SLEEP = """
dv_apical/dt = (I_apical - v_apical)/tau_A + sigma*sqrt(tau_u)*xi/tau_A : 1  # apical compartment
"""

LAYER = """
v_soma : 1    # somatic voltage v_i (SOMA_STEP)
v_basal : 1   # basal compartment v_B = W_i r_(i-1) + b_i
I_basal : 1   # W_i r_(i-1), summed over the forward synapses
I_apical : 1  # Q_i u, summed over the feedback synapses
r : 1         # rate phi(v_soma)
r_basal : 1   # phi(v_basal): the rate without feedback, for the plasticity rule
b : 1         # bias b_i
# --- bookkeeping (not model state) ---
r_out : 1       # rate read by the layer above: r[t+1] (instantaneous) or r[t] (delayed_ff = 1)
delta : 1       # learning signal phi(v_soma) - phi(v_basal), zero if the sample is dropped
keep : 1        # 1 if the current sample's DFC update counts, else 0 (convergence test)
db_acc : 1      # time-averaged bias update, accumulated over the phase
t_diverged : 1  # first time (units of tau_u) with |v_soma| > v_max or NaN; -1 if never
"""

# One step after the synaptic inputs are summed: the soma sees the *new* apical value
# (Brian2 integrates the ODEs of a group from old values, hence a code runner of its own).
SOMA_STEP = """
v_apical = instant_A*I_apical + (1 - instant_A)*v_apical
v_basal = I_basal + b
v_soma = v_soma + dt/tau_v*(v_apical + v_basal - v_soma)
r_out = r
r = phi(v_soma)
r_out = delayed_ff*r_out + (1 - delayed_ff)*r
r_basal = phi(v_basal)
t_diverged = t_diverged + (t/tau_u - t_diverged)*int(t_diverged < 0 and not (abs(v_soma) < v_max))
"""
LAYER_SAMPLE_START = """
v_soma = v_basal
v_apical = 0
r = phi(v_soma)
r_basal = r
r_out = r
keep = keep_input(t)
"""

# ---------------------------------------------------------------------------------------------
# PI controller (n_L units), code form (slides = 0) or slides form (slides = 1, gain K_I)
# ---------------------------------------------------------------------------------------------
CONTROLLER = """
du_int/dt = (error - alpha*((1 - slides)*u + slides*u_int))/tau_u : 1  # integral part
error = r_star - r_L : 1  # output error e = r_L* - r_L (`e` is reserved in Brian2)
r_star : 1                # output target r_L* of the current sample
r_L : 1 (linked)          # output rate r_L (linked to the output layer)
u : 1                     # control signal, sent to every apical compartment
# --- bookkeeping (not model state) ---
u_prev : 1          # u of the previous step (read by the feedback if delayed_fb = 1)
sum_exp : 1         # sum_j exp(r_L_j), for the softmax (CE) target
step_in_sample : 1  # steps since the sample started (0 at its first step)
pair = int(step_in_sample < T_steps - 0.5) : 1  # 1 if v_A[t] u[t+1] is a pair of this sample
"""
CONTROLLER_STEP_START = """
u_prev = u
step_in_sample += 1
"""
CONTROLLER_OUTPUT = "u = K_I*u_int + k_p*error"  # K_I = 1 in the code form
# New sample: the output target from the network's own feedforward output r_L^- and the
# sample's y; target_scale = lambda/B (batch-mean loss), 0 in the sleep phase (r_L* = r_L^-).
# The second literal string of the loss: exp(r_L) of a regression output may overflow.
TARGET = {
    "mse": "r_star = r_L - target_scale*2*(r_L - y_input(t, i))/n_out",
    "ce": "r_star = r_L - target_scale*(exp(r_L)/sum_exp - y_input(t, i))",
}
SOFTMAX_SUM = "sum_exp_post = exp(r_L_pre) : 1 (summed)"
CONTROLLER_SAMPLE_START = """
u_int = 0
u = 0
u_prev = 0
step_in_sample = 0
"""

# ---------------------------------------------------------------------------------------------
# Synapses
# ---------------------------------------------------------------------------------------------
FORWARD = """
w : 1                                   # forward weight W_i[post, pre]
I_basal_post = w*r_out_pre : 1 (summed)  # basal input W_i r_(i-1)
dW_acc : 1                              # bookkeeping: time-averaged DFC update
"""
FEEDBACK = """
Q : 1  # feedback weight Q_i[post, pre]
I_apical_post = Q*((1 - delayed_fb)*u_pre + delayed_fb*u_prev_pre) : 1 (summed)  # Q_i u
dQ_acc : 1  # bookkeeping: sum over the sleep pairs of v_A[t] u[t+1]
"""

# ---------------------------------------------------------------------------------------------
# Plasticity (local in space and time), after every layer has been updated
# ---------------------------------------------------------------------------------------------
# Forward (DFC), per neuron: the learning signal and the bias rule; online (online_W = 1):
# tau_W db/dt = phi(v) - phi(v_B), minibatch of 1; accumulate (acc_W = 1): its time average
# over the T steps of a sample, summed over the samples, with b fixed (an optimiser outside
# applies it; the last-step DFC-SS update is read from the state at each sample's end).
LEARNING_SIGNAL = """
delta = keep*(r - r_basal)
b += online_W*dt*delta/tau_W
db_acc += acc_W*delta/T_steps
"""
# Per synapse, one literal statement per mode (the second branch kept on purpose): a statement
# with a zero switch would still rewrite every weight at every step (measured on a 784-256-256-
# 256-10 accumulate run, cpp_standalone: 5.4 s instead of 4.6 s). tau_W dW/dt = (phi(v) - phi(v_B)) r_(i-1)^T.
FORWARD_PLASTICITY = {
    "online": "w += dt*delta_post*r_pre/tau_W",
    "accumulate": "dW_acc += delta_post*r_pre/T_steps",
}
# Feedback (sleep phase, anti-Hebbian): it runs after the controller and before the layer's
# apical update, so it pairs v_A[t] with u[t+1]; the pair straddling two samples is dropped
# (T-1 pairs per sample). accumulate: the engine scales dQ_acc by -1/(sigma~^2 N (T-1));
# online: one sample moves Q by T dt/tau_Q times that estimator, minus the decay beta Q.
FEEDBACK_PLASTICITY = {
    "online": "Q += dt/tau_Q*(-pair_pre*T_steps/(T_steps - 1)*v_apical_post*u_pre/sigma_tilde**2 - beta*Q)",
    "accumulate": "dQ_acc += pair_pre*v_apical_post*u_pre",
}


# ---------------------------------------------------------------------------------------------
# Parameters -> Brian2 namespace
# ---------------------------------------------------------------------------------------------
PHASES = ("controlled", "sleep", "sleep_noiseless")
PLASTICITY = ("none", "accumulate", "online")
#: defaults of the plasticity time constants (units of tau_u), the Q-rule decay and the divergence
#: bound of |v_soma|; BrianDFC takes the same defaults
TAU_W, TAU_Q, BETA, V_MAX = 100.0, 100.0, 0.0, 1e6


def namespace(
    params,
    phase: str,
    *,
    plasticity: str = "none",
    batch_size: int = 1,
    tau_W: float = TAU_W,
    tau_Q: float = TAU_Q,
    beta: float = BETA,
    v_max: float = V_MAX,
) -> dict:
    """The Brian2 namespace of one phase: the only place where symbols are formed from params.

    Parameters
    ----------
    params : ModelParams
        Validated parameters; the sleep phases use ``params.sleep.as_controller``.
    phase : ``controlled``, ``sleep`` or ``sleep_noiseless`` (sleep with sigma = 0).
    plasticity : ``none``, ``accumulate`` or ``online`` of W and b in the controlled phase
        (the switches of LEARNING_SIGNAL; the synapse statement is chosen by ``network``).
    batch_size : B of the batch-mean loss (target_scale = lambda / B).
    tau_W, tau_Q : plasticity time constants in units of tau_u; beta : decay of the Q rule.
    v_max : divergence bound of |v_soma|.

    Returns
    -------
    dict
        Brian2 quantities and floats; ``sigma_layers`` holds the apical noise std of each
        layer (``make_layer`` sets the layer's ``sigma`` from it).
    """
    from brian2 import ms

    if phase not in PHASES:
        raise ValueError(f"phase = {phase!r} is unknown; choose one of {PHASES}")
    if plasticity not in PLASTICITY:
        raise ValueError(f"plasticity = {plasticity!r} is unknown; choose one of {PLASTICITY}")
    controlled = phase == "controlled"
    ctrl = params.controller if controlled else params.sleep.as_controller(params.controller)
    L = params.network.n_layers
    tau_u = ctrl.tau_u_ms * ms
    slides = ctrl.form == "slides"
    fwd = plasticity if controlled else "none"
    return {
        "tau_u": tau_u,  # controller time constant: the unit of time
        "tau_v": ctrl.tcr * tau_u,  # soma time constant tau_v = tcr tau_u
        "tau_A": (ctrl.dt if controlled else params.sleep.tau_A) * tau_u,  # apical filter
        "sigma_layers": (0.0,) * L if phase != "sleep" else tuple(params.sleep.sigma_layers(L)),
        "alpha": ctrl.alpha,  # controller leak
        "k_p": ctrl.k_p,  # proportional gain
        "K_I": ctrl.K_I if slides else 1.0,  # integral gain (slides form)
        "slides": float(slides),  # 1: leak on u_int (slides form), 0: on u (code form)
        "delayed_fb": float(not ctrl.proactive),  # 1: v_A[t+1] reads u[t]
        "delayed_ff": float(not ctrl.instantaneous),  # 1: layer i reads r_(i-1)[t]
        "instant_A": float(controlled),  # 1: v_A = Q_i u (tau_A = dt), 0: the apical SDE
        "target_scale": ctrl.target_stepsize / batch_size if controlled else 0.0,  # lambda / B
        "n_out": float(params.network.n_out),
        "T_steps": float(ctrl.tmax),  # steps per sample
        "online_W": float(fwd == "online"),
        "acc_W": float(fwd == "accumulate"),
        "tau_W": tau_W * tau_u,
        "tau_Q": tau_Q * tau_u,
        "beta": beta,
        "sigma_tilde": params.sleep.sigma_tilde,  # sigma~ = max(sigma, 0.01) of the Q rule
        "v_max": v_max,
    }
