# %% [markdown]
# # 2. Global pairs: two correct implementations per training problem
# The paper asked Gemini 2.5 Pro (batch API, JSON schema `{task_id, code_output_1, code_output_2}`)
# for two different implementations of every training problem. Both run in the sandbox against
# the problem's asserts; only tasks where both pass are kept.
# Backends: `gemini` (the paper), `openai` (any OpenAI-compatible server), `replay` (saved
# responses, offline) and `local` (a model that cannot follow the JSON schema samples several
# independent answers; the first two different passing ones are kept, as many as its recipe's
# `global` section says). With `protocol="paper"` the implementations run exactly as
# returned (no fence stripping) and Gemini is asked with the authors' `Task_ID:` prompt.
# Replay without a `responses` file reads the authors' Gemini answers from the local data folder
# and, where none holds them (a fresh clone, Colab), fetches them first (`download-data`).
# `cpu_demo=True` is the CPU path of `make demo` in one switch: the demo problem set, backend
# `local`, the embedded model as generator and as the recipe that sizes its sampling.

# %% tags=["parameters"]
cpu_demo = False  # True: problem_set, backend, generator and recipe of the CPU path (stages.CPU_DEMO)
backend = "replay"  # gemini | openai | replay | local
responses = None  # replay: a JSON-lines file of {task_id, code_output_1, code_output_2}; None: the authors' Gemini answers in the local data folder
generator = "gemini-2.5-pro"  # gemini/openai model name, or for `local` a registry model or folder
recipe = None  # local: the registry model whose recipe sizes the sampling; None: the paper's settings
overrides = {}  # e.g. {"global": {"limit": 10}}
protocol = None  # "paper": the authors' code byte for byte; None: the recipe's ("corrected")
problem_set = "mbpp"  # mbpp | demo
problems_dir = None  # default: the preprocessed train set of the problem set
output_dir = None  # default: the problem set's folder in 1_Global_Dataset_Generation
overwrite = False  # True: start afresh instead of resuming an earlier run's samples or requests

# %%
from shared_utils import inputs, recipes, stages
from shared_utils.layout import GlobalLayout

if cpu_demo:
    problem_set, backend, generator, recipe = (stages.CPU_DEMO[key] for key in ("problem_set", "backend",
                                                                                 "generator", "recipe"))
if backend == "replay" and responses is None and any(inputs.status(["gemini"]).values()):
    inputs.download(["gemini"])  # the authors' answers, where no local data folder holds them (Colab): sha256-checked
out = GlobalLayout.for_problem_set(problem_set, output_dir)
settings = recipes.load(recipe, overrides, protocol=protocol)
pairs = stages.global_pairs(out, settings, backend=backend, generator=generator, responses=responses,
                            problems=problems_dir, overwrite=overwrite)
pairs.counts

# %% [markdown]
# ## Summary

# %%
print(f"{pairs.counts.both} pairs where both implementations pass -> {pairs.saved}")
