"""dfc-brian: Deep Feedback Control as a continuous-time neuroscience model in Brian2."""

from dfc_brian.model.params import (
    ConfigError,
    ControllerParams,
    ConvergenceParams,
    ModelParams,
    NetworkSpec,
    SleepParams,
)
from dfc_brian.model.weights import Weights, init_weights, weight_product_Q

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ControllerParams",
    "ConvergenceParams",
    "ModelParams",
    "NetworkSpec",
    "SleepParams",
    "Weights",
    "init_weights",
    "weight_product_Q",
]
