# %% [markdown]
# # Fig. 2: geometry of stable feedback matrices
#
# Net 5-2-2: random stable $Q = J^T M$ (2000; QUICK: 200) against $J^T$, $J^+$ and the damped pseudo-inverses $J^T (J J^T + \gamma I)^{-1}$, PCA(2) of the normalised matrices (`dfc_brian.analysis.fig2`).

# %%
from dfc_brian.plotting import notebook_setup

QUICK, ROOT, OUT = notebook_setup()  # DFC_QUICK=0: full-size figure (see figures/README.md)

# %%
from dfc_brian.analysis.fig2 import fig2_experiment

res = fig2_experiment(n_samples=200 if QUICK else 2000, seed=0)
print(f'acceptance rate of stable Q: {res.acceptance_rate:.3f}')

# %%
from dfc_brian.plotting.figures import plot_fig2

fig = plot_fig2(res)
fig.savefig(OUT / 'fig2_feedback_geometry.png')
fig
