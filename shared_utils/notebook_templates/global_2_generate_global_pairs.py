# %% [markdown]
# # 2. Global pairs: two correct implementations per training problem
# The paper asked Gemini 2.5 Pro (batch API, JSON schema `{task_id, code_output_1, code_output_2}`)
# for two different implementations of every training problem. Both run in the sandbox against
# the problem's asserts; only tasks where both pass are kept.
# Backends: `gemini` (the paper), `openai` (any OpenAI-compatible server), `replay` (saved
# responses, offline) and `local` (a model that cannot follow the JSON schema samples several
# independent answers; the first two different passing ones are kept).

# %% tags=["parameters"]
backend = "replay"  # gemini | openai | replay | local
responses = None  # replay: a JSON-lines file of {task_id, code_output_1, code_output_2}
generator = "gemini-2.5-pro"  # gemini/openai model name, or a registry model for `local`
problem_set = "mbpp"  # mbpp | demo
problems_dir = None  # default: the preprocessed train set of the problem set
output_dir = None  # default: the problem set's folder in 1_Global_Dataset_Generation
samples = 8  # local backend: answers sampled per problem
max_new_tokens = 256  # local backend
limit = None  # only the first N problems (smoke runs)

# %%
from shared_utils import data, generation, preferences, prompts
from shared_utils.layout import GlobalLayout

out = GlobalLayout.for_problem_set(problem_set, output_dir)
problems = data.load_problems(problems_dir or out.train_problems)[:limit]
if backend == "replay":
    wanted = {p["task_id"] for p in problems}
    answers = {k: v for k, v in generation.replay_pairs(responses).items() if k in wanted}
    rows, counts = preferences.check_pair_responses(problems, answers, generator=generator)
elif backend == "local":
    sampling = generation.SamplingConfig(n=samples, max_new_tokens=max_new_tokens)
    requests = [generation.Request(p["task_id"], prompts.messages(p["text"])) for p in problems]
    completions = generation.generate(requests, backend="local", model=generator, sampling=sampling,
                                      checkpoint=out.generation_checkpoint)
    texts = {}
    for c in completions:
        texts.setdefault(c.task_id, []).append(c.text)
    rows, counts = preferences.pairs_from_samples(problems, texts, generator=generator)
else:
    answers = generation.request_pairs(problems, backend=backend, model=generator, state_dir=out.pair_requests)
    rows, counts = preferences.check_pair_responses(problems, answers, generator=generator)
counts

# %%
saved = preferences.save_pairs(rows, out.pairs, generator=generator, backend=backend, counts=counts.__dict__)
preferences.write_counts(counts, out.pair_counts)

# %% [markdown]
# ## Summary

# %%
print(f"{counts.both} pairs where both implementations pass -> {saved}")
