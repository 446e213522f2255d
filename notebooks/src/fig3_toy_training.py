# %% [markdown]
# # Fig. 3: student-teacher training, conditions and alignment per epoch
#
# The authors' settings (`models/toy/fig3_*.yaml`, from their `configs_fig3`): student 15-10-10-5, unscaled teacher outputs, SGD lr$_{eff}$ 1.0, clip 1.0, proactive off, non-converged samples included; trained Q: 50 sleep-only pre-training epochs (SGD lr 0.1), then per epoch one sleep epoch (SGD lr 0.002), one forward epoch and 2 sleep epochs. Methods: DFC, DFC-SS, DFC-SSA, their fixed-Q versions and DFA (target-based); no BP, as in the paper (`fig3(methods=(..., 'BP'))` adds it). Per epoch on a fixed minibatch of 128 test samples: condition 2, condition 1, $\lambda_{max}$ of the linearised PI-controlled network and the angles of each method's update to the damped MN, GN (the configs' `analysis.gn_damping`: $\gamma = 0.1$, DFA 0) and SSA updates; the test loss on the whole test set (1000 samples). QUICK: 2 epochs of 256 samples, $T = 200$, 1 pre-training epoch. Full: `DFC_FIG3_EPOCHS` epochs (default 300) of 5000 samples, $T = 1000$.

# %%
from dfc_brian.plotting import notebook_setup

QUICK, ROOT, OUT = notebook_setup()  # DFC_QUICK=0: full-size figure (see figures/README.md)

# %%
import os

from dfc_brian.experiments.toy import FIG3_METHODS, fig3, load_fig3, merge_fig3, save

EPOCHS = None if QUICK else int(os.environ.get('DFC_FIG3_EPOCHS', '300'))
# DFC_FIG3_PARTS=folder: join parts run in parallel processes with
#   python -m dfc_brian.experiments.toy fig3 --methods ... --out folder/part --checkpoint-dir ...
PARTS = None if QUICK else os.environ.get('DFC_FIG3_PARTS')
if PARTS:
    parts = sorted((ROOT / PARTS).glob('*.npz'))  # a relative folder is read from the repository root
    res = merge_fig3([load_fig3(p.with_suffix('')) for p in parts])
else:
    res = fig3(FIG3_METHODS, epochs=EPOCHS, quick=QUICK, seed=0, progress=not QUICK)
save(res, OUT / 'fig3_toy_training')
print({k: round(v, 1) for k, v in res['wall_s'].items()})

# %%
from dfc_brian.plotting.figures import plot_training_curves

metrics = ['condition_2', 'condition_1', 'lambda_max', 'angle_MN', 'angle_GN', 'angle_SSA']
ylabels = ['condition 2', r'condition 1 (dev$_r$)', r'$\lambda_{max}$',
           'angle to MN (deg)', 'angle to GN (deg)', 'angle to SSA (deg)']
fig = plot_training_curves(res['metrics'], metrics, ylabels)
fig.savefig(OUT / 'fig3_toy_training.png')
fig

# %%
fig_loss = plot_training_curves(res['metrics'], ['test_loss_full', 'frac_nonconverged'],
                                ['test loss (MSE, 1000 samples)', 'non-converged fraction'],
                                logy=['test_loss_full'], ncols=2)
fig_loss.savefig(OUT / 'fig3_toy_loss.png')
fig_loss
