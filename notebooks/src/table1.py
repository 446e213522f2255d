# %% [markdown]
# # Table 1: computer-vision results
#
# Assembles finished training runs (`results.json`, written by `dfc-brian sweep` or `dfc-brian train`) with `dfc_brian.experiments.table1`: mean ± std over seeds with n, beside the published numbers, the difference in units of the published std, and each cell's wall time per run. It reads your own runs under `runs/` when there are any, else the paper-length runs committed with the project (`benchmarks/results/table1/`, the same as `figures/table1.md`). Runs shorter than the paper's get rows of their own. (Nothing is trained here: a paper-scale run takes hours.)

# %%
from dfc_brian.plotting import notebook_setup

QUICK, ROOT, OUT = notebook_setup()  # DFC_QUICK=0: full-size figure (see figures/README.md)

# %%
from IPython.display import Markdown, display

from dfc_brian.experiments import table1 as T1

runs_dir = ROOT / 'runs'
if not (runs_dir.is_dir() and T1.collect_runs(runs_dir, verbose=False)):
    runs_dir = ROOT / 'benchmarks' / 'results' / 'table1'  # the runs committed with the project
print(f'runs read from {runs_dir}')
data = T1.aggregate(T1.collect_runs(runs_dir), T1.collect_wall_times(runs_dir, verbose=False))
md = T1.table_markdown(data)
if not any(e['values'] for row in data['rows'].values() for e in row.values()):
    print(f'No finished runs under {runs_dir}: the table shows the published numbers only.\n'
          'To produce ours (every cell, seeds 0-4, all cores, resumable):\n'
          "  dfc-brian sweep 'table1/*' --seeds 0-4 --runs runs\n"
          'then re-run this notebook (or: dfc-brian table runs).')
(OUT / 'table1.md').write_text(md)
fig = T1.plot_table(data)
fig.savefig(OUT / 'table1.png')
display(Markdown(md))
fig
