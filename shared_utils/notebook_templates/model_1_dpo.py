# %% [markdown]
# # $model · Stage 1: DPO on the global preference dataset
# LoRA (the paper: r=16, alpha=32, dropout 0.1, all attention and MLP projections) trained with
# TRL's `DPOTrainer` (beta 0.1) on the global pairs; the reference model is the base with the
# adapter disabled. Every setting comes from the recipe beside this notebook (`recipe.yaml`, over
# the paper's defaults); `overrides` changes any of them for this run. The adapter is written next
# to this notebook as `$adapter_prefix-dpo-<epochs>-epochs`.
#
# **What the authors' DPO trained on.** Their pairs held the prompt as chat messages and the answers
# as plain strings, and their TRL (0.23) then discarded the prompt (`maybe_extract_prompt`): the two
# answers' longest common prefix became the prompt, the remainders chosen and rejected, tokenised
# without BOS or chat template. On the 238 published Gemini pairs no prompt keeps the task statement
# or the system prompt; 69 are the fence `` "```python\n" `` alone, the median is 92 characters
# (e.g. `` "```python\ndef odd_position(nums):\n " `` followed by the two function bodies). The
# published adapters therefore learned to continue code, not to answer the task they are evaluated
# on. The protocol's `training_format` switch chooses: `conversational` (the default: the chat prompt then
# the fenced answer, as the paper describes) or `as_published` (the authors' examples, tokenised as
# TRL 0.23 did); the README's "The authors' DPO never saw the task prompt" has the evidence.

# %% tags=["parameters"]
recipe = "2_Fine_Tuning_Process/$model/recipe.yaml"  # relative to the repository root
overrides = {}  # e.g. {"stage1": {"training": {"beta": 0.05}}}
protocol = None  # "paper": the authors' code byte for byte; None: the recipe's ("corrected")
model_path = None  # a local folder to load instead of the registry weights (e.g. a tiny look-alike)
global_dir = None  # Stage 1's folder; default: 1_Global_Dataset_Generation (or its demo/ for the demo model)
output_dir = "."  # where the adapter goes (this model's folder)
overwrite = False  # True: make this stage's output again even though one made with other settings exists

# %%
from shared_utils import adapters, notebook_display, recipes, stages, training

settings = recipes.load("$model", overrides, recipe=recipe, protocol=protocol)
layout = settings.layout(global_dir=global_dir, model_dir=output_dir)
stage1 = settings.training("stage1")
dataset = training.load_pairs(layout.global_.labelled, stage1.max_pairs)  # exactly the pairs training uses
print(f"{len(dataset)} pairs from {layout.global_.labelled}; recipe: {settings.describe()}")
stage1.as_dict()

# %%
notebook_display.token_length_stats(model_path or settings.model, dataset)

# %%
result = stages.train_stage1(settings, layout, model=model_path, overwrite=overwrite)
result.metrics

# %%
notebook_display.show_images(result.plots)

# %% [markdown]
# ## Inspect the adapter

# %%
report = adapters.inspect(result.adapter_dir)
print(adapters.summary(report))

# %%
adapters.compare_answers(result.adapter_dir, notebook_display.probe_problems(layout),
                         max_new_tokens=settings.section("stage1")["probe_max_new_tokens"])

# %% [markdown]
# ## Summary

# %%
print(f"adapter: {result.adapter_dir}")
print({k: result.metrics[k] for k in sorted(result.metrics) if "loss" in k or "margin" in k or "accurac" in k})
