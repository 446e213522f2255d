"""Our BP against PyTorch's, on the real MNIST train-loss cell: the same map step by step.

``benchmarks/bp_torch_crosscheck.py`` trained ``table1/mnist_trainloss_bp`` (seed 0) in PyTorch
(``nn.Linear``, ``tanh``, ``nn.CrossEntropyLoss``, ``optim.Adam``, autograd; float64) from our
initial weights in our minibatch order and stored PyTorch's minibatch losses of the first steps.
Here our engine takes the same steps and must give the same losses: each loss depends on every
earlier update, so a wrong gradient, Adam step, bias correction, loss or minibatch order fails
it. (PyTorch is not needed here: its numbers are read from the committed JSON.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from dfc_brian.config import load_config
from dfc_brian.engines.methods import make_method
from dfc_brian.experiments.data import batches
from dfc_brian.experiments.sweep import expand_configs
from dfc_brian.experiments.train import load_task

ROOT = Path(__file__).resolve().parents[1]
XC = ROOT / "benchmarks" / "results" / "bp_torch_crosscheck" / "mnist_trainloss_bp_seed0.json"
DATA = Path(os.environ.get("DFC_DATA", ROOT.parent / "shared" / "datasets"))
N_STEPS = 40


@pytest.mark.skipif(
    not (DATA / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file(),
    reason="needs the MNIST files ($DFC_DATA)",
)
def test_bp_steps_equal_pytorch_on_mnist():
    xc = json.loads(XC.read_text())
    torch_loss = np.asarray(xc["lockstep"]["torch_loss"][:N_STEPS])
    assert len(torch_loss) == N_STEPS and not xc["native"]
    cfg = load_config(expand_configs([xc["config"]])[0])
    seed = int(xc["seed"])
    ds = load_task(cfg, seed, DATA)
    method = make_method(cfg, seed)
    rng = np.random.default_rng([seed, 1])  # train()'s forward minibatch stream
    steps = zip(range(N_STEPS), batches(ds.train.X, ds.train.y, int(cfg["training"]["batch_size"]), rng))
    ours = np.array([method.train_step(xb, yb)["loss"] for _, (xb, yb) in steps])
    assert torch_loss[0] > 2.0 and torch_loss[-1] < 1.0  # the steps learn: a loss that moves
    np.testing.assert_allclose(ours, torch_loss, rtol=1e-12, atol=0)
