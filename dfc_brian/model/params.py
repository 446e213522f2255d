"""Model parameters of Deep Feedback Control, validated.

Every engine (the Brian2 network and the batched NumPy engine) reads these dataclasses,
built from the same YAML config in ``models/``. Time is measured in units of the
controller time constant :math:`\\tau_u` (the authors' convention); the Brian2 engine maps
one unit to ``tau_u_ms`` milliseconds of simulated time, which changes nothing in the
discretised trajectories.

Names follow the paper (Meulemans et al., NeurIPS 2021) and ``shared/spec/DFC_SPEC.md``.
Bad values raise :class:`ConfigError` naming the offending field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ACTIVATIONS = ("tanh", "linear", "relu")
LOSSES = ("mse", "ce")
CONTROLLER_FORMS = ("code", "slides")


class ConfigError(ValueError):
    """A model or experiment parameter is missing or invalid; the message names the field."""


def check_positive(name: str, value: Any) -> float:
    """``value`` as a float; ConfigError naming ``name`` unless it is positive and finite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be positive and finite, got {value!r}")
    return v


def check_nonnegative(name: str, value: Any) -> float:
    """``value`` as a float; ConfigError naming ``name`` unless it is >= 0 and finite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ConfigError(f"{name} must be non-negative and finite, got {value!r}")
    return v


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int; ConfigError naming ``name`` unless it is an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class NetworkSpec:
    """Architecture of the multilayer network.

    Parameters
    ----------
    sizes : list of int
        Layer widths ``[n_0, n_1, ..., n_L]``; ``n_0`` is the input dimension.
    activations : list of str
        Nonlinearity :math:`\\phi` of layers 1..L (``tanh``, ``linear`` or ``relu``).
        The paper uses tanh in hidden layers and a linear output layer.
    loss : str
        ``mse`` (regression, autoencoder) or ``ce`` (softmax cross-entropy on r_L).
    """

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str = "mse"

    def __post_init__(self) -> None:
        if len(self.sizes) < 2:
            raise ConfigError(f"model.sizes needs at least 2 entries (input, output), got {list(self.sizes)}")
        for k, n in enumerate(self.sizes):
            check_int(f"model.sizes[{k}]", n)
        object.__setattr__(self, "sizes", tuple(int(n) for n in self.sizes))
        if len(self.activations) != len(self.sizes) - 1:
            raise ConfigError(
                f"model.activations has {len(self.activations)} entries but model.sizes defines "
                f"{len(self.sizes) - 1} layers"
            )
        for k, a in enumerate(self.activations):
            if a not in ACTIVATIONS:
                raise ConfigError(f"model.activations[{k}] = {a!r} is unknown; choose one of {ACTIVATIONS}")
        object.__setattr__(self, "activations", tuple(self.activations))
        if self.loss not in LOSSES:
            raise ConfigError(f"model.loss = {self.loss!r} is unknown; choose one of {LOSSES}")

    @property
    def n_layers(self) -> int:
        """Number of layers L (input excluded)."""
        return len(self.sizes) - 1

    @property
    def n_out(self) -> int:
        return self.sizes[-1]


@dataclass(frozen=True)
class ControllerParams:
    """PI controller and the controlled ("forward") phase.

    .. math::
        e(t) = r_L^* - r_L(t), \\quad
        \\tau_u \\frac{du^{int}}{dt} = e(t) - \\alpha u(t), \\quad
        u(t) = u^{int}(t) + k_p e(t)

    (``form='code'``, the authors' code: the leak acts on the total u, K_I = 1). With
    ``form='slides'``: :math:`\\tau_u \\dot u^{int} = e - \\alpha u^{int}`,
    :math:`u = K_I u^{int} + k_p e`.
    """

    k_p: float = 1.0  # proportional gain
    alpha: float = 0.0015  # leak of the controller (steady state e = alpha u)
    dt: float = 0.005  # Euler step, in units of tau_u
    tmax: int = 1000  # number of stored states T, t = 0 (feedforward) included
    tcr: float = 0.2  # tau_v / tau_u, somatic time constant ratio
    target_stepsize: float = 0.05  # lambda: r_L* = r_L^- - lambda dL/dr_L
    form: str = "code"  # 'code' (leak on total u) or 'slides' (leak on u_int, gain K_I)
    K_I: float = 1.0  # integral gain, used by form='slides' only
    proactive: bool = True  # v_A[t+1] uses u[t+1] (True) or u[t] (False)
    instantaneous: bool = True  # layer i sees layer i-1's new rate in the same step
    tau_u_ms: float = 10.0  # physical time unit of the Brian2 engine (ms per unit of tau_u)

    def __post_init__(self) -> None:
        check_nonnegative("controller.k_p", self.k_p)
        check_nonnegative("controller.alpha", self.alpha)
        check_positive("controller.dt", self.dt)
        check_positive("controller.tcr", self.tcr)
        check_int("controller.tmax", self.tmax, minimum=2)
        check_nonnegative("controller.target_stepsize", self.target_stepsize)
        check_nonnegative("controller.K_I", self.K_I)
        check_positive("controller.tau_u_ms", self.tau_u_ms)
        if self.form not in CONTROLLER_FORMS:
            raise ConfigError(f"controller.form = {self.form!r} is unknown; choose one of {CONTROLLER_FORMS}")
        if self.dt > self.tcr:
            raise ConfigError(
                f"controller.dt = {self.dt} is larger than controller.tcr = {self.tcr}: the somatic "
                "Euler step dt/tcr would exceed 1 and the scheme is unstable (the authors' code "
                "silently sets tcr = dt; set tcr >= dt explicitly)"
            )


@dataclass(frozen=True)
class SleepParams:
    """Feedback-learning ("sleep") phase: noisy apical compartments, no output error.

    .. math::
        \\tau_A \\, dv^A_i = (-v^A_i + Q_i u)\\,dt + \\sigma\\, d\\xi, \\qquad
        \\tau_Q \\frac{dQ_i}{dt} = -\\frac{1}{\\tilde\\sigma^2} v^A_i u^T - \\beta Q_i
    """

    sigma: float = 0.01  # std of the apical white noise
    k_p_fb: float = 0.1  # proportional gain during the sleep phase
    alpha_fb: float = 0.25  # controller leak during the sleep phase
    dt_fb: float = 0.002  # Euler step of the sleep phase (units of tau_u)
    tmax_fb: int = 50  # stored states of one sleep simulation
    tcr_fb: float = 0.01  # tau_v / tau_u during the sleep phase
    tau_A: float = 0.3  # apical time constant (units of tau_u)
    sigma_output_fb: float | None = None  # apical noise std of the output layer (None: = sigma)

    def __post_init__(self) -> None:
        check_nonnegative("sleep.sigma", self.sigma)
        if self.sigma_output_fb is not None:
            check_nonnegative("sleep.sigma_output_fb", self.sigma_output_fb)
        check_nonnegative("sleep.k_p_fb", self.k_p_fb)
        check_nonnegative("sleep.alpha_fb", self.alpha_fb)
        check_positive("sleep.dt_fb", self.dt_fb)
        check_int("sleep.tmax_fb", self.tmax_fb, minimum=2)
        check_positive("sleep.tcr_fb", self.tcr_fb)
        check_positive("sleep.tau_A", self.tau_A)
        if self.dt_fb > self.tcr_fb:
            raise ConfigError(
                f"sleep.dt_fb = {self.dt_fb} is larger than sleep.tcr_fb = {self.tcr_fb}: the "
                "somatic Euler step would exceed 1 (unstable)"
            )
        if self.dt_fb > self.tau_A:
            raise ConfigError(
                f"sleep.dt_fb = {self.dt_fb} is larger than sleep.tau_A = {self.tau_A} (unstable)"
            )

    def sigma_layers(self, n_layers: int) -> tuple[float, ...]:
        """Apical noise std of layers 1..L: ``sigma`` in hidden layers, ``sigma_output_fb`` (if
        set) in the output layer (0 in the authors' autoencoder configs)."""
        out = self.sigma if self.sigma_output_fb is None else self.sigma_output_fb
        return (self.sigma,) * (n_layers - 1) + (out,)

    @property
    def sigma_tilde(self) -> float:
        """Normaliser of the anti-Hebbian rule, max(sigma, 0.01) as in the authors' code."""
        return max(self.sigma, 0.01)

    def as_controller(self, base: ControllerParams) -> ControllerParams:
        """Controller parameters of the sleep phase (no target step, no error)."""
        return dataclasses.replace(
            base,
            k_p=self.k_p_fb,
            alpha=self.alpha_fb,
            dt=self.dt_fb,
            tmax=self.tmax_fb,
            tcr=self.tcr_fb,
            target_stepsize=0.0,
        )


@dataclass(frozen=True)
class ConvergenceParams:
    """Which samples count as converged (spec section 2)."""

    tol: float = 1e-5  # ||r_L[T-1] - (r_L* - alpha u[T-1])|| / ||r_L^-|| < tol
    epsilon: float = 0.5  # ||e[T-1]|| < epsilon^2 ||e[0]||
    include_nonconverged: bool = False  # if True, every sample contributes its update

    def __post_init__(self) -> None:
        check_positive("convergence.tol", self.tol)
        check_positive("convergence.epsilon", self.epsilon)


@dataclass(frozen=True)
class ModelParams:
    """Everything that defines the DFC dynamics of one network."""

    network: NetworkSpec
    controller: ControllerParams = field(default_factory=ControllerParams)
    sleep: SleepParams = field(default_factory=SleepParams)
    convergence: ConvergenceParams = field(default_factory=ConvergenceParams)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> ModelParams:
        """Build from the ``model``, ``controller``, ``sleep`` and ``convergence`` sections."""
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"config must be a mapping, got {type(cfg).__name__}")
        if "model" not in cfg:
            raise ConfigError("config is missing the required section 'model'")
        model = cfg["model"]
        if not isinstance(model, Mapping):
            raise ConfigError("config section 'model' must be a mapping")
        for key in ("sizes", "activations"):
            if key not in model:
                raise ConfigError(f"config is missing the required key 'model.{key}'")
        network = _build(NetworkSpec, "model", {k: v for k, v in model.items()})
        return cls(
            network=network,
            controller=_build(ControllerParams, "controller", cfg.get("controller", {})),
            sleep=_build(SleepParams, "sleep", cfg.get("sleep", {})),
            convergence=_build(ConvergenceParams, "convergence", cfg.get("convergence", {})),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "model": dataclasses.asdict(self.network),
            "controller": dataclasses.asdict(self.controller),
            "sleep": dataclasses.asdict(self.sleep),
            "convergence": dataclasses.asdict(self.convergence),
        }
        out["model"]["sizes"] = list(self.network.sizes)
        out["model"]["activations"] = list(self.network.activations)
        return out


def _build(cls: type, section: str, values: Any) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section '{section}' must be a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in section '{section}': {unknown}; known keys: {sorted(known)}")
    kwargs = dict(values)
    if "sizes" in kwargs:
        kwargs["sizes"] = tuple(kwargs["sizes"])
    if "activations" in kwargs:
        kwargs["activations"] = tuple(kwargs["activations"])
    return cls(**kwargs)
