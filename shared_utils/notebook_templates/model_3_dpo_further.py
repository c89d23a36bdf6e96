# %% [markdown]
# # $model · Stage 2c: DPO again, on the model's own pairs
# Continues training the Stage-1 adapter on the local dataset with the same LoRA and DPO
# settings. The reference model is explicit:
# - `reference="base"` (default, the paper's behaviour: its TRL disabled the adapter, so the
#   reference was the original base model);
# - `reference="stage1"`: the Stage-1 policy is the reference, the usual choice for iterative DPO.

# %% tags=["parameters"]
model_name = "$model"
model_path = None
epochs = None  # of the Stage-1 adapter
further_epochs = None  # None: the same as Stage 1
iteration = 1
reference = "base"  # base | stage1
max_steps = -1
smoke = False
global_dir = None  # Stage 1's folder (for the held-out probe problems); default: the problem set's
output_dir = "."

# %%
from shared_utils import adapters, models, pipeline, training
from shared_utils.layout import ArtifactLayout

spec = models.get_spec(model_name)
layout = ArtifactLayout.for_model(spec, epochs=epochs or spec.epochs, further_epochs=further_epochs,
                                  global_dir=global_dir, model_dir=output_dir)
start_adapter, dataset_dir = layout.start_adapter(iteration), layout.local_dataset(iteration)
args = training.DPOArgs.for_model(spec, **pipeline.overrides(epochs=layout.further_epochs, reference=reference,
                                                             max_steps=1 if smoke else max_steps,
                                                             max_pairs=4 if smoke else None))
if dataset_dir.exists():
    dataset = training.load_pairs(dataset_dir, args.max_pairs)  # exactly the pairs train_dpo trains on
    print(f"{len(dataset)} local pairs from {dataset_dir}; continuing {start_adapter}")
else:
    dataset = None
    print(f"No local dataset at {dataset_dir}: Stage 2a found no task with two different passing samples, "
          "so there is nothing to train on. Stage 2c is skipped.")

# %%
if dataset is not None:
    result = training.train_dpo(model_path or model_name, dataset_dir, layout.further_adapter(iteration),
                                init_adapter=start_adapter, args=args)
    pipeline.show_images(result.plots)
    print(adapters.summary(adapters.inspect(result.adapter_dir)))

# %% [markdown]
# ## Base vs adapted answers (greedy) on a few held-out problems, with MI and test verdicts

# %%
if dataset is not None:
    display(adapters.compare_answers(result.adapter_dir, pipeline.probe_problems(layout),
                                     max_new_tokens=64 if smoke else None))

# %% [markdown]
# ## Summary

# %%
if dataset is not None:
    print(f"adapter: {result.adapter_dir} (reference: {reference})")
    print({k: v for k, v in result.metrics.items() if "loss" in k or "margin" in k})
