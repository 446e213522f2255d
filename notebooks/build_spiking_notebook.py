# ruff: noqa: E501  (long lines are notebook source strings)
"""Write ``notebooks/spiking_dfc.ipynb`` (outputs empty), in the pattern of ``build_notebooks.py``.

Run ``.venv/bin/python notebooks/build_spiking_notebook.py``. QUICK (``DFC_QUICK=1``, default):
one sample of the spiking student on the numpy target (seconds) and the committed learning
results of ``figures/spiking/``; ``DFC_QUICK=0`` recomputes the learning results (minutes,
cpp_standalone).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """import os
from pathlib import Path

import numpy as np

from dfc_brian.plotting import use_style

QUICK = os.environ.get("DFC_QUICK", "1") == "1"  # 0: recompute the learning results (minutes)
ROOT = Path.cwd() if (Path.cwd() / "dfc_brian").is_dir() else Path.cwd().parent
RESULTS = ROOT / "figures" / "spiking"
OUT = RESULTS / "quick" if QUICK else RESULTS
OUT.mkdir(parents=True, exist_ok=True)
use_style()
print("QUICK =", QUICK, "-> figures in", OUT)"""

CELLS = [
    (
        "md",
        "# Spiking DFC (issue 11)\n\n"
        "The DFC network with **spiking** hidden and output neurons (Brian2): each neuron keeps its basal, "
        "apical and somatic compartments and fires as an inhomogeneous Poisson process at "
        "$\\rho_{max} f(v_{soma})$ (logistic $f$). Forward synapses carry spikes into the basal compartment "
        "through a synaptic filter $\\tau_s$, so $v^B$ predicts the somatic drive; an analog PI controller "
        "reads the output spike trains filtered with $\\tau_r$ and drives the apical compartments through "
        "$Q$ (fixed to the weight product). Forward plasticity in the Urbanczik-Senn form "
        "$\\dot W = \\eta\\,(S_{post}/\\rho - f(v^B))\\,\\mathrm{PSP}_{pre}$, whose rate limit is DFC's online "
        "rule. Config: `models/spiking/toy_student_teacher.yaml` (15-10-10-5).",
    ),
    ("code", SETUP),
    (
        "md",
        "## A few samples: spikes, compartments, controller\n\n"
        "Top: raster of every layer. Middle: $v^B$ (dotted), $v^A$ (dashed), $v$ (solid) of two neurons of "
        "hidden layer 1 and of the output layer. Bottom: control $u$, filtered output $\\hat r_L$ and target "
        "$r^*$; the controller starts after `t_settle` (40 ms), plasticity after `t_plastic` (70 ms).",
    ),
    (
        "code",
        "from dfc_brian.spiking.experiments import demo, save\n"
        "from dfc_brian.spiking.plotting import plot_demo\n\n"
        "res = demo(quick=QUICK)\n"
        "save(res, OUT / 'spiking_demo')\n"
        "fig = plot_demo(res)\n"
        "fig.savefig(OUT / 'spiking_demo.png')\nfig",
    ),
    (
        "md",
        "## Student-teacher, online: spiking vs rate vs untrained\n\n"
        "Test loss of the expected output of the learned weights, mean and range over 3 seeds; *rate* is "
        "the same network with spikes replaced by their expected rates. QUICK shows the committed results "
        "(`figures/spiking/student_teacher.*`); `DFC_QUICK=0` recomputes them (cpp_standalone).",
    ),
    (
        "code",
        "from dfc_brian.spiking.experiments import student_teacher\n"
        "from dfc_brian.spiking.plotting import plot_learning\n\n"
        "if QUICK:\n"
        "    st = dict(np.load(RESULTS / 'student_teacher.npz'))\n"
        "else:\n"
        "    st = student_teacher()\n"
        "    save(st, OUT / 'student_teacher')\n"
        "for m in ('spiking', 'rate'):\n"
        "    print(m, 'final test loss per seed:', np.round(st[f'{m}_final'], 4))\n"
        "print('untrained:', np.round(st['untrained_test_loss'], 4))\n"
        "fig = plot_learning(st)\n"
        "fig.savefig(OUT / 'student_teacher.png')\nfig",
    ),
    (
        "md",
        "## The plausibility trade-off: maximal rate and time per sample\n\n"
        "Test loss after 150 online samples against $\\rho_{max}$ (input and network) for several "
        "presentation times (controller and plasticity windows scaled with it), seed 0.",
    ),
    (
        "code",
        "from dfc_brian.spiking.experiments import tradeoff\n"
        "from dfc_brian.spiking.plotting import plot_tradeoff\n\n"
        "if QUICK:\n"
        "    to = dict(np.load(RESULTS / 'tradeoff.npz'))\n"
        "else:\n"
        "    to = tradeoff()\n"
        "    save(to, OUT / 'tradeoff')\n"
        "fig = plot_tradeoff(to)\n"
        "fig.savefig(OUT / 'tradeoff.png')\nfig",
    ),
    (
        "md",
        "## MNIST 784-256-10, online: spiking vs rate vs hidden layer frozen\n\n"
        "1000 online samples of 150 ms; the rate network runs the identical protocol (same samples, "
        "initial weights, windows and $\\eta$) with spikes replaced by expected rates. Committed results "
        "only (`figures/spiking/mnist*.json`; about 10 minutes each on cpp_standalone).",
    ),
    (
        "code",
        "import json\n\n"
        "from dfc_brian.spiking.plotting import plot_mnist\n\n"
        "mn = json.loads((RESULTS / 'mnist.json').read_text())\n"
        "rate_path = RESULTS / 'mnist_rate.json'\n"
        "if rate_path.exists():\n"
        "    rt = json.loads(rate_path.read_text())\n"
        "    mn.update({f'rate_{k}': rt[k] for k in ('samples', 'test_accuracy', 'final_test_accuracy')})\n"
        "for tag in ('full', 'frozen_hidden', 'rate'):\n"
        "    if f'{tag}_final_test_accuracy' in mn:\n"
        "        print(tag, 'final test accuracy:', mn[f'{tag}_final_test_accuracy'])\n"
        "fig = plot_mnist(mn)\n"
        "fig.savefig(OUT / 'mnist.png')\nfig",
    ),
    (
        "md",
        "## Population coding: the noise lever\n\n"
        "Each unit is $N$ Poisson neurons sharing its compartments; its output is their mean spike train. "
        "Left: final test loss of the student-teacher task (3 seeds) against $N$, beside the rate limit. "
        "Right: RMS of $r^* - \\hat r_L$ under control against $N$, with the shot noise of the "
        "$\\tau_r$-filtered train $\\sqrt{f/(2N\\rho\\tau_r)}$. Committed results "
        "(`figures/spiking/population.*`); `DFC_QUICK=0` recomputes them.",
    ),
    (
        "code",
        "from dfc_brian.spiking.experiments import population\n"
        "from dfc_brian.spiking.plotting import plot_population\n\n"
        "if QUICK:\n"
        "    po = dict(np.load(RESULTS / 'population.npz'))\n"
        "else:\n"
        "    po = population()\n"
        "    save(po, OUT / 'population')\n"
        "for n in po['n_pop']:\n"
        "    print(f'N = {n}: test loss', np.round(po[f'pop{n}_final_test_loss'], 4), 'gap closed',\n"
        "          np.round(po[f'pop{n}_gap_closed'], 3))\n"
        "fig = plot_population(po)\n"
        "fig.savefig(OUT / 'population.png')\nfig",
    ),
    (
        "md",
        "## Sleep phase with spikes: learning Q\n\n"
        "Q starts random; the apical compartments receive balanced background Poisson input, the "
        "controller's target is the network's own output and Q follows the anti-Hebbian rule "
        "$\\dot Q_i = \\eta_Q(-v^A_i u^T/\\sigma^2 - \\beta Q_i)$. Angle between Q and $J^T$ against sleep "
        "samples, spiking and rate limit (`figures/spiking/sleep.*`).",
    ),
    (
        "code",
        "from dfc_brian.spiking.experiments import sleep\n"
        "from dfc_brian.spiking.plotting import plot_sleep\n\n"
        "if QUICK:\n"
        "    sl = dict(np.load(RESULTS / 'sleep.npz'))\n"
        "else:\n"
        "    sl = sleep(**json.loads((RESULTS / 'sleep.json').read_text())['call'])\n"
        "    save(sl, OUT / 'sleep')\n"
        "fig = plot_sleep(sl)\n"
        "fig.savefig(OUT / 'sleep.png')\nfig",
    ),
]


def build() -> Path:
    nb = new_notebook()
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = HERE / "spiking_dfc.ipynb"
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    print(build())
