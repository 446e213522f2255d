# %% [markdown]
# # Fig. 1D: the PI controller drives the output to its target
#
# Settings of `models/toy/fig1d.yaml` (the authors' `config_fig1D`). Student 15-10-10-1 (tanh, tanh, linear); Q starts xavier-normal and is pre-trained for 50 sleep-only epochs (SGD lr 0.1, batched engine; QUICK: 25 epochs on 256 inputs); the trained network then runs its controlled phase in **Brian2** (numpy target): PI control with $k_p = 1$, $\alpha = 0.0015$, $dt = 0.005$, $t_{cr} = 0.2$, $\lambda = 0.05$, $T = 2000$ (QUICK: 400), three student-teacher samples. Top: $r_L(t)$ and its target $r_L^*$ (dashed); bottom: the control signal $u(t)$. At steady state $r_L = r_L^* - \alpha u$.

# %%
from dfc_brian.plotting import notebook_setup

QUICK, ROOT, OUT = notebook_setup()  # DFC_QUICK=0: full-size figure (see figures/README.md)

# %%
from dfc_brian.experiments.toy import fig1d, save

res = fig1d(quick=QUICK)
save(res, OUT / 'fig1d_controller')
print('Q before / after pre-training:', res['q_before'], res['q_after'])
print('|r_L(T) - (r* - alpha u(T))| =', res['steady_residual'])
print(f"{res['wall_pretrain_s']:.1f} s pre-training, {res['wall_s']:.1f} s Brian2")

# %%
from dfc_brian.plotting.figures import plot_controller

fig = plot_controller(res['t'], res['r_L'], res['r_star'], res['u'])
fig.savefig(OUT / 'fig1d_controller.png')
fig
