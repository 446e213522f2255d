# ruff: noqa: E501  (long lines are notebook source strings)
"""Write the thin notebooks of ``notebooks/`` (outputs empty) with nbformat.

Run ``.venv/bin/python notebooks/build_notebooks.py`` after changing a cell here; every
notebook imports the package, reads ``DFC_QUICK`` (default 1: seconds-long settings that the
notebook tests run; 0: the full-size figure), calls one function and saves its figure under
``figures/`` (QUICK: ``figures/quick/``, so committed full-size figures are not overwritten).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """import os
from pathlib import Path

from dfc_brian.plotting import use_style

QUICK = os.environ.get("DFC_QUICK", "1") == "1"  # 0: full-size figure (see figures/README.md)
ROOT = Path.cwd() if (Path.cwd() / "dfc_brian").is_dir() else Path.cwd().parent
OUT = ROOT / "figures" / ("quick" if QUICK else "")
OUT.mkdir(parents=True, exist_ok=True)
use_style()
print("QUICK =", QUICK, "-> figures in", OUT)"""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "fig1d_controller": [
        (
            "md",
            "# Fig. 1D: the PI controller drives the output to its target\n\n"
            "Settings of `models/toy/fig1d.yaml` (the authors' `config_fig1D`). Student 15-10-10-1 "
            "(tanh, tanh, linear); Q starts xavier-normal and is pre-trained for 50 sleep-only epochs "
            "(SGD lr 0.1, batched engine; QUICK: 25 epochs on 256 inputs); the trained network then runs "
            "its controlled phase in **Brian2** (numpy target): PI control with $k_p = 1$, "
            "$\\alpha = 0.0015$, $dt = 0.005$, $t_{cr} = 0.2$, $\\lambda = 0.05$, $T = 2000$ "
            "(QUICK: 400), three student-teacher samples. Top: $r_L(t)$ and its target $r_L^*$ "
            "(dashed); bottom: the control signal $u(t)$. At steady state $r_L = r_L^* - \\alpha u$.",
        ),
        ("code", SETUP),
        (
            "code",
            "from dfc_brian.experiments.toy import fig1d, save\n\n"
            "res = fig1d(quick=QUICK)\n"
            "save(res, OUT / 'fig1d_controller')\n"
            "print('Q before / after pre-training:', res['q_before'], res['q_after'])\n"
            "print('|r_L(T) - (r* - alpha u(T))| =', res['steady_residual'])\n"
            "print(f\"{res['wall_pretrain_s']:.1f} s pre-training, {res['wall_s']:.1f} s Brian2\")",
        ),
        (
            "code",
            "from dfc_brian.plotting.figures import plot_controller\n\n"
            "fig = plot_controller(res['t'], res['r_L'], res['r_star'], res['u'])\n"
            "fig.savefig(OUT / 'fig1d_controller.png')\nfig",
        ),
    ],
    "compartments": [
        (
            "md",
            "# Compartment voltages during the controlled and the sleep phase\n\n"
            "Brian2 recordings (numpy target) of the basal ($v^B = W r + b$), apical "
            "($v^A = Q u$, noisy low-pass filter in the sleep phase) and somatic voltages "
            "of neurons 0 and 1 of every layer of the 15-10-10-5 student, Q fixed to the "
            "weight product. Controlled phase: target step $\\lambda = 0.3$ (6x Fig. 1D, so "
            "that the apical input is visible), $T = 2000$ steps (QUICK: 400). Sleep phase: "
            "no output error, apical noise $\\sigma = 0.01$, the sleep controller, shown for "
            "1000 steps (QUICK: 250; training uses 50).",
        ),
        ("code", SETUP),
        (
            "code",
            "from dfc_brian.experiments.toy import compartments, save\n\n"
            "res = compartments(quick=QUICK)\n"
            "save(res, OUT / 'compartments')\n"
            "print(f\"Brian2 wall time {res['wall_s']:.1f} s\")",
        ),
        (
            "code",
            "from dfc_brian.plotting.figures import plot_compartments\n\n"
            "figs = {}\n"
            "for phase in ('controlled', 'sleep'):\n"
            "    d = res[phase]\n"
            "    traces = {f'L{i} {var}': d[f'{var}.layer{i}'] for i in (1, 2, 3)\n"
            "              for var in ('v_basal', 'v_apical', 'v_soma')}\n"
            "    traces['u'] = d['u']\n"
            "    figs[phase] = plot_compartments(d['t'], traces, title=f'{phase} phase (neurons 0, 1)')\n"
            "    figs[phase].savefig(OUT / f'compartments_{phase}.png')\n"
            "figs['controlled']",
        ),
        ("code", "figs['sleep']"),
    ],
    "fig2_feedback_geometry": [
        (
            "md",
            "# Fig. 2: geometry of stable feedback matrices\n\n"
            "Net 5-2-2: random stable $Q = J^T M$ (2000; QUICK: 200) against $J^T$, $J^+$ and "
            "the damped pseudo-inverses $J^T (J J^T + \\gamma I)^{-1}$, PCA(2) of the "
            "normalised matrices (`dfc_brian.analysis.fig2`).",
        ),
        ("code", SETUP),
        (
            "code",
            "from dfc_brian.analysis.fig2 import fig2_experiment\n\n"
            "res = fig2_experiment(n_samples=200 if QUICK else 2000, seed=0)\n"
            "print(f'acceptance rate of stable Q: {res.acceptance_rate:.3f}')",
        ),
        (
            "code",
            "from dfc_brian.plotting.figures import plot_fig2\n\n"
            "fig = plot_fig2(res)\nfig.savefig(OUT / 'fig2_feedback_geometry.png')\nfig",
        ),
    ],
    "fig3_toy_training": [
        (
            "md",
            "# Fig. 3: student-teacher training, conditions and alignment per epoch\n\n"
            "The authors' settings (`models/toy/fig3_*.yaml`, from their `configs_fig3`): student "
            "15-10-10-5, unscaled teacher outputs, SGD lr$_{eff}$ 1.0, clip 1.0, proactive off, "
            "non-converged samples included; trained Q: 50 sleep-only pre-training epochs (SGD lr 0.1), "
            "then per epoch one sleep epoch (SGD lr 0.002), one forward epoch and 2 sleep epochs. "
            "Methods: DFC, DFC-SS, DFC-SSA, their fixed-Q versions and DFA (target-based); no BP, as in "
            "the paper (`fig3(methods=(..., 'BP'))` adds it). Per epoch on a fixed minibatch of 128 test "
            "samples: condition 2, condition 1, $\\lambda_{max}$ of the linearised PI-controlled network "
            "and the angles of each method's update to the damped MN, GN (the configs' "
            "`analysis.gn_damping`: $\\gamma = 0.1$, DFA 0) and SSA updates; the test loss on the whole "
            "test set (1000 samples). QUICK: 2 epochs of 256 samples, $T = 200$, 1 pre-training epoch. "
            "Full: `DFC_FIG3_EPOCHS` epochs (default 300) of 5000 samples, $T = 1000$.",
        ),
        ("code", SETUP),
        (
            "code",
            "from dfc_brian.experiments.toy import FIG3_METHODS, fig3, load_fig3, merge_fig3, save\n\n"
            "EPOCHS = None if QUICK else int(os.environ.get('DFC_FIG3_EPOCHS', '300'))\n"
            "# DFC_FIG3_PARTS=folder: join parts run in parallel processes with\n"
            "#   python -m dfc_brian.experiments.toy fig3 --methods ... --out folder/part --checkpoint-dir ...\n"
            "PARTS = None if QUICK else os.environ.get('DFC_FIG3_PARTS')\n"
            "if PARTS:\n"
            "    parts = sorted((ROOT / PARTS).glob('*.npz'))  # a relative folder is read from the repository root\n"
            "    res = merge_fig3([load_fig3(p.with_suffix('')) for p in parts])\n"
            "else:\n"
            "    res = fig3(FIG3_METHODS, epochs=EPOCHS, quick=QUICK, seed=0, progress=not QUICK)\n"
            "save(res, OUT / 'fig3_toy_training')\n"
            "print({k: round(v, 1) for k, v in res['wall_s'].items()})",
        ),
        (
            "code",
            "from dfc_brian.plotting.figures import plot_training_curves\n\n"
            "metrics = ['condition_2', 'condition_1', 'lambda_max', 'angle_MN', 'angle_GN', 'angle_SSA']\n"
            "ylabels = ['condition 2', r'condition 1 (dev$_r$)', r'$\\lambda_{max}$',\n"
            "           'angle to MN (deg)', 'angle to GN (deg)', 'angle to SSA (deg)']\n"
            "fig = plot_training_curves(res['metrics'], metrics, ylabels)\n"
            "fig.savefig(OUT / 'fig3_toy_training.png')\nfig",
        ),
        (
            "code",
            "fig_loss = plot_training_curves(res['metrics'], ['test_loss_full', 'frac_nonconverged'],\n"
            "                                ['test loss (MSE, 1000 samples)', 'non-converged fraction'],\n"
            "                                logy=['test_loss_full'], ncols=2)\n"
            "fig_loss.savefig(OUT / 'fig3_toy_loss.png')\nfig_loss",
        ),
    ],
    "figS2_S4_feedback_learning": [
        (
            "md",
            "# Figs. S2-S4: feedback learning aligns Q with damped pseudo-inverses\n\n"
            "The authors' settings (`models/toy/figS2_S4_tanh.yaml`, `figS2_S4_linear.yaml`, from their "
            "`configs_figC2C3`): student 20-10-5 with a tanh or a linear hidden layer, forward weights "
            "frozen, 25 sleep-only epochs (5000 inputs, batch 128, SGD lr 0.1, weight decay 0.01), sleep "
            "phase of $T_{fb} = 300$ steps of $dt = 0.001$, $t_{cr,fb} = 0.005$, $\\tau_A = 0.3$, "
            "$\\sigma = 0.01$. Angle between Q and $J^T (J J^T + \\gamma I)^{-1}$ (mean over 128 test "
            "inputs) per epoch: S2 varies $\\gamma$ ($\\alpha_{fb} = 0.5$, $k_{p,fb} = 0$), S3 varies "
            "$\\alpha_{fb}$ ($k_{p,fb} = 0.3$, $\\gamma = 5$), S4 varies $k_{p,fb}$ "
            "($\\alpha_{fb} = 0.1$, $\\gamma = 5$). QUICK: 25 epochs on 256 inputs.",
        ),
        ("code", SETUP),
        (
            "code",
            "from dfc_brian.experiments.toy import feedback_learning, save\n\n"
            "res = feedback_learning(quick=QUICK)\n"
            "save(res, OUT / 'figS2_S4_feedback_learning')\n"
            "print('runs', res['n_runs'], {k: round(v, 1) for k, v in res['wall_s'].items()}, 's')",
        ),
        (
            "code",
            "from dfc_brian.plotting.figures import plot_angle_panels\n\n"
            "names = {'fig_S2': ('S2', 'gamma'), 'fig_S3': ('S3', 'alpha_fb'), 'fig_S4': ('S4', 'k_p_fb')}\n"
            "ylabel = r'angle of Q to $J^T(JJ^T+\\gamma I)^{-1}$ (deg)'\n"
            "figs = {}\n"
            "for key, (tag, var) in names.items():\n"
            "    panels = {f'{v} hidden layer': dict(zip(p['labels'], p['angle'], strict=True))\n"
            "              for v, p in res['panels'][key].items()}\n"
            "    figs[tag] = plot_angle_panels(res['epochs'], panels, ylabel, xlabel='sleep-only epoch',\n"
            "                                  title=f'Fig. {tag}: {var} varies')\n"
            "    figs[tag].savefig(OUT / f'fig{tag}_feedback_{var}.png')\n"
            "figs['S2']",
        ),
        ("code", "figs['S3']"),
        ("code", "figs['S4']"),
    ],
    "table1": [
        (
            "md",
            "# Table 1: computer-vision results\n\n"
            "Assembles finished training runs (`runs/**/results.json`, written by `dfc-brian sweep` or "
            "`dfc-brian train`) with `dfc_brian.experiments.table1`: mean ± std over seeds with n, beside "
            "the published numbers, and the difference in units of the published std. Runs shorter than "
            "the paper's get rows of their own. Without runs it shows the published table and how to "
            "produce ours. (Nothing is trained here: a paper-scale run takes hours.)",
        ),
        ("code", SETUP),
        (
            "code",
            "from IPython.display import Markdown, display\n\n"
            "from dfc_brian.experiments.table1 import aggregate, collect_runs, plot_table, table_markdown\n\n"
            "runs_dir = ROOT / 'runs'\n"
            "data = aggregate(collect_runs(runs_dir) if runs_dir.is_dir() else {})\n"
            "md = table_markdown(data)\n"
            "if not any(e['values'] for row in data['rows'].values() for e in row.values()):\n"
            "    print(f'No finished runs under {runs_dir}: the table shows the published numbers only.\\n'\n"
            "          'To produce ours (every cell, seeds 0-4, all cores, resumable):\\n'\n"
            "          \"  dfc-brian sweep 'table1/*' --seeds 0-4 --runs runs\\n\"\n"
            "          'then re-run this notebook (or: dfc-brian table runs).')\n"
            "(OUT / 'table1.md').write_text(md)\n"
            "fig = plot_table(data)\n"
            "fig.savefig(OUT / 'table1.png')\n"
            "display(Markdown(md))\n"
            "fig",
        ),
    ],
}


def build() -> list[Path]:
    """Write every notebook of :data:`NOTEBOOKS` next to this file; returns their paths."""
    paths = []
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
        path = HERE / f"{name}.ipynb"
        nbformat.write(nb, path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in build():
        print("wrote", p)
