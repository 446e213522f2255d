# %% [markdown]
# # Table 1: computer-vision results
#
# Assembles finished training runs (`runs/**/results.json`, written by `dfc-brian sweep` or `dfc-brian train`) with `dfc_brian.experiments.table1`: mean ± std over seeds with n, beside the published numbers, and the difference in units of the published std. Runs shorter than the paper's get rows of their own. Without runs it shows the published table and how to produce ours. (Nothing is trained here: a paper-scale run takes hours.)

# %%
from dfc_brian.plotting import notebook_setup

QUICK, ROOT, OUT = notebook_setup()  # DFC_QUICK=0: full-size figure (see figures/README.md)

# %%
from IPython.display import Markdown, display

from dfc_brian.experiments.table1 import aggregate, collect_runs, plot_table, table_markdown

runs_dir = ROOT / 'runs'
data = aggregate(collect_runs(runs_dir) if runs_dir.is_dir() else {})
md = table_markdown(data)
if not any(e['values'] for row in data['rows'].values() for e in row.values()):
    print(f'No finished runs under {runs_dir}: the table shows the published numbers only.\n'
          'To produce ours (every cell, seeds 0-4, all cores, resumable):\n'
          "  dfc-brian sweep 'table1/*' --seeds 0-4 --runs runs\n"
          'then re-run this notebook (or: dfc-brian table runs).')
(OUT / 'table1.md').write_text(md)
fig = plot_table(data)
fig.savefig(OUT / 'table1.png')
display(Markdown(md))
fig
