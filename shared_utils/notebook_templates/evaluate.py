# %% [markdown]
# # $model · Evaluation: base vs `-dpo` vs `-dpo-further`
# The paper's protocol: every variant answers every test problem `samples` times (the paper's
# temperature 0.6 and top_p 0.9, the same chat prompt, no stop string), code is extracted by deleting the
# markdown fences, every sample runs with `exec(code, {})` against the problem's asserts (5 s per
# assert), and each run reports pass@10 and the average MI of passing code. The same completions
# are scored three ways, side by side (column `scoring`): `paper` exactly as published (the
# comparable number), `corrected` (same extraction; the candidate runs as `__main__` and MBPP's
# set-up code runs first) and `fenced` (the first fenced code block, corrected execution).
# Beyond the paper: unbiased pass@k for k = 1, 5, 10, a 95% interval for every metric of every
# variant, paired comparisons between variants under every scoring (pass@k and the average MI the
# paper reports, each variant on its own solved tasks; tasks, runs and training seeds resampled;
# Holm's correction over each scoring's comparisons; verdict better / worse / no evidence), every
# further self-tuning iteration's adapter, and HumanEval as an out-of-distribution check
# (`evaluation.humaneval` in the recipe). Runs, samples and sampling (temperature, top-p, top-k,
# max new tokens) are the recipe's `evaluation` section; each run's `.meta.json` names the engine
# that generated (`local`: our loop over transformers; `vllm`).

# %% tags=["parameters"]
recipe = "2_Fine_Tuning_Process/$model/recipe.yaml"  # relative to the repository root
overrides = {}  # e.g. {"evaluation": {"humaneval": True}}
model_path = None
global_dir = None  # Stage 1's folder (for the test problems); default: the problem set's
fine_tuning_dir = None  # where the adapters are; default: 2_Fine_Tuning_Process/$model
output_dir = "."
overwrite = False  # True: make this stage's output again even though one made with other settings exists

# %%
from shared_utils import plots, recipes, stages

settings = recipes.load("$model", overrides, recipe=recipe)
layout = settings.layout(global_dir=global_dir, model_dir=fine_tuning_dir, evaluation_dir=output_dir)
stages.evaluation_plan(settings, layout, model=model_path).describe()

# %%
report = stages.evaluate(settings, layout, model=model_path, overwrite=overwrite)
report.table

# %%
report.per_run

# %%
report.intervals

# %%
report.paired

# %%
report.humaneval.table if report.humaneval is not None else "HumanEval not run (evaluation.humaneval: false)"

# %%
plots.evaluation_overview(report);

# %% [markdown]
# ## Summary

# %%
print(report.text())
