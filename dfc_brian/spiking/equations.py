r"""Spiking Deep Feedback Control: the equations of every group, as literal Brian2 strings.

Read top to bottom like a methods section. Voltages and weights are dimensionless as in the
rate model (:mod:`dfc_brian.model.equations`); times are in ms; every rate is *normalised* by
its group's maximal rate :math:`\rho` (a spike counts :math:`1/\rho`), so that the expected
normalised rate of a neuron is :math:`f(v)` and the rate model is the limit of many spikes.

Model
-----
Hidden and output neurons :math:`i = 1..L` keep the three compartments of DFC:

.. math::

    \tau_s \frac{dI^B_i}{dt} &= -I^B_i + \sum_{\text{pre spikes}} \frac{W_i}{\rho_{i-1}}\,\delta(t - t_k)
        \quad(\text{forward synapses, on\_pre}), \qquad v^B_i = I^B_i + b_i\\
    \tau_A \frac{dv^A_i}{dt} &= -v^A_i + Q_i u \quad(\text{apical, summed from the controller})\\
    \tau_v \frac{dv_i}{dt} &= -v_i + v^B_i + v^A_i \quad(\text{soma})\\
    S_i(t) &\sim \text{Poisson}(\rho_i f(v_i)) \quad(\text{spikes; one Bernoulli draw per step})

so :math:`v^B_i = W_i\,\mathrm{PSP}_{i-1} + b_i`, the basal prediction of the somatic drive, with
:math:`\mathrm{PSP}_{i-1}` the presynaptic spike trains filtered with :math:`\tau_s` (unit area,
divided by :math:`\rho`). The output spike trains, filtered with :math:`\tau_r`, are read by an
**analog** PI controller (code form of the rate model, gated on after ``t_settle``):

.. math::

    e = r_L^* - \hat r_L, \quad \tau_u \frac{du^{int}}{dt} = e - \alpha u, \quad u = u^{int} + k_p e,
    \qquad r_L^* = r_L^- + \tfrac{2\lambda}{n_L}(y - r_L^-),

where :math:`r_L^-` is the output's basal prediction :math:`f(v^B_L)` averaged over the last
``t_avg`` ms before the controller starts (the feedforward output of this sample).

Forward plasticity, in the Urbanczik-Senn form (local in space and time):

.. math::

    \frac{dW_i}{dt} = \eta\,\big(S_i(t)/\rho_i - f(v^B_i)\big)\,\mathrm{PSP}_{i-1}(t)^T, \qquad
    \frac{db_i}{dt} = \eta\,\big(S_i(t)/\rho_i - f(v^B_i)\big).

The spike term is applied ``on_post`` (:math:`W \mathrel{+}= \eta\,\mathrm{PSP}_{pre}/\rho_{post}`),
the continuous term every ``dt_plast`` ms. With spikes replaced by their expectations
(:math:`S/\rho \to f(v)`, :math:`\mathrm{PSP} \to r_{i-1}` at steady state) the rule is the rate
model's online DFC rule :math:`\tau_W \dot W_i = (\phi(v_i) - \phi(v^B_i))\,r_{i-1}^T` with
:math:`\phi = f`, :math:`\tau_W = 1/\eta` (``mode='rate'``; tested in ``tests/test_spiking.py``).

The rate limit (``mode='rate'``) uses the same strings: the flag ``spiking`` (0 or 1, in the
namespace) switches the spike generator off and the expected rates on, and the forward synapses
sum :math:`W f(v_{pre})` into ``I_rate`` (filtered with :math:`\tau_s` as the spikes are).

The rate function ``F`` is written as a token in the strings and replaced by
:func:`with_rate_function` (logistic :math:`1/(1+e^{-v})` by default).
"""

from __future__ import annotations

import re

# ---------------------------------------------------------------------------------------------
# Rate function f (positive): F(x) in the strings below
# ---------------------------------------------------------------------------------------------
RATE_FUNCTION = {
    "logistic": "1.0/(1.0 + exp(-({x})))",
    "relu": "clip({x}, 0, inf)",
}


def with_rate_function(code: str, name: str) -> str:
    """Replace every ``F(var)`` token of ``code`` by the rate function ``name`` of ``var``."""
    return re.sub(r"\bF\((\w+)\)", lambda m: RATE_FUNCTION[name].format(x=m.group(1)), code)


# ---------------------------------------------------------------------------------------------
# Input population: Poisson neurons at rho_in * x
# ---------------------------------------------------------------------------------------------
INPUT_EQS = """
fr = x_input(t - t_run0, i) : 1                 # normalised rate x of the current sample, in [0, 1]
dpsp/dt = ((1 - spiking)*fr - psp)/tau_s : 1    # own spike train / rho, filtered (tau_s): PSP_pre
rho : Hz (constant)                             # maximal rate rho_in
n_spk : 1                                       # spikes of the unit's n_pop neurons in this step
"""
INPUT_THRESHOLD = "rand() < spiking*rho*fr*dt"  # inhomogeneous Poisson (Bernoulli per step)
INPUT_RESET = "psp += n_spk/(n_pop*rho*tau_s)"

# ---------------------------------------------------------------------------------------------
# Hidden and output layers: basal, apical, soma; Poisson spikes at rho f(v_soma)
# ---------------------------------------------------------------------------------------------
LAYER_EQS = """
dv_soma/dt = (v_basal + v_apical - v_soma)/tau_v : 1  # soma: both dendrites, leak tau_v
v_basal = I_basal + b : 1                       # basal compartment: prediction of the somatic drive
dI_basal/dt = (I_rate - I_basal)/tau_s : 1      # W PSP_pre: spikes jump it on_pre by w/(rho_pre tau_s)
I_rate : 1                                      # rate mode only: W f(v_pre), summed (0 with spikes)
dv_apical/dt = (I_apical + asleep*noise_A - v_apical)/tau_A : 1  # apical: low-pass of Q u (+ noise in sleep)
I_apical : 1                                    # Q u, summed over the feedback synapses
dnoise_A/dt = -noise_A/tau_bg : 1               # apical background input (sleep networks only, else 0)
asleep = sleep_input(t - t_run0) : 1           # 1 in a sleep sample, 0 in a wake sample
fr = F(v_soma) : 1                              # expected normalised rate f(v_soma)
fr_basal = F(v_basal) : 1                       # basal prediction f(v_B) of the normalised rate
dpsp/dt = ((1 - spiking)*fr - psp)/tau_s : 1    # own spike train / rho, filtered (tau_s): PSP_pre
dr_filt/dt = ((1 - spiking)*fr - r_filt)/tau_r : 1  # own spike train / rho, filtered (tau_r): read by u
t_in = t - T_sample*floor((t + 0.5*dt)/T_sample) : second  # time since the sample started
avg_window = int(t_in >= t_settle - t_avg)*int(t_in < t_settle) : 1  # where r^- is measured
dr_ff/dt = avg_window*fr_basal/t_avg : 1        # r^- of this sample: mean f(v_B) before control
plastic_window = int(t_in >= t_plastic) : 1    # plasticity window of a sample
plastic = learn_input(t - t_run0)*(1 - asleep)*plastic_window : 1  # forward plasticity gate (wake)
db/dt = eta*plastic*((1 - spiking)*fr - fr_basal) : 1  # bias: continuous part of the rule
rho : Hz (constant)                             # maximal rate rho_max
eta : Hz (constant)                             # learning rate 1/tau_W of this layer
n_spk : 1                                       # spikes of the unit's n_pop neurons in this step
"""
LAYER_THRESHOLD = "rand() < spiking*rho*fr*dt"  # inhomogeneous Poisson (Bernoulli per step)
LAYER_RESET = """
psp += n_spk/(n_pop*rho*tau_s)
r_filt += n_spk/(n_pop*rho*tau_r)
b += eta*plastic*n_spk/(n_pop*rho)
"""
LAYER_SAMPLE_START = "r_ff = 0"  # run_regularly every T_sample

# ---------------------------------------------------------------------------------------------
# Population coding (n_pop > 1): a unit is n_pop Poisson neurons that share its compartments
# ---------------------------------------------------------------------------------------------
# With n_pop = 1 a unit fires by the thresholds above and n_spk stays 1. With n_pop = N > 1, each
# step draws the spikes of the unit's N neurons (N independent Bernoulli draws at rho f(v) dt, i.e.
# Binomial(N, rho f dt)) into n_spk before the threshold; the unit emits an event if any neuron
# fired, and every spike effect above is weighted by n_spk / N: the unit's output is the *mean*
# spike train of its N neurons (normalised rate still f(v), variance divided by N).
POP_THRESHOLD = "n_spk > 0"


def population_draw(n_pop: int) -> str:
    """``n_spk``: the sum of ``n_pop`` Bernoulli(rho f dt) draws (run every step before the threshold)."""
    if n_pop < 1:
        raise ValueError(f"n_pop must be >= 1, got {n_pop}")
    draw = "int(rand() < spiking*rho*fr*dt)"  # one statement per neuron (Brian2: one rand() each)
    return "\n".join([f"n_spk = {draw}"] + [f"n_spk += {draw}"] * (n_pop - 1))


# ---------------------------------------------------------------------------------------------
# Controller: analog PI, one unit per output neuron, reads the filtered output spike trains
# ---------------------------------------------------------------------------------------------
CONTROLLER_EQS = """
du_int/dt = gate*(e_out - alpha_now*u)/tau_u : 1  # integral part (code form: the leak acts on u)
u = gate*(u_int + k_p_now*e_out) : 1            # control signal, sent to all apical compartments via Q
e_out = r_star - r_L : 1                        # output error e = r_L* - r_L (`e` is reserved)
r_star = r_ff + (1 - asleep)*lam_eff*(y_input(t - t_run0, i) - r_ff) : 1  # r^- - lambda dL/dr (sleep: r^-)
asleep = sleep_input(t - t_run0) : 1           # 1 in a sleep sample: sleep gains, no target step
k_p_now = (1 - asleep)*k_p + asleep*k_p_sleep : 1
alpha_now = (1 - asleep)*alpha + asleep*alpha_sleep : 1
r_L : 1 (linked)                                # output spike trains, filtered (r_filt of layer L)
r_ff : 1 (linked)                               # output feedforward rate r^- of this sample
t_in = t - T_sample*floor((t + 0.5*dt)/T_sample) : second  # time since the sample started
gate = control_input(t - t_run0)*int(t_in >= t_settle) : 1  # controller on after t_settle
"""
CONTROLLER_SAMPLE_START = "u_int = 0"  # run_regularly every T_sample

# ---------------------------------------------------------------------------------------------
# Synapses
# ---------------------------------------------------------------------------------------------
# Forward W_i (spikes): the presynaptic spike jumps the postsynaptic basal filter; the
# postsynaptic spike applies the spike term of the rule.
FORWARD_SPIKING = "w : 1  # forward weight W_i[post, pre]"
FORWARD_ON_PRE = "I_basal_post += w*n_spk_pre/(n_pop*rho_pre*tau_s)"
FORWARD_ON_POST = "w += eta_post*plastic_post*psp_pre*n_spk_post/(n_pop*rho_post)  # eta S_post PSP_pre / rho"
# Forward W_i (rate limit): W f(v_pre), filtered by tau_s in the postsynaptic group.
FORWARD_RATE = """
w : 1                                           # forward weight W_i[post, pre]
I_rate_post = w*fr_pre : 1 (summed)             # W f(v_pre) (rate mode only)
"""
# Continuous part of the rule, every dt_plast (in rate mode it carries the whole rule).
FORWARD_CONTINUOUS = "w += eta_post*plastic_post*dt_plast*((1 - spiking)*fr_post - fr_basal_post)*psp_pre"

# ---------------------------------------------------------------------------------------------
# Sleep phase (feedback learning): noisy apical compartments, anti-Hebbian Q
# ---------------------------------------------------------------------------------------------
# Every hidden and output neuron receives balanced background Poisson input at its apical
# synapse: excitatory and inhibitory trains at rho_bg each (N_BACKGROUND neurons per polarity,
# Brian2's PoissonInput: a binomial count per step) jump noise_A by +-J_bg and decay with
# tau_bg, so noise_A has mean 0, std sigma = J_bg sqrt(rho_bg tau_bg) and correlation time
# tau_bg (J_bg = SpikingParams.sleep_jump). Sleep and wake are per-sample flags (the TimedArray
# sleep_input, `asleep` in the groups), so one network can alternate them: in a sleep sample the
# noise reaches the apical compartment, the network sees its own input (spikes as usual), forward
# plasticity is off, the controller's target is the feedforward output (lambda = 0, r* = r^-) with
# the sleep gains k_p_sleep, alpha_sleep, and Q learns by the rate model's anti-Hebbian rule on
# the apical voltage, continuously in the sample's plasticity window:
#     dQ_i/dt = eta_Q (-v^A_i u^T / sigma^2 - beta Q_i)      (every dt_plast ms)
# In a wake sample Q is fixed and everything is as in a network without sleep.
N_BACKGROUND = 100  # background neurons per polarity and neuron, each at rho_bg / N_BACKGROUND
FEEDBACK_SLEEP = (
    "Q += eta_Q*asleep_post*plastic_window_post*dt_plast*(-v_apical_post*u_pre/sigma2 - beta_Q*Q)"
)

# Feedback Q_i: continuous coupling through a summed variable, as the gap-junction example.
FEEDBACK = """
Q : 1                                           # feedback weight Q_i[post, controller unit]
I_apical_post = Q*u_pre : 1 (summed)            # apical input Q_i u
"""
