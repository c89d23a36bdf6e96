# %% [markdown]
# # $model · Stage 2c: DPO again, on the model's own pairs
# Continues training the Stage-1 adapter on the local dataset with the same LoRA and DPO
# settings (the recipe's `stage2c` section changes any of them for this stage alone). The
# reference model is explicit (`stage2c.reference`):
# - `base` (default, the paper's behaviour: its TRL disabled the adapter, so the reference was
#   the original base model);
# - `dpo`: the Stage-1 adapter's policy is the reference, the usual choice for iterative DPO.

# %% tags=["parameters"]
recipe = "2_Fine_Tuning_Process/$model/recipe.yaml"  # relative to the repository root
overrides = {}  # e.g. {"stage2c": {"reference": "dpo"}}
iteration = 1
protocol = None  # "paper": the authors' code byte for byte; None: the recipe's ("corrected")
model_path = None
global_dir = None  # Stage 1's folder (for the held-out probe problems); default: the problem set's
output_dir = "."
overwrite = False  # True: make this stage's output again even though one made with other settings exists

# %%
from shared_utils import adapters, notebook_display, recipes, stages

settings = recipes.load("$model", overrides, recipe=recipe, protocol=protocol)
layout = settings.layout(global_dir=global_dir, model_dir=output_dir)
print(f"continuing {layout.start_adapter(iteration)} on the local pairs Stage 2a recorded; "
      f"recipe: {settings.describe()}")
settings.training("stage2c").as_dict()

# %%
result = stages.train_stage2(settings, layout, iteration, model=model_path, overwrite=overwrite)
if result is None:
    print(f"No local dataset recorded in {layout.manifest.file}: Stage 2a found no task with two different "
          "passing samples, so there is nothing to train on. Stage 2c is skipped.")
else:
    notebook_display.show_images(result.plots)
    print(adapters.summary(adapters.inspect(result.adapter_dir)))

# %% [markdown]
# ## Base vs adapted answers (greedy) on a few held-out problems, with MI and test verdicts

# %%
if result is not None:
    display(adapters.compare_answers(result.adapter_dir, notebook_display.probe_problems(layout),
                                     max_new_tokens=settings.section("stage2c")["probe_max_new_tokens"]))

# %% [markdown]
# ## Summary

# %%
if result is not None:
    print(f"adapter: {result.adapter_dir} (reference: {settings.training('stage2c').reference})")
    print({k: v for k, v in result.metrics.items() if "loss" in k or "margin" in k})
