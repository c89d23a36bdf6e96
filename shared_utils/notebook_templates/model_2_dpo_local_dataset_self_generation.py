# %% [markdown]
# # $model · Stage 2a: the Stage-1 model builds its own preference data
# The Stage-1 model (base + `-dpo` adapter) samples solutions for every training prompt
# (temperature 0.6, top_p 0.9); every sample runs in the sandbox; tasks with fewer than two
# passing samples are asked again (up to `rounds` times) with the paper's feedback prompt and one
# failed solution. For tasks with two or more passing samples, the highest-MI one is *chosen*
# and the lowest-MI one *rejected*.
#
# Two corrections to the paper's notebook, both deliberate: MI is computed on the extracted code
# (the paper stripped the wrong fence marker before scoring), and samples that differ only in
# whitespace count as identical (the paper compared raw strings).

# %% tags=["parameters"]
model_name = "$model"
model_path = None
epochs = None  # of the Stage-1 adapter to start from
iteration = 1  # k-th self-tuning round: 1 starts from Stage 1, k > 1 from the (k-1)-th further adapter
samples = None  # per prompt and round; None: the registry default (the paper: 10)
rounds = None  # None: the registry default (the paper: 5)
feedback = True
max_new_tokens = None
min_gap = 0.0  # minimum MI gap between chosen and rejected
smoke = False
limit = None  # only the first N training problems
global_dir = None  # Stage 1's folder (for the training prompts); default: the problem set's
output_dir = "."

# %%
from shared_utils import data, generation, models, pipeline, plots, preferences, self_generation
from shared_utils.layout import ArtifactLayout

spec = models.get_spec(model_name)
layout = ArtifactLayout.for_model(spec, epochs=epochs or spec.epochs, global_dir=global_dir, model_dir=output_dir)
start_adapter, dataset_dir = layout.start_adapter(iteration), layout.local_dataset(iteration)
problems = data.load_problems(layout.global_.train_problems)[: 2 if smoke else limit]
rounds = 1 if smoke else rounds or spec.rounds
sampling = generation.SamplingConfig(n=samples or spec.samples, max_new_tokens=max_new_tokens or spec.max_new_tokens)
loaded = models.load_model(model_path or model_name, adapter=start_adapter)
print(f"{len(problems)} prompts, {sampling.n} samples each, up to {rounds} rounds, from {start_adapter}")

# %%
result = self_generation.self_generate(
    problems, model=model_path or model_name, adapter=str(start_adapter), loaded=loaded, sampling=sampling,
    config=self_generation.SelfGenConfig(rounds=rounds, feedback=feedback),
    checkpoint=layout.generation_checkpoint(iteration))
rounds_table = pipeline.rounds_frame(result)
rounds_table

# %%
rows = preferences.label_local(problems, result.passing, min_gap=min_gap)
pipeline.report_local_pairs(rows, problems)

# %%
if rows:
    saved = preferences.save_pairs(rows, dataset_dir, start_adapter=str(start_adapter),
                                   sampling=sampling.__dict__, rounds=rounds_table.to_dict("records"))
    display(preferences.summary_frame(rows))
    plots.preference_overview(rows, title="Local pairs")
    plots.rounds(rounds_table)

# %% [markdown]
# ## Summary

# %%
print(f"{len(rows)} local pairs from {len(problems)} prompts -> {dataset_dir if rows else 'nothing saved'}")
