# %% [markdown]
# # $model · Evaluation: base vs `-dpo` vs `-dpo-further`
# The paper's protocol: every variant answers every test problem `samples` times (temperature
# 0.6, top_p 0.9, the same chat prompt, generation unchanged), code is extracted by deleting the
# markdown fences, every sample runs against the problem's asserts (5 s per assert), and each run
# reports pass@10 and the average MI of passing code. Beyond the paper: unbiased pass@k for
# k = 1, 5, 10, paired bootstrap intervals between variants, the `fenced` extraction beside the
# paper's, and HumanEval as an out-of-distribution check.

# %% tags=["parameters"]
model_name = "$model"
model_path = None
epochs = None
further_epochs = None
runs = None  # None: the registry default (the paper: 5)
samples = None  # per problem; None: the registry default (the paper: 10)
max_new_tokens = None
limit = None  # only the first N test problems
humaneval = False
smoke = False
global_dir = None  # Stage 1's folder (for the test problems); default: the problem set's
fine_tuning_dir = None  # where the adapters are; default: 2_Fine_Tuning_Process/$model
output_dir = "."

# %%
from shared_utils import evaluation_runs, models, plots
from shared_utils.layout import ArtifactLayout

spec = models.get_spec(model_name)
layout = ArtifactLayout.for_model(spec, epochs=epochs or spec.epochs, further_epochs=further_epochs,
                                  global_dir=global_dir, model_dir=fine_tuning_dir, evaluation_dir=output_dir)
plan = evaluation_runs.EvalPlan(
    layout, model=str(model_path or model_name), runs=1 if smoke else runs or spec.eval_runs,
    samples=2 if smoke else samples or spec.eval_samples,
    max_new_tokens=32 if smoke else max_new_tokens or spec.max_new_tokens, limit=2 if smoke else limit)
plan.describe()

# %% [markdown]
# ## Base model

# %%
evaluation_runs.run_variant(plan, "base")

# %% [markdown]
# ## Stage 1 (`-dpo`)

# %%
evaluation_runs.run_variant(plan, "dpo")

# %% [markdown]
# ## Stage 2 (`-dpo-further`, and `-dpo-further-iteration-<k>` for every further self-tuning iteration)

# %%
for variant in plan.further_variants():
    evaluation_runs.run_variant(plan, variant)

# %% [markdown]
# ## HumanEval (out of distribution)

# %%
if humaneval:
    for variant in plan.variants():
        evaluation_runs.run_variant(plan, variant, benchmark="humaneval")

# %% [markdown]
# ## Comparison

# %%
report = evaluation_runs.comparison(plan)
report.table

# %%
report.per_run

# %%
report.paired

# %%
plots.evaluation_overview(report);

# %% [markdown]
# ## Summary

# %%
print(report.text())
