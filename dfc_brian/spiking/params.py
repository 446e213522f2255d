"""Parameters of the spiking DFC network, validated, and the Brian2 namespace built from them.

Times are in milliseconds, rates in Hz; voltages and weights are dimensionless as in the rate
model (``dfc_brian.model``). A config file (``models/spiking/*.yaml``) has the sections ``model``
(sizes, rate function, loss), ``spiking`` (everything below) and optionally ``training``/``data``
(read by :mod:`dfc_brian.spiking.experiments`). Bad values raise :class:`ConfigError` naming the
field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dfc_brian.model.params import ConfigError, check_int, check_nonnegative, check_positive
from dfc_brian.spiking.equations import N_BACKGROUND

RATE_FUNCTIONS = ("logistic", "relu")
MODES = ("spiking", "rate")


@dataclass(frozen=True)
class SpikingParams:
    """Every constant of the spiking DFC network (one sample = one presentation of T_sample ms).

    Sample schedule (``t_in`` = time since the sample started):

    - ``[0, t_settle)``: controller off, plasticity off; the output layer's feedforward rate
      :math:`r_L^-` is the average of :math:`f(v^B_L)` over the last ``t_avg`` ms of this window;
    - at ``t_settle``: target :math:`r_L^* = r_L^- - \\lambda\\, \\partial L/\\partial r_L`, controller on;
    - ``[t_plastic, T_sample)``: plasticity on (if the sample is a training sample).
    """

    sizes: tuple[int, ...]  # layer widths [n_0, ..., n_L]
    rate_function: str = "logistic"  # f: logistic 1/(1+exp(-v)), or relu max(v, 0) (tests)
    loss: str = "mse"  # only mse: L = ||r_L - y||^2 / n_L
    mode: str = "spiking"  # spiking: Poisson spikes; rate: spikes replaced by expected rates
    rho_max: float = 200.0  # Hz, maximal rate of hidden/output neurons: rate = rho_max f(v_soma)
    rho_in: float = 200.0  # Hz, input neurons fire at rho_in * x, x in [0, 1]
    dt: float = 0.1  # ms, integration step
    tau_v: float = 0.5  # ms, somatic time constant
    tau_A: float = 0.5  # ms, apical time constant (low-pass of Q u)
    tau_s: float = 10.0  # ms, synaptic filter of the forward (basal) input and of PSP_pre
    tau_r: float = 30.0  # ms, filter of the output spike trains read by the controller
    tau_u: float = 2.5  # ms, controller time constant
    k_p: float = 6.0  # proportional gain (k_p f' ~ 1.5 for the logistic)
    alpha: float = 0.0015  # controller leak (steady state e = alpha u)
    target_stepsize: float = 1.0  # lambda: r_L* = r_L^- - lambda dL/dr_L
    T_sample: float = 150.0  # ms per sample
    t_settle: float = 40.0  # ms: controller off before this time in a sample
    t_avg: float = 20.0  # ms: r_L^- averaged over [t_settle - t_avg, t_settle)
    t_plastic: float = 70.0  # ms: plasticity off before this time in a sample
    eta: float = 3.0  # 1/s, learning rate of W and b (tau_W = 1/eta)
    eta_hidden_scale: float = 1.0  # eta of the hidden layers = eta * this (0: frozen hidden layers)
    dt_plasticity: float = 0.1  # ms, step of the continuous part of the weight rule
    seed: int = 0  # Brian2 seed (spikes)
    n_pop: int = 1  # neurons per unit (population coding, input units included): shared compartments
    # sleep phase (feedback learning, SpikingDFC(sleep=True)); see equations.SLEEP_*
    sleep_sigma: float = 0.5  # std of the apical background noise (filtered Poisson input)
    sleep_tau_noise: float = 20.0  # ms, apical synaptic filter of the background input (noise correlation)
    sleep_rho_bg: float = 2000.0  # Hz, total rate of the excitatory (and of the inhibitory) background input
    sleep_k_p: float = 1.0  # proportional gain of the controller during sleep
    sleep_alpha: float = 1.0  # leak of the controller during sleep
    sleep_eta_Q: float = 1.0  # 1/s, learning rate of Q
    sleep_beta: float = 0.0  # weight decay of Q

    def __post_init__(self) -> None:
        if len(self.sizes) < 2:
            raise ConfigError(f"model.sizes needs at least 2 entries, got {list(self.sizes)}")
        for k, n in enumerate(self.sizes):
            check_int(f"model.sizes[{k}]", n)
        object.__setattr__(self, "sizes", tuple(int(n) for n in self.sizes))
        if self.rate_function not in RATE_FUNCTIONS:
            raise ConfigError(
                f"model.rate_function = {self.rate_function!r} is unknown; choose one of {RATE_FUNCTIONS}"
            )
        if self.loss != "mse":
            raise ConfigError(f"model.loss = {self.loss!r}: the spiking network supports only 'mse'")
        if self.mode not in MODES:
            raise ConfigError(f"spiking.mode = {self.mode!r} is unknown; choose one of {MODES}")
        for name in ("rho_max", "rho_in", "dt", "tau_v", "tau_A", "tau_s", "tau_r", "tau_u", "T_sample"):
            check_positive(f"spiking.{name}", getattr(self, name))
        for name in ("k_p", "alpha", "target_stepsize", "t_settle", "t_avg", "t_plastic", "eta"):
            check_nonnegative(f"spiking.{name}", getattr(self, name))
        check_nonnegative("spiking.eta_hidden_scale", self.eta_hidden_scale)
        for name in ("sleep_sigma", "sleep_tau_noise", "sleep_rho_bg"):
            check_positive(f"spiking.{name}", getattr(self, name))
        for name in ("sleep_k_p", "sleep_alpha", "sleep_eta_Q", "sleep_beta"):
            check_nonnegative(f"spiking.{name}", getattr(self, name))
        check_positive("spiking.dt_plasticity", self.dt_plasticity)
        check_int("spiking.seed", self.seed, minimum=0)
        object.__setattr__(self, "n_pop", check_int("spiking.n_pop", self.n_pop, minimum=1))
        for name in ("tau_v", "tau_A"):
            if self.dt > getattr(self, name):
                raise ConfigError(f"spiking.dt = {self.dt} ms exceeds spiking.{name} (Euler unstable)")
        if self.rho_max * self.dt * 1e-3 > 0.2 or self.rho_in * self.dt * 1e-3 > 0.2:
            raise ConfigError(
                "spiking.rho_max (or rho_in) * dt > 0.2: at most one spike per step, the Bernoulli "
                "approximation of the Poisson process is poor; lower dt"
            )
        if self.sleep_rho_bg / N_BACKGROUND * self.dt * 1e-3 > 0.2:
            raise ConfigError(
                "spiking.sleep_rho_bg / N_BACKGROUND * dt > 0.2: the background input is not Poisson; "
                "lower dt"
            )
        if not self.t_avg <= self.t_settle <= self.T_sample:
            raise ConfigError("spiking: need t_avg <= t_settle <= T_sample")
        if self.t_plastic > self.T_sample:
            raise ConfigError("spiking.t_plastic exceeds spiking.T_sample")
        ratio = self.dt_plasticity / self.dt
        if abs(ratio - round(ratio)) > 1e-9:
            raise ConfigError("spiking.dt_plasticity must be a multiple of spiking.dt")

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def sleep_jump(self) -> float:
        """Jump of the apical noise per background spike, J_bg = sigma / sqrt(rho_bg tau_bg): balanced
        trains at rho_bg each, filtered with tau_bg, give noise of std sigma."""
        return self.sleep_sigma / (self.sleep_rho_bg * self.sleep_tau_noise * 1e-3) ** 0.5

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> SpikingParams:
        """Build from a config's ``model`` and ``spiking`` sections."""
        if not isinstance(cfg, Mapping) or "model" not in cfg:
            raise ConfigError("config is missing the required section 'model'")
        model = dict(cfg["model"] or {})
        if "sizes" not in model:
            raise ConfigError("config is missing the required key 'model.sizes'")
        unknown_model = sorted(set(model) - {"sizes", "rate_function", "loss"})
        if unknown_model:
            raise ConfigError(f"unknown key(s) in section 'model': {unknown_model}")
        sp = cfg.get("spiking") or {}
        if not isinstance(sp, Mapping):
            raise ConfigError("config section 'spiking' must be a mapping")
        known = {f.name for f in dataclasses.fields(cls)} - {"sizes", "rate_function", "loss"}
        unknown = sorted(set(sp) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) in section 'spiking': {unknown}; known keys: {sorted(known)}")
        return cls(
            sizes=tuple(model["sizes"]),
            **{k: model[k] for k in ("rate_function", "loss") if k in model},
            **sp,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sizes"] = list(self.sizes)
        return d

    def replace(self, **changes: Any) -> SpikingParams:
        return dataclasses.replace(self, **changes)


def namespace(p: SpikingParams) -> dict[str, Any]:
    """The Brian2 namespace (constants with units) of every group of the network."""
    from brian2 import Hz, ms

    L = p.n_layers
    return {
        "tau_v": p.tau_v * ms,
        "tau_A": p.tau_A * ms,
        "tau_s": p.tau_s * ms,
        "tau_r": p.tau_r * ms,
        "tau_u": p.tau_u * ms,
        "k_p": p.k_p,
        "alpha": p.alpha,
        "k_p_sleep": p.sleep_k_p,
        "alpha_sleep": p.sleep_alpha,
        "lam_eff": 2.0 * p.target_stepsize / p.sizes[-1],  # r* = r^- + lam_eff (y - r^-) for the MSE
        "T_sample": p.T_sample * ms,
        "t_settle": p.t_settle * ms,
        "t_avg": p.t_avg * ms,
        "t_plastic": p.t_plastic * ms,
        "dt_plast": p.dt_plasticity * ms,
        "spiking": 1.0 if p.mode == "spiking" else 0.0,
        "n_pop": float(p.n_pop),
        "tau_bg": p.sleep_tau_noise * ms,
        "eta_Q": p.sleep_eta_Q * Hz,
        "beta_Q": p.sleep_beta,
        "sigma2": p.sleep_sigma**2,
        "n_layers": L,
        "eta_out": p.eta * Hz,
        "eta_hid": p.eta * p.eta_hidden_scale * Hz,
    }
