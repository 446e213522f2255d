# %% [markdown]
# # Compartment voltages during the controlled and the sleep phase
#
# Brian2 recordings (numpy target) of the basal ($v^B = W r + b$), apical ($v^A = Q u$, noisy low-pass filter in the sleep phase) and somatic voltages of neurons 0 and 1 of every layer of the 15-10-10-5 student, Q fixed to the weight product. Controlled phase: target step $\lambda = 0.3$ (6x Fig. 1D, so that the apical input is visible), $T = 2000$ steps (QUICK: 400). Sleep phase: no output error, apical noise $\sigma = 0.01$, the sleep controller, shown for 1000 steps (QUICK: 250; training uses 50).

# %%
from dfc_brian.plotting import notebook_setup

QUICK, ROOT, OUT = notebook_setup()  # DFC_QUICK=0: full-size figure (see figures/README.md)

# %%
from dfc_brian.experiments.toy import compartments, save

res = compartments(quick=QUICK)
save(res, OUT / 'compartments')
print(f"Brian2 wall time {res['wall_s']:.1f} s")

# %%
from dfc_brian.plotting.figures import plot_compartments

figs = {}
for phase in ('controlled', 'sleep'):
    d = res[phase]
    traces = {f'L{i} {var}': d[f'{var}.layer{i}'] for i in (1, 2, 3)
              for var in ('v_basal', 'v_apical', 'v_soma')}
    traces['u'] = d['u']
    figs[phase] = plot_compartments(d['t'], traces, title=f'{phase} phase (neurons 0, 1)')
    figs[phase].savefig(OUT / f'compartments_{phase}.png')
figs['controlled']

# %%
figs['sleep']
