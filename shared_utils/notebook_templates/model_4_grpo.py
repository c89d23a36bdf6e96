# %% [markdown]
# # $model · Beyond the paper: online refinement with GRPO
# **Not part of the paper**, which trains offline on preference pairs collected beforehand. Here the
# policy samples `num_generations` answers per MBPP training prompt at every step (the demo set for
# the embedded model), every answer runs against the problem's asserts in the sandbox, and TRL's
# `GRPOTrainer` moves the LoRA adapter towards the better answers of each group. The rewards
# (`shared_utils.rewards`, by name and weight in the recipe's `grpo.reward.functions`) are the
# fraction of asserts passed plus, for code that passes them all, its MI / 100 measured so that
# comments, layout and operators rewritten as calls buy nothing; truncated answers, answers the
# evaluation cannot read and code built from strings earn nothing (the `rejected/*` columns). It
# starts from the `-dpo-further` adapter (`grpo.start`: or `dpo`, or `base`), keeps a KL term to
# that starting policy, and writes `$adapter_prefix-grpo` next to this notebook. On a GPU with vLLM installed, generation runs in colocated vLLM; otherwise in
# transformers.

# %% tags=["parameters"]
recipe = "2_Fine_Tuning_Process/$model/recipe.yaml"  # relative to the repository root
overrides = {}  # e.g. {"grpo": {"start": "dpo", "reward": {"correctness": "all"}, "training": {"max_steps": 50}}}
model_path = None  # a local folder to load instead of the registry weights (e.g. a tiny look-alike)
global_dir = None  # Stage 1's folder (the training prompts); default: the problem set's
output_dir = "."  # where the adapters are and the GRPO adapter goes (this model's folder)
overwrite = False  # True: make this stage's output again even though one made with other settings exists

# %%
from shared_utils import adapters, plots, recipes, stages

settings = recipes.load("$model", overrides, recipe=recipe)
layout = settings.layout(global_dir=global_dir, model_dir=output_dir)
grpo = settings.grpo()
print(f"refining {layout.grpo_start(grpo.start) or 'the base model (a fresh LoRA)'} on the prompts of "
      f"{layout.global_.train_problems}; recipe: {settings.describe()}")
grpo.as_dict()

# %%
result = stages.train_grpo(settings, layout, model=model_path, overwrite=overwrite)
print(adapters.summary(adapters.inspect(result.adapter_dir)))

# %% [markdown]
# ## Reward components, KL and completion length per step
# `code/correctness` and `code/maintainability` are the step means over every sample; `mi/written`
# vs `mi/scored` (in the log) is the MI of passing samples with and without their comments: a gap
# that grows says the policy is learning to comment rather than to simplify.

# %%
import pandas as pd

log = pd.read_csv(result.log_csv)
plots.grpo_training(log);

# %%
log[[column for column in log.columns if column == "step" or column.startswith(("reward", "code/", "mi/", "rejected/", "kl"))
     or column == "completions/mean_length"]]

# %% [markdown]
# ## Summary

# %%
print(f"adapter: {result.adapter_dir} (started from {layout.grpo_start(grpo.start) or 'the base model'})")
print({key: value for key, value in result.metrics.items() if key.startswith(("reward", "code/", "kl", "completions"))})
