# %% [markdown]
# # $model · Stage 2a: the Stage-1 model builds its own preference data
# The Stage-1 model (base + `-dpo` adapter) samples solutions for every training prompt
# (the paper's temperature 0.6 and top_p 0.9); every sample runs in the sandbox; tasks with fewer
# than two passing samples are asked again (up to `rounds` times) with the paper's feedback prompt
# and one failed solution. For tasks with two or more passing samples, the highest-MI one is
# *chosen* and the lowest-MI one *rejected*. Samples, rounds, sampling and limits are the recipe's
# `stage2a` section; the saved dataset's provenance names the engine (`local` or `vllm`) and dtype.
#
# The corrected protocol (the default) differs from the paper's notebook in eight places: a sample
# stops once its first code block closes (the paper's ran to EOS, so prose after the block reached
# extraction); the weights keep the model's dtype (the paper's: float32); a sample passes on its
# first fenced code block (the paper deleted the fence markers, so prose around the code failed
# it); MI is computed on that code (the paper left the word `python` in); the feedback prompt
# shows the first failed extracted code (the paper: the latest round's last failing answer,
# stripped, labelled "Failed solution:"); the candidate runs as `__main__` with MBPP's set-up
# code; chosen/rejected are the extracted code in a python fence (the paper: the answers as
# generated, stripped); and they are the best and worst of the *distinct* passing samples (the
# paper: argmax and argmin of MI over all of them).
# `protocol="paper"` reproduces the paper's notebook.

# %% tags=["parameters"]
recipe = "2_Fine_Tuning_Process/$model/recipe.yaml"  # relative to the repository root
overrides = {}  # e.g. {"stage2a": {"rounds": 3}}
iteration = 1  # k-th self-tuning round: 1 starts from Stage 1, k > 1 from the (k-1)-th further adapter
protocol = None  # "paper": the authors' code byte for byte; None: the recipe's ("corrected")
model_path = None
global_dir = None  # Stage 1's folder (for the training prompts); default: the problem set's
output_dir = "."
overwrite = False  # True: make this stage's output again even though one made with other settings exists

# %%
from shared_utils import notebook_display, plots, preferences, recipes, stages

settings = recipes.load("$model", overrides, recipe=recipe, protocol=protocol)
layout = settings.layout(global_dir=global_dir, model_dir=output_dir)
print(f"from {layout.start_adapter(iteration)}; recipe: {settings.describe()}")
settings.section("stage2a")

# %%
local = stages.self_generate(settings, layout, iteration, model=model_path, overwrite=overwrite)
local.rounds

# %%
notebook_display.report_local_pairs(local.rows, local.problems)

# %%
if local.rows:
    display(preferences.summary_frame(local.rows))
    plots.preference_overview(local.rows, title="Local pairs")
    plots.rounds(local.rounds)

# %% [markdown]
# ## Summary

# %%
print(f"{len(local.rows)} local pairs from {len(local.problems)} prompts -> {local.dataset or 'nothing saved'}")
