# %% [markdown]
# # Figs. S2-S4: feedback learning aligns Q with damped pseudo-inverses
#
# The authors' settings (`models/toy/figS2_S4_tanh.yaml`, `figS2_S4_linear.yaml`, from their `configs_figC2C3`): student 20-10-5 with a tanh or a linear hidden layer, forward weights frozen, 25 sleep-only epochs (5000 inputs, batch 128, SGD lr 0.1, weight decay 0.01), sleep phase of $T_{fb} = 300$ steps of $dt = 0.001$, $t_{cr,fb} = 0.005$, $\tau_A = 0.3$, $\sigma = 0.01$. Angle between Q and $J^T (J J^T + \gamma I)^{-1}$ (mean over 128 test inputs) per epoch: S2 varies $\gamma$ ($\alpha_{fb} = 0.5$, $k_{p,fb} = 0$), S3 varies $\alpha_{fb}$ ($k_{p,fb} = 0.3$, $\gamma = 5$), S4 varies $k_{p,fb}$ ($\alpha_{fb} = 0.1$, $\gamma = 5$). QUICK: 25 epochs on 256 inputs.

# %%
from dfc_brian.plotting import notebook_setup

QUICK, ROOT, OUT = notebook_setup()  # DFC_QUICK=0: full-size figure (see figures/README.md)

# %%
from dfc_brian.experiments.toy import feedback_learning, save

res = feedback_learning(quick=QUICK)
save(res, OUT / 'figS2_S4_feedback_learning')
print('runs', res['n_runs'], {k: round(v, 1) for k, v in res['wall_s'].items()}, 's')

# %%
from dfc_brian.plotting.figures import plot_angle_panels

names = {'fig_S2': ('S2', 'gamma'), 'fig_S3': ('S3', 'alpha_fb'), 'fig_S4': ('S4', 'k_p_fb')}
ylabel = r'angle of Q to $J^T(JJ^T+\gamma I)^{-1}$ (deg)'
figs = {}
for key, (tag, var) in names.items():
    panels = {f'{v} hidden layer': dict(zip(p['labels'], p['angle'], strict=True))
              for v, p in res['panels'][key].items()}
    figs[tag] = plot_angle_panels(res['epochs'], panels, ylabel, xlabel='sleep-only epoch',
                                  title=f'Fig. {tag}: {var} varies')
    figs[tag].savefig(OUT / f'fig{tag}_feedback_{var}.png')
figs['S2']

# %%
figs['S3']

# %%
figs['S4']
