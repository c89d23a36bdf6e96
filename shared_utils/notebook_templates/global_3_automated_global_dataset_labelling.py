# %% [markdown]
# # 3. Labelling: the more maintainable implementation is chosen
# Maintainability Index (radon `mi_visit(code, multi=True)`) for both implementations; the higher
# one is *chosen* (ties keep the first, as the paper), both wrapped in a python fence; the prompt
# is the chat messages with the paper's system prompt.

# %% tags=["parameters"]
cpu_demo = False  # True: the CPU path's demo problem set (as in every global notebook)
problem_set = "mbpp"  # mbpp | demo
output_dir = None  # default: the problem set's folder in 1_Global_Dataset_Generation
protocol = None  # None: the protocol the pairs were made under

# %%
from shared_utils import plots, preferences, stages
from shared_utils.layout import GlobalLayout

if cpu_demo:
    problem_set = stages.CPU_DEMO["problem_set"]
out = GlobalLayout.for_problem_set(problem_set, output_dir)
rows, saved = stages.label(out.pairs, out, protocol)
preferences.summary_frame(rows)

# %%
plots.preference_overview(rows, title="Global pairs");

# %% [markdown]
# ## Summary

# %%
print(f"{len(rows)} labelled pairs -> {saved}")
