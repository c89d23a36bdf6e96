# %% [markdown]
# # $model · Stage 1: DPO on the global preference dataset
# LoRA (r=16, alpha=32, dropout 0.1, all attention and MLP projections) trained with TRL's
# `DPOTrainer` (beta 0.1) on the global pairs; the reference model is the base with the adapter
# disabled. The adapter is written next to this notebook as `$adapter_prefix-dpo-<epochs>-epochs`.

# %% tags=["parameters"]
model_name = "$model"
model_path = None  # a local folder to load instead of the registry weights (e.g. a tiny look-alike)
epochs = None  # None: the registry default (the paper: 250)
max_steps = -1  # > 0 stops early (smoke runs)
smoke = False  # a handful of pairs and one step
global_dir = None  # Stage 1's folder; default: 1_Global_Dataset_Generation (or its demo/ for the demo model)
output_dir = "."  # where the adapter goes (this model's folder)

# %%
from shared_utils import adapters, models, pipeline, training
from shared_utils.layout import ArtifactLayout

spec = models.get_spec(model_name)
args = training.DPOArgs.for_model(spec, **pipeline.overrides(epochs=epochs, max_steps=1 if smoke else max_steps,
                                                             max_pairs=4 if smoke else None))
layout = ArtifactLayout.for_model(spec, epochs=args.epochs, global_dir=global_dir, model_dir=output_dir)
dataset_dir = layout.global_.dataset
dataset = training.load_pairs(dataset_dir, args.max_pairs)  # exactly the pairs train_dpo trains on
print(f"{len(dataset)} pairs from {dataset_dir}; {args}")

# %%
pipeline.token_length_stats(model_path or model_name, dataset)

# %%
result = training.train_dpo(model_path or model_name, dataset_dir, layout.stage1_adapter, args=args)
result.metrics

# %%
pipeline.show_images(result.plots)

# %% [markdown]
# ## Inspect the adapter

# %%
report = adapters.inspect(result.adapter_dir)
print(adapters.summary(report))

# %%
adapters.compare_answers(result.adapter_dir, pipeline.probe_problems(layout),
                         max_new_tokens=64 if smoke else None)

# %% [markdown]
# ## Summary

# %%
print(f"adapter: {result.adapter_dir}")
print({k: result.metrics[k] for k in sorted(result.metrics) if "loss" in k or "margin" in k or "accurac" in k})
