"""Online DFC learning in Brian2: continuous plasticity, one sample after another, with exact resume.

The engine (:class:`~dfc_brian.engines.brian2_engine.BrianDFC`) runs phases; this module is the
training loop around them, as :mod:`dfc_brian.experiments.train` is for the batched methods:

- :class:`OnlineDFC` puts a Brian2 network behind the training-method interface
  (:class:`~dfc_brian.engines.methods.Method`): ``train_step(X, y)`` is one controlled phase with
  continuous plasticity of W and b (``plasticity="online"``, minibatch of 1: the weights change
  from sample to sample), ``feedback_step(X)`` one sleep phase with plasticity of Q, and
  ``state_dict`` / ``load_state_dict`` carry the weights and the number of simulations built
  (which seeds the sleep noise of the next one);
- :func:`train_online` is the epoch loop: every epoch draws a permutation of the samples, then
  (with ``sleep_samples``) the samples of one sleep phase, then presents the permuted samples
  in chunks of ``chunk_size`` (one Brian2 run each; the ``len(X) % chunk_size`` left over are
  skipped that epoch), calls ``evaluate`` and writes a checkpoint in the format of
  :func:`~dfc_brian.experiments.train.train` (``method/...`` arrays, ``loop`` and ``rng`` as
  JSON), from which ``resume=True`` continues to the identical result.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dfc_brian.engines.methods import Method
from dfc_brian.experiments.train import load_loop_checkpoint, save_loop_checkpoint
from dfc_brian.model.params import ConfigError, ModelParams, check_int
from dfc_brian.model.weights import Weights

#: ``run(epoch, kind, n_samples, fn)``: runs ``fn()`` (one Brian2 run of ``kind`` 'sleep' or
#: 'controlled' on ``n_samples`` samples); lets a caller drive its own progress display
RunHook = Callable[[int, str, int, Callable[[], Any]], Any]


class OnlineDFC:
    """A :class:`~dfc_brian.engines.brian2_engine.BrianDFC` network as a training method.

    Parameters
    ----------
    net : BrianDFC
        The network; its ``weights`` are the method's state.
    """

    name = "DFC-online"

    def __init__(self, net: Any) -> None:
        self.net = net

    @property
    def weights(self) -> Weights:
        return self.net.get_weights()

    def train_step(self, X: np.ndarray, y: np.ndarray) -> dict:
        """One controlled phase per sample with continuous plasticity of W and b."""
        self.net.controlled_phase(X, y, plasticity="online")
        return {}

    def feedback_step(self, X: np.ndarray) -> dict:
        """One sleep phase (noisy apical compartments, anti-Hebbian plasticity of Q)."""
        self.net.sleep_phase(X)
        return {}

    def pretrain_feedback_step(self, X: np.ndarray) -> dict:
        return self.feedback_step(X)

    @property
    def params(self) -> ModelParams:
        return self.net.params

    predict = Method.predict  # feedforward output r_L^- of the current weights

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights and ``n_builds`` (the sleep noise of build k is seeded ``seed + k``)."""
        d = self.net.get_weights().to_npz_dict()
        d["n_builds"] = np.array(self.net.n_builds)
        return d

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self.net.set_weights(Weights.from_npz_dict(d, self.net.params.network.n_layers))
        self.net.n_builds = int(d["n_builds"])


def _run(epoch: int, kind: str, n_samples: int, fn: Callable[[], Any]) -> Any:
    return fn()


def train_online(
    net: Any,
    X: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 1,
    chunk_size: int = 100,
    sleep_samples: int = 0,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    evaluate: Callable[[Any], Mapping[str, Any]] | None = None,
    progress: bool = True,
    run: RunHook | None = None,
) -> list[dict]:
    """Online DFC learning of a Brian2 network: each sample for T steps with continuous plasticity.

    Parameters
    ----------
    net : BrianDFC
        The network; trained in place (read the weights back with ``net.get_weights()``).
    X, y : ndarray
        Samples (N, n_0) and targets (N, n_L).
    epochs : int
        Epochs in all (a resumed run continues up to this number).
    chunk_size : int
        Samples per Brian2 run (with cpp_standalone the project is built once and re-run).
    sleep_samples : int
        With > 0, a sleep phase on that many distinct random samples (Q plasticity) precedes
        each epoch (with cpp_standalone, switching phases rebuilds the project).
    seed : int
        Seed of the sample order and of the sleep samples.
    checkpoint : path, optional
        An npz written (atomically) after every epoch.
    resume : bool
        Continue from ``checkpoint``, to the identical result.
    evaluate : callable, optional
        ``evaluate(net) -> dict``, called after every epoch; its entries go into the history.
    progress : bool
        A tqdm bar over the chunks of each epoch.
    run : callable, optional
        ``run(epoch, kind, n_samples, fn)`` around every Brian2 run (default: ``fn()``).

    Returns
    -------
    list of dict
        One row per epoch: ``epoch`` (1-based) and the entries of ``evaluate``.
    """
    from tqdm.auto import tqdm

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    epochs = check_int("epochs", epochs, 0)
    sleep_samples = check_int("sleep_samples", sleep_samples, 0)
    if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or not 1 <= chunk_size <= len(X):
        raise ConfigError(f"chunk_size must be an integer in 1..{len(X)}, got {chunk_size!r}")
    if sleep_samples > len(X):
        raise ConfigError(f"sleep_samples must be at most the {len(X)} samples, got {sleep_samples}")
    chunk_size = int(chunk_size)
    run = _run if run is None else run
    method = OnlineDFC(net)
    rng = np.random.default_rng(seed)
    loop_id = {"seed": int(seed), "chunk_size": chunk_size, "sleep_samples": sleep_samples, "n": len(X)}
    state: dict[str, Any] = {"done": 0, "history": []}
    if resume:
        if checkpoint is None or not Path(checkpoint).exists():
            raise ConfigError(f"resume=True but checkpoint {checkpoint!r} does not exist")
        state = load_loop_checkpoint(checkpoint, method, rng, loop_id, "only epochs may change")

    while state["done"] < epochs:
        ep = state["done"] + 1
        perm = rng.permutation(len(X))
        if sleep_samples:
            idx = rng.choice(len(X), size=sleep_samples, replace=False)
            run(ep, "sleep", sleep_samples, lambda idx=idx: method.feedback_step(X[idx]))
        chunks = range(len(X) // chunk_size)
        for k in tqdm(chunks, desc=f"epoch {ep}/{epochs}", disable=not progress, unit="chunk"):
            idx = perm[k * chunk_size : (k + 1) * chunk_size]
            run(ep, "controlled", chunk_size, lambda idx=idx: method.train_step(X[idx], y[idx]))
        state["history"].append({"epoch": ep, **(dict(evaluate(net)) if evaluate else {})})
        state["done"] = ep
        if checkpoint is not None:
            save_loop_checkpoint(checkpoint, method, loop_id, state, rng)
    return list(state["history"])
