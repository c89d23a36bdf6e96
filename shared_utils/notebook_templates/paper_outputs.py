# %% [markdown]
# # The paper's own outputs, re-scored
# The authors published the raw completions of their evaluation: 50 files (gemma3-1b, -4b and -12b
# base, `-dpo` and `-dpo-further`, and qwen3-4b `-dpo-further`; five runs of 10 samples for each of
# MBPP's 500 test tasks). This notebook scores every candidate under the paper's protocol
# (`exec(code, {})`, no set-up code) and under the corrected one (a real `__main__`, MBPP's set-up
# code), shows the paper's table (mean and sd over the five runs) beside the authors' own per-run
# numbers, compares the variants of each model pairwise (pass@1, pass@10 and average MI; 95%
# bootstrap intervals over tasks and runs; Holm's correction; better / worse / no evidence), and
# lists where the two protocols disagree. The files are read from the local data folder
# (`SHARED_DATA_DIR`, else `../shared/data`, else what `python -m shared_utils download-data`
# fetched). Scoring takes about ten minutes on two cores the first time; the verdicts are cached.

# %% tags=["parameters"]
data = None  # folder of the published files; None: published/ in the local data folder
output_dir = "../results/paper-outputs"  # the repository's results: the README's section is rendered from them
reuse = True  # each distinct (task, program) runs once per protocol; False: every candidate runs
workers = None  # sandbox workers; None: 4 per core

# %%
from shared_utils import paper_outputs

results = paper_outputs.run(data, output_dir, reuse=reuse, workers=workers)
paper_outputs.mismatches(results)  # empty: every file reproduces the authors' per-run numbers under paper

# %%
results["table"]

# %%
results["comparisons"]

# %%
results["disagreements"]

# %% [markdown]
# ## Summary

# %%
print(paper_outputs.summary_text(results))
