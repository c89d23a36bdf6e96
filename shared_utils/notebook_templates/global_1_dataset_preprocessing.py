# %% [markdown]
# # 1. MBPP preprocessing
# Loads MBPP (hub or a local folder of JSONL splits), drops training problems whose reference
# code contains `class`, appends the paper's signature sentence, and saves
# `mbpp_preprocessed_dataset` (train) and `mbpp_test_with_signatures` (test) next to this notebook.
# `protocol="paper"` uses the authors' exact signature pattern (7 MBPP texts differ).
# `cpu_demo=True` (or `source="demo"`) prepares the easy demo set of the embedded CPU model instead
# (into `demo/`): the CPU path, as `make demo` runs it.

# %% tags=["parameters"]
cpu_demo = False  # True: the CPU path (the embedded model's demo set), as in every global notebook
source = "mbpp"  # hub id, a folder of <split>.jsonl files, or "demo"
output_dir = None  # default: this folder (MBPP) or demo/ (the demo set)
protocol = "corrected"  # "paper": the authors' signature pattern (see the README's protocol table)

# %%
from shared_utils import data, stages
from shared_utils.layout import GlobalLayout

if cpu_demo:
    source = stages.CPU_DEMO["source"]
out = GlobalLayout.for_problem_set("demo" if source == data.DEMO_SOURCE else "mbpp", output_dir)
written = data.prepare(source, out.folder, protocol)
train, test = (data.load_problems(path) for path in (written["train"], written["test"]))
print(f"train: {len(train)} problems, test: {len(test)} problems")
print(train[0]["text"])

# %% [markdown]
# ## Summary

# %%
for split, path in written.items():
    print(f"{split}: {path}")
