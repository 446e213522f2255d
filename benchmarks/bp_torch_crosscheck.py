"""BP of a Table-1 cell trained again in PyTorch, from our initial weights and minibatch order.

Why: our BP's MNIST train loss (``table1/mnist_trainloss_bp``: the running training loss of the
last epoch) sits on a noisy plateau at 1e-4 to 1e-3 where the paper reports 1.53 ± 0.19 e-7.
This script answers whether our BP is the cause. It trains the same network with PyTorch's own
components, the ones the authors' code is built from (``torch.nn.Linear``, ``torch.tanh``,
``torch.nn.CrossEntropyLoss`` on the linear output, ``torch.optim.Adam``, autograd), in float64,
from the initial weights of ``dfc-brian train <config> --seed S`` on the same 55000/5000 split in
the same minibatch order, and records

1. ``lockstep``: the first ``--lockstep`` steps of both side by side (relative max difference of
   the weights after each step, and of the minibatch losses; PyTorch's losses are stored, and
   ``tests/test_bp_torch.py`` checks our engine against them): the two BP implementations are the
   same map up to round-off;
2. ``torch``: PyTorch alone for ``--epochs`` epochs: per epoch the running training loss (the
   column's number at epoch 100), the training error of the running predictions, and the test
   error, to set beside our run's history (``benchmarks/results/table1/<config>/<seed>``).

With ``--native`` nothing is taken from our engine: PyTorch draws the initial weights
(``torch.manual_seed(seed)``, ``xavier_normal_``, zero biases), the 55000/5000 split of the 60000
training images (``random_split`` with a generator seeded by the seed) and the minibatch order
(``DataLoader(shuffle=True)``), as a PyTorch user would write it; no lockstep part.

Written from the spec (docs) and PyTorch's documentation; no code of the authors. PyTorch is not a
dependency of the project: ``pip install torch`` into any Python 3.11 environment and put it on
``--torch-site`` (or install it into the project's environment). One BLAS / torch thread.

    python benchmarks/bp_torch_crosscheck.py table1/mnist_trainloss_bp --seed 0 --epochs 100 \
        --data-root ../shared/datasets --out benchmarks/results/bp_torch_crosscheck/seed0.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a BP config, e.g. table1/mnist_trainloss_bp")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--lockstep", type=int, default=200, help="steps run side by side with our engine")
    ap.add_argument("--native", action="store_true", help="PyTorch's own init, split and order (no lockstep)")
    ap.add_argument(
        "--lr-scale", type=float, default=1.0, help="multiply the config's lr (a sensitivity run)"
    )
    ap.add_argument("--data-root", default=None)
    ap.add_argument(
        "--torch-site", default=None, help="site-packages folder holding torch, appended to sys.path"
    )
    ap.add_argument("--out", required=True, help="JSON file (written after every epoch)")
    args = ap.parse_args(argv)
    if args.lr_scale != 1.0 and args.lockstep and not args.native:
        raise SystemExit("--lr-scale changes PyTorch's lr only: use it with --native (no lockstep)")
    if args.torch_site:
        sys.path.append(args.torch_site)
    import numpy as np
    import torch

    from dfc_brian.config import load_config
    from dfc_brian.engines.methods import make_method
    from dfc_brian.experiments.data import batches
    from dfc_brian.experiments.results import atomic_write_text, run_metadata
    from dfc_brian.experiments.sweep import expand_configs
    from dfc_brian.experiments.train import load_task

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    cfg = load_config(expand_configs([args.config])[0])
    tr = cfg["training"]
    if tr["method"] != "BP" or tr["optimizer"] != "adam" or cfg["model"]["loss"] != "ce":
        raise SystemExit(f"{args.config}: this check is for BP with Adam and cross-entropy")
    if tr.get("clip") is not None:
        raise SystemExit(f"{args.config}: training.clip is set; this check covers unclipped BP only")
    ds = load_task(cfg, args.seed, args.data_root)
    ours = make_method(cfg, args.seed)  # the initial weights of `dfc-brian train --seed S`
    acts = cfg["model"]["activations"]
    if any(a != "tanh" for a in acts[:-1]) or acts[-1] != "linear":
        raise SystemExit(f"{args.config}: this check is for tanh hidden layers and a linear output")

    torch.manual_seed(args.seed)
    layers = []
    for W, b in zip(ours.weights.W, ours.weights.b, strict=True):
        lin = torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
        with torch.no_grad():
            if args.native:
                torch.nn.init.xavier_normal_(lin.weight)
                torch.nn.init.zeros_(lin.bias)
            else:
                lin.weight.copy_(torch.from_numpy(W))
                lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
    params = [p for lin in layers for p in (lin.weight, lin.bias)]

    def net(x: torch.Tensor) -> torch.Tensor:
        for lin in layers[:-1]:
            x = torch.tanh(lin(x))
        return layers[-1](x)

    opt = torch.optim.Adam(
        params, lr=tr["lr"] * args.lr_scale, betas=tuple(tr["adam_betas"]), eps=tr["adam_eps"]
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    X, y = ds.train.X, ds.train.y
    Xt, yt = torch.from_numpy(ds.test.X), torch.from_numpy(ds.test.y.astype(np.int64))
    rng = np.random.default_rng([args.seed, 1])  # the forward minibatch stream of train()
    if args.native:
        gen = torch.Generator().manual_seed(args.seed)
        full = torch.utils.data.TensorDataset(
            torch.from_numpy(np.concatenate([X, ds.val.X])),
            torch.from_numpy(np.concatenate([y, ds.val.y]).astype(np.int64)),
        )
        train_part, _ = torch.utils.data.random_split(full, [len(X), len(ds.val.X)], generator=gen)
        loader = torch.utils.data.DataLoader(
            train_part, batch_size=int(tr["batch_size"]), shuffle=True, generator=gen
        )

    def epoch_batches():
        if not args.native:
            yield from batches(X, y, int(tr["batch_size"]), rng)
            return
        for xb, yb in loader:
            yield xb.numpy(), yb.numpy()

    def torch_step(xb: np.ndarray, yb: np.ndarray) -> tuple[float, int]:
        opt.zero_grad()
        out = net(torch.from_numpy(xb))
        loss = loss_fn(out, torch.from_numpy(yb.astype(np.int64)))
        loss.backward()
        opt.step()
        wrong = int((out.detach().argmax(1).numpy() != yb).sum())
        return float(loss.item()), wrong

    result = {
        "config": args.config,
        "seed": args.seed,
        "native": args.native,
        "lr_scale": args.lr_scale,
        "torch_version": torch.__version__,
        **run_metadata(),
        "training": {k: tr[k] for k in ("lr", "adam_betas", "adam_eps", "batch_size", "epochs")},
        "n_train": int(len(X)),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    # every epoch: PyTorch's steps; the first --lockstep steps also by our engine, side by side
    steps, dW, dloss, torch_loss = 0, [], [], []
    history = {"epoch": [], "running_loss": [], "running_error": [], "test_error": []}
    t0 = time.perf_counter()
    for ep in range(1, args.epochs + 1):
        epoch_loss, epoch_wrong = [], 0
        for xb, yb in epoch_batches():
            loss_t, wrong = torch_step(xb, yb)
            if steps < args.lockstep and not args.native:
                loss_o = float(ours.train_step(xb, yb)["loss"])
                rel = max(
                    float(np.max(np.abs(p.detach().numpy() - q)) / np.max(np.abs(q)))
                    for p, q in zip(params, ours._forward_params(), strict=True)
                )
                dW.append(rel)
                dloss.append(abs(loss_t - loss_o) / abs(loss_o))
                torch_loss.append(loss_t)
            steps += 1
            epoch_loss.append(loss_t)
            epoch_wrong += wrong
        with torch.no_grad():
            test_err = float(100.0 * np.mean(net(Xt).argmax(1).numpy() != yt.numpy()))
        history["epoch"].append(ep)
        history["running_loss"].append(float(np.mean(epoch_loss)))
        history["running_error"].append(100.0 * epoch_wrong / len(X))
        history["test_error"].append(test_err)
        result["lockstep"] = {
            "steps": len(dW),
            "max_rel_weight_diff": float(max(dW)) if dW else None,
            "rel_weight_diff_at": {str(k): dW[k - 1] for k in (1, 10, 100, len(dW)) if 0 < k <= len(dW)},
            "max_rel_loss_diff": float(max(dloss)) if dloss else None,
            "torch_loss": torch_loss,  # PyTorch's minibatch losses of these steps (tests/test_bp_torch.py)
        }
        result["torch"] = {**history, "wall_time_s": time.perf_counter() - t0}
        atomic_write_text(out, json.dumps(result, indent=1) + "\n")
        print(
            f"epoch {ep}: running loss {history['running_loss'][-1]:.3e}, "
            f"running error {history['running_error'][-1]:.3f} %, test error {test_err:.2f} %",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
