# %% [markdown]
# # Spiking DFC (issue 11)
#
# The DFC network with **spiking** hidden and output neurons (Brian2): each neuron keeps its basal, apical and somatic compartments and fires as an inhomogeneous Poisson process at $\rho_{max} f(v_{soma})$ (logistic $f$). Forward synapses carry spikes into the basal compartment through a synaptic filter $\tau_s$, so $v^B$ predicts the somatic drive; an analog PI controller reads the output spike trains filtered with $\tau_r$ and drives the apical compartments through $Q$ (fixed to the weight product). Forward plasticity in the Urbanczik-Senn form $\dot W = \eta\,(S_{post}/\rho - f(v^B))\,\mathrm{PSP}_{pre}$, whose rate limit is DFC's online rule. Config: `models/spiking/toy_student_teacher.yaml` (15-10-10-5).

# %%
import numpy as np

from dfc_brian.plotting import notebook_setup

QUICK, ROOT, OUT = notebook_setup("spiking")  # DFC_QUICK=0: recompute the learning results (minutes)
RESULTS = ROOT / "figures" / "spiking"  # the committed results

# %% [markdown]
# ## A few samples: spikes, compartments, controller
#
# Top: raster of every layer. Middle: $v^B$ (dotted), $v^A$ (dashed), $v$ (solid) of two neurons of hidden layer 1 and of the output layer. Bottom: control $u$, filtered output $\hat r_L$ and target $r^*$; the controller starts after `t_settle` (40 ms), plasticity after `t_plastic` (70 ms).

# %%
from dfc_brian.spiking.experiments import demo, save
from dfc_brian.spiking.plotting import plot_demo

res = demo(quick=QUICK)
save(res, OUT / 'spiking_demo')
fig = plot_demo(res)
fig.savefig(OUT / 'spiking_demo.png')
fig

# %% [markdown]
# ## Student-teacher, online: spiking vs rate vs untrained
#
# Test loss of the expected output of the learned weights, mean and range over 3 seeds; *rate* is the same network with spikes replaced by their expected rates. QUICK shows the committed results (`figures/spiking/student_teacher.*`); `DFC_QUICK=0` recomputes them (cpp_standalone).

# %%
from dfc_brian.spiking.experiments import student_teacher
from dfc_brian.spiking.plotting import plot_learning

if QUICK:
    st = dict(np.load(RESULTS / 'student_teacher.npz'))
else:
    st = student_teacher()
    save(st, OUT / 'student_teacher')
for m in ('spiking', 'rate'):
    print(m, 'final test loss per seed:', np.round(st[f'{m}_final'], 4))
print('untrained:', np.round(st['untrained_test_loss'], 4))
fig = plot_learning(st)
fig.savefig(OUT / 'student_teacher.png')
fig

# %% [markdown]
# ## The plausibility trade-off: maximal rate and time per sample
#
# Test loss after 150 online samples against $\rho_{max}$ (input and network) for several presentation times (controller and plasticity windows scaled with it), seed 0.

# %%
from dfc_brian.spiking.experiments import tradeoff
from dfc_brian.spiking.plotting import plot_tradeoff

if QUICK:
    to = dict(np.load(RESULTS / 'tradeoff.npz'))
else:
    to = tradeoff()
    save(to, OUT / 'tradeoff')
fig = plot_tradeoff(to)
fig.savefig(OUT / 'tradeoff.png')
fig

# %% [markdown]
# ## MNIST 784-256-10, online: spiking vs rate vs hidden layer frozen
#
# 1000 online samples of 150 ms; the rate network runs the identical protocol (same samples, initial weights, windows and $\eta$) with spikes replaced by expected rates. Committed results only (`figures/spiking/mnist*.json`; about 10 minutes each on cpp_standalone).

# %%
import json

from dfc_brian.spiking.plotting import plot_mnist

mn = json.loads((RESULTS / 'mnist.json').read_text())
rate_path = RESULTS / 'mnist_rate.json'
if rate_path.exists():
    rt = json.loads(rate_path.read_text())
    mn.update({f'rate_{k}': rt[k] for k in ('samples', 'test_accuracy', 'final_test_accuracy')})
for tag in ('full', 'frozen_hidden', 'rate'):
    if f'{tag}_final_test_accuracy' in mn:
        print(tag, 'final test accuracy:', mn[f'{tag}_final_test_accuracy'])
fig = plot_mnist(mn)
fig.savefig(OUT / 'mnist.png')
fig

# %% [markdown]
# The same three networks for 4000 online samples (`figures/spiking/mnist_4000*.json`; 40-55 minutes each on this 2-core machine).

# %%
m4 = {}
runs_4000 = {'full': 'mnist_4000', 'frozen_hidden': 'mnist_4000_frozen', 'rate': 'mnist_4000_rate'}
for tag, name in runs_4000.items():
    path = RESULTS / f'{name}.json'
    if path.exists():
        r = json.loads(path.read_text())
        m4.update({f'{tag}_{k}': r[k] for k in ('samples', 'test_accuracy', 'final_test_accuracy')})
        print(tag, 'final test accuracy:', r['final_test_accuracy'])
fig = plot_mnist(m4)
fig.savefig(OUT / 'mnist_4000.png')
fig

# %% [markdown]
# ## Population coding: the noise lever
#
# Each unit is $N$ Poisson neurons sharing its compartments; its output is their mean spike train. Left: final test loss of the student-teacher task (3 seeds) against $N$, beside the rate limit. Right: RMS of $r^* - \hat r_L$ under control against $N$, with the shot noise of the $\tau_r$-filtered train $\sqrt{f/(2N\rho\tau_r)}$. Committed results (`figures/spiking/population.*`); `DFC_QUICK=0` recomputes them.

# %%
from dfc_brian.spiking.experiments import population
from dfc_brian.spiking.plotting import plot_population

if QUICK:
    po = dict(np.load(RESULTS / 'population.npz'))
else:
    po = population()
    save(po, OUT / 'population')
for n in po['n_pop']:
    print(f'N = {n}: test loss', np.round(po[f'pop{n}_final_test_loss'], 4), 'gap closed',
          np.round(po[f'pop{n}_gap_closed'], 3))
fig = plot_population(po)
fig.savefig(OUT / 'population.png')
fig

# %% [markdown]
# ## Sleep phase with spikes: learning Q
#
# Q starts random; the apical compartments receive balanced background Poisson input, the controller's target is the network's own output and Q follows the anti-Hebbian rule $\dot Q_i = \eta_Q(-v^A_i u^T/\sigma^2 - \beta Q_i)$. Angle between Q and $J^T$ against sleep samples, spiking and rate limit (`figures/spiking/sleep.*`).

# %%
from dfc_brian.spiking.experiments import sleep
from dfc_brian.spiking.plotting import plot_sleep

if QUICK:
    sl = dict(np.load(RESULTS / 'sleep.npz'))
else:
    sl = sleep(**json.loads((RESULTS / 'sleep.json').read_text())['call'])
    save(sl, OUT / 'sleep')
fig = plot_sleep(sl)
fig.savefig(OUT / 'sleep.png')
fig

# %% [markdown]
# ## Sleep interleaved with learning: feedback learned by spikes
#
# One network alternates sleep and wake samples: Q starts random, learns in 60 sleep samples before learning and 5 after every 25 training samples; W and b learn only in wake samples. Left: student-teacher test loss against training samples for Q learned by sleep, Q fixed to the weight product, and the same random Q never learned (mean and range over 3 seeds). Right: angle between Q and $J^T$ (`figures/spiking/sleep_wake.*`; `DFC_QUICK=0` recomputes them, about 20 minutes).

# %%
from dfc_brian.spiking.experiments import sleep_wake
from dfc_brian.spiking.plotting import plot_sleep_wake

if QUICK:
    sw = {**json.loads((RESULTS / 'sleep_wake.json').read_text()), **np.load(RESULTS / 'sleep_wake.npz')}
else:
    sw = sleep_wake(n_train=150, n_sleep0=60, wake_block=25, n_sleep=5, every=5)
    save(sw, OUT / 'sleep_wake')
fig = plot_sleep_wake(sw)
fig.savefig(OUT / 'sleep_wake.png')
fig
