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
            "Student 15-10-10-1 (tanh, tanh, linear) simulated in **Brian2** (numpy target), "
            "PI control with $k_p = 1$, $\\alpha = 0.0015$, $dt = 0.005$, $t_{cr} = 0.2$, "
            "$\\lambda = 0.05$, $T = 2000$ (QUICK: 400), three student-teacher samples. "
            "Top: $r_L(t)$ and its target $r_L^*$ (dashed); bottom: the control signal $u(t)$. "
            "At steady state $r_L = r_L^* - \\alpha u$.",
        ),
        ("code", SETUP),
        (
            "code",
            "from dfc_brian.experiments.toy import fig1d, save\n\n"
            "res = fig1d(quick=QUICK)\n"
            "save(res, OUT / 'fig1d_controller')\n"
            "print('|r_L(T) - (r* - alpha u(T))| =', res['steady_residual'], "
            "f\"({res['wall_s']:.1f} s Brian2)\")",
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
            "Student 15-10-10-5 trained with the batched engine by DFC, DFC-SS, DFC-SSA, "
            "their fixed-Q versions and DFA (`models/toy/fig3_*.yaml`). Per epoch on a fixed "
            "test minibatch: condition 2, condition 1, $\\lambda_{max}$ of the linearised "
            "PI-controlled network (`theory.lambda_max_pi(form='network')`, the exact "
            "linearisation of the dynamics the engines simulate) and the angles of each "
            "method's update to the damped MN, GN ($\\gamma = \\alpha$) and SSA updates. "
            "QUICK: 2 epochs of 256 samples, $T = 200$. Full: `DFC_FIG3_EPOCHS` epochs "
            "(default 300) of 5000 samples, $T = 1000$.",
        ),
        ("code", SETUP),
        (
            "code",
            "from dfc_brian.experiments.toy import FIG3_METHODS, fig3, save\n\n"
            "EPOCHS = None if QUICK else int(os.environ.get('DFC_FIG3_EPOCHS', '300'))\n"
            "res = fig3(FIG3_METHODS, epochs=EPOCHS, quick=QUICK, seed=0)\n"
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
            "fig_loss = plot_training_curves(res['metrics'], ['test_loss', 'frac_nonconverged'],\n"
            "                                ['test loss (MSE)', 'non-converged fraction'],\n"
            "                                logy=['test_loss'], ncols=2)\n"
            "fig_loss.savefig(OUT / 'fig3_toy_loss.png')\nfig_loss",
        ),
    ],
    "figS2_S4_feedback_learning": [
        (
            "md",
            "# Figs. S2-S4: feedback learning aligns Q with damped pseudo-inverses\n\n"
            "Student 20-10-5, sleep phases only (batched engine, forward weights frozen). "
            "Angle between Q and $J^T (J J^T + \\gamma I)^{-1}$ over sleep iterations: "
            "S2 for several $\\gamma$ at the Fig. 3 sleep parameters "
            "($\\alpha_{fb} = 0.25$, $k_{p,fb} = 0.1$), S3 for several $\\alpha_{fb}$, S4 for "
            "several $k_{p,fb}$. QUICK: 30 iterations of 32 samples; full: 3000 of 128.",
        ),
        ("code", SETUP),
        (
            "code",
            "from dfc_brian.experiments.toy import feedback_learning, save\n\n"
            "res = feedback_learning(quick=QUICK, alpha_fb_list=(0.1, 0.25, 1.0), kp_fb_list=(0.0, 0.1, 0.5))\n"
            "save(res, OUT / 'figS2_S4_feedback_learning')\n"
            "print(f\"{res['wall_s']:.1f} s\")",
        ),
        (
            "code",
            "from dfc_brian.plotting.figures import plot_training_curves\n\n"
            "it, runs = res['iterations'], res['runs']\n"
            "gam = [f'gamma={g:g}' for g in res['gammas']]\n"
            "base = runs['alpha_fb=0.25, k_p_fb=0.1']\n"
            "hist = {g: {'angle': base['angle'][:, j]} for j, g in enumerate(gam)}\n"
            "hist['J^T'] = {'angle': base['angle_JT']}\n"
            "fig = plot_training_curves(hist, ['angle'], [r'angle of Q to $J^T(JJ^T+\\gamma I)^{-1}$ (deg)'],\n"
            "                           xlabel=f'evaluation (every {it[1] - it[0]} sleep iterations)')\n"
            "fig.savefig(OUT / 'figS2_feedback_gamma.png')\nfig",
        ),
        (
            "code",
            "figs = {}\n"
            "for tag, key in (('S3', 'alpha_fb'), ('S4', 'k_p_fb')):\n"
            "    labels = [lab for lab in res['labels']\n"
            "              if (key == 'alpha_fb' and runs[lab]['k_p_fb'] == 0.1)\n"
            "              or (key == 'k_p_fb' and runs[lab]['alpha_fb'] == 0.25)]\n"
            "    labels = sorted(labels, key=lambda lab: runs[lab][key])\n"
            "    hist = {g: {lab: runs[lab]['angle'][:, j] for lab in labels} for j, g in enumerate(gam)}\n"
            "    figs[tag] = plot_training_curves(hist, labels, [f'angle (deg), {lab}' for lab in labels],\n"
            "                                     xlabel=f'evaluation (every {it[1] - it[0]} sleep iterations)')\n"
            "    figs[tag].savefig(OUT / f'fig{tag}_feedback_{key}.png')\n"
            "figs['S3']",
        ),
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
