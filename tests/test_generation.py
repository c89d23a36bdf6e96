"""shared_utils.generation: local sampling, stop rule, resume, paper format, replay, CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest

from shared_utils import prompts
from shared_utils.generation import (Completion, CheckpointMismatch, Request, SamplingConfig, code_end, generate,
                                     read_paper_format, replay_pairs, truncate_at_code_end, write_paper_format)
from shared_utils.generation.core import plan_batches
from stand_ins import Scripted

TINY = "smollm2-135m"


@pytest.fixture(scope="module")
def tiny(tiny_model_factory):
    from shared_utils.models import load_model

    return load_model(str(tiny_model_factory(TINY)))


def requests_for(count: int, n: int | None = None) -> list[Request]:
    return [Request(100 + i, prompts.messages(f"Write a function number {i}."), n=n) for i in range(count)]


def test_code_end_rule():
    assert code_end("no fence") is None
    assert code_end("```python\nx = 1\n") is None
    text = "Sure:\n```python\nx = 1\n```\nMore prose\n```\ny\n```"
    assert truncate_at_code_end(text) == "Sure:\n```python\nx = 1\n```"
    assert truncate_at_code_end("```\na\n```") == "```\na\n```"


def test_plan_is_deterministic_and_covers_every_sample():
    reqs = requests_for(3, n=None)
    batches = plan_batches(reqs, SamplingConfig(n=5), 4)
    keys = [k for b in batches for k in b.keys(reqs)]
    assert keys == [(100 + i, 0, s) for i in range(3) for s in range(5)]
    assert [b.seed for b in batches] == [b.seed for b in plan_batches(reqs, SamplingConfig(n=5), 4)]
    assert batches[0].seed != plan_batches(reqs, SamplingConfig(n=5, seed=1), 4)[0].seed


def test_local_tiny_model_batched_and_reproducible(tiny):
    reqs = requests_for(3) + [Request("str-id", prompts.messages("x"), round=1, n=1)]
    sampling = SamplingConfig(n=2, max_new_tokens=6, seed=3, batch_size=3)
    out = generate(reqs, loaded=tiny, sampling=sampling, progress=False)
    assert [c.key for c in out] == [(100, 0, 0), (100, 0, 1), (101, 0, 0), (101, 0, 1), (102, 0, 0), (102, 0, 1),
                                    ("str-id", 1, 0)]
    assert all(isinstance(c.text, str) and 0 < c.tokens <= 6 for c in out)
    again = generate(reqs, loaded=tiny, sampling=sampling, progress=False)
    assert [c.text for c in again] == [c.text for c in out]
    other = generate(reqs, loaded=tiny, sampling=SamplingConfig(n=2, max_new_tokens=6, seed=4, batch_size=3),
                     progress=False)
    assert [c.text for c in other] != [c.text for c in out]


def test_local_greedy_matches_transformers_generate(tiny):
    """Our cache/position handling gives what model.generate gives (greedy, left padding, row drop)."""
    import torch

    model, tokenizer = tiny.model, tiny.tokenizer
    reqs = requests_for(2)
    reqs = [reqs[0], Request(7, prompts.messages("A much longer prompt " * 5))]
    sampling = SamplingConfig(n=2, temperature=0, max_new_tokens=8, stop_at_code_end=False)
    out = generate(reqs, loaded=tiny, sampling=sampling, progress=False)
    for request, completion in zip(reqs, out[::2]):
        encoded = prompts.encode(tokenizer, [prompts.render(tokenizer, request.messages)])
        with torch.inference_mode():
            ids = model.generate(**encoded, do_sample=False, max_new_tokens=8, pad_token_id=tokenizer.pad_token_id)
        expected = tokenizer.decode(ids[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
        assert completion.text == expected


def test_stop_at_code_end_stops_after_the_closing_fence(tiny):
    tokenizer = tiny.tokenizer
    text = "Sure:\n```python\ndef f():\n    return 1\n```\nThis function returns one and then I go on talking a lot."
    script = tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    reqs = [Request(1, prompts.messages("f"), n=1)]
    stopped = generate(reqs, loaded=dataclasses.replace(tiny, model=Scripted(tiny.model, script)), progress=False,
                       sampling=SamplingConfig(n=1, max_new_tokens=len(script) + 5))
    assert stopped[0].text == "Sure:\n```python\ndef f():\n    return 1\n```"
    assert stopped[0].tokens < len(script) - 10
    full = generate(reqs, loaded=dataclasses.replace(tiny, model=Scripted(tiny.model, script)), progress=False,
                    sampling=SamplingConfig(n=1, max_new_tokens=len(script) + 5, stop_at_code_end=False))
    assert full[0].text == text and full[0].tokens == len(script) - 1  # EOS ends it and is not counted


def _final(path):
    return json.loads(path.read_text())


def test_resume_after_interruption_gives_the_same_file(tiny, tmp_path, capsys):
    reqs = requests_for(4)
    sampling = SamplingConfig(n=3, max_new_tokens=6, seed=11, batch_size=4)  # 3 batches of 4
    clean = generate(reqs, loaded=tiny, sampling=sampling, checkpoint=tmp_path / "a.jsonl", progress=False)
    write_paper_format(clean, tmp_path / "a.json", metadata={"run": "clean"})

    class Boom(Exception):
        pass

    def explode(index, completions):
        if index == 1:
            raise Boom

    with pytest.raises(Boom):
        generate(reqs, loaded=tiny, sampling=sampling, checkpoint=tmp_path / "b.jsonl", progress=False,
                 on_batch=explode)
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 8
    # a kill mid-write: a torn last line, and a batch partly written
    lines = (tmp_path / "b.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "b.jsonl").write_text("".join(lines[:6]) + lines[6][:17])
    capsys.readouterr()
    resumed = generate(reqs, loaded=tiny, sampling=sampling, checkpoint=tmp_path / "b.jsonl", progress=False)
    assert "b.jsonl: 6 of 12 samples already generated" in capsys.readouterr().out  # the six whole lines
    write_paper_format(resumed, tmp_path / "b.json", metadata={"run": "resumed"})
    assert _final(tmp_path / "a.json") == _final(tmp_path / "b.json")
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 12
    meta = json.loads((tmp_path / "b.jsonl.meta.json").read_text())
    assert meta["resumed"] == 1 and meta["sampling"]["seed"] == 11 and "versions" in meta and meta["finished"]
    # nothing left to do: no model call at all
    calls = []
    generate(reqs, loaded=tiny, sampling=sampling, checkpoint=tmp_path / "b.jsonl", progress=False,
             on_batch=lambda i, c: calls.append(i))
    assert calls == []
    with pytest.raises(CheckpointMismatch, match="temperature"):
        generate(reqs, loaded=tiny, sampling=SamplingConfig(n=3, max_new_tokens=6, seed=11, temperature=0.9),
                 checkpoint=tmp_path / "b.jsonl", progress=False)


def test_a_checkpoint_is_not_resumed_under_another_dtype(tiny, tmp_path, monkeypatch):
    """Samples drawn in float32 and in bfloat16 differ: a generation_dtype ablation never resumes the other's file."""
    from shared_utils.generation.local import LocalBackend

    reqs = requests_for(2)
    sampling = SamplingConfig(n=2, max_new_tokens=4, seed=3, batch_size=4)
    generate(reqs, loaded=tiny, sampling=sampling, checkpoint=tmp_path / "c.jsonl", progress=False)
    written = json.loads((tmp_path / "c.jsonl.meta.json").read_text())["numerics"]
    assert written["dtype"] == str(tiny.model.dtype).removeprefix("torch.")
    described = LocalBackend.describe
    monkeypatch.setattr(LocalBackend, "describe", lambda self, s: {**described(self, s), "dtype": "bfloat16"})
    with pytest.raises(CheckpointMismatch, match="numerics"):
        generate(reqs, loaded=tiny, sampling=sampling, checkpoint=tmp_path / "c.jsonl", progress=False)


def test_paper_format_round_trip(tmp_path):
    completions = [Completion(2, 0, 1, "b1"), Completion(1, 0, 0, "a0"), Completion(2, 0, 0, "b0"),
                   Completion(1, 0, 1, "a1")]
    path = write_paper_format(completions, tmp_path / "out.json", metadata={"model": "m"})
    assert _final(path) == [{"task_id": 2, "generated_sequences": ["b0", "b1"]},
                            {"task_id": 1, "generated_sequences": ["a0", "a1"]}]
    assert read_paper_format(path) == {2: ["b0", "b1"], 1: ["a0", "a1"]}
    meta = json.loads((tmp_path / "out.json.meta.json").read_text())
    assert meta["model"] == "m" and meta["samples"] == 4


def test_replay_backend_reads_paper_format_and_checkpoints(tmp_path):
    path = write_paper_format([Completion(5, 0, 0, "x"), Completion(5, 0, 1, "y")], tmp_path / "o.json",
                              metadata={})
    reqs = [Request(5, [], n=2)]
    out = generate(reqs, backend="replay", source=path, sampling=SamplingConfig(n=2), progress=False)
    assert [c.text for c in out] == ["x", "y"]
    with pytest.raises(KeyError, match="task_id=6"):
        generate([Request(6, [])], backend="replay", source=path, sampling=SamplingConfig(n=1), progress=False)


def test_replay_pairs_on_the_shared_gemini_responses(gemini_pairs):
    pairs = replay_pairs(gemini_pairs)
    assert len(pairs) == 238
    assert all(p.ok and p.code_output_1 and p.code_output_2 for p in pairs.values())
    assert all(isinstance(task_id, int) for task_id in pairs)


def test_replay_pairs_names_bad_lines(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"task_id": 1, "code_output_1": "a", "code_output_2": "b"}\n'
                    '{"task_id": 2, "code_output_1": "a"}\n'
                    '{"task_id": 3, "code_output_1": "a", "code_o\n')
    pairs = replay_pairs(path)
    assert pairs[1].ok
    assert "line 2" in pairs[2].error and "code_output_2" in pairs[2].error
    bad = [p for key, p in pairs.items() if key not in (1, 2)]
    assert len(bad) == 1 and "line 3" in bad[0].error and "malformed JSON" in bad[0].error


def test_cli_generate_local_tiny(tiny_model_factory, tmp_path):
    from shared_utils.cli import main

    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"task_id": i, "text": f"Add {i}.", "code": "def f(): pass",
                                            "test_list": ["assert True"]}) + "\n" for i in (1, 2)))
    out = tmp_path / "gen.json"
    args = ["generate", "--model", str(tiny_model_factory(TINY)), "--backend", "local", "--problems", str(problems),
            "--n", "2", "--out", str(out), "--max-new-tokens", "4", "--seed", "5"]
    assert main(args) == 0
    first = read_paper_format(out)
    assert list(first) == [1, 2] and all(len(v) == 2 for v in first.values())
    assert main(args) == 0 and read_paper_format(out) == first  # resumed from the checkpoint: nothing new
    assert json.loads((tmp_path / "gen.json.meta.json").read_text())["sampling"]["seed"] == 5


@pytest.mark.slow
def test_local_embedded_model_two_prompts():
    from shared_utils import data
    from shared_utils.models import load_model

    loaded = load_model("smollm2-135m")
    rows = data.demo_problems()[:2]
    reqs = [Request(r["task_id"], prompts.messages(r["text"])) for r in rows]
    out = generate(reqs, loaded=loaded, sampling=SamplingConfig(n=2, max_new_tokens=48, seed=0), progress=False)
    assert len(out) == 4 and all(c.tokens > 0 for c in out)
    assert any("def " in c.text for c in out)


def test_every_recipe_samples_as_the_stages_did_before_sampling_was_a_recipe_key(tmp_path):
    """temperature 0.6, top_p 0.9 and the model's own top-k for every model and sampling stage, so the
    default runs (the demo's among them) sample exactly as when these were constants; a recipe changes them."""
    from shared_utils import recipes, stages
    from shared_utils.models import REGISTRY

    for model in REGISTRY:
        recipe = recipes.load(model)
        for stage in ("global", "stage2a", "evaluation"):
            section = recipe.section(stage)
            assert SamplingConfig.from_recipe(section) == SamplingConfig(n=section["samples"],
                                                                         max_new_tokens=section["max_new_tokens"])
    recipe = recipes.load("smollm2-135m")
    layout = recipe.layout(global_dir=tmp_path / "global", model_dir=tmp_path / "model", evaluation_dir=tmp_path / "eval")
    assert stages.evaluation_plan(recipe, layout).sampling(1) == SamplingConfig(n=2, max_new_tokens=192, seed=1,
                                                                               stop_at_code_end=False)
    hotter = recipes.load("smollm2-135m", {"evaluation": {"temperature": 1.0, "top_k": 50}})
    sampling = stages.evaluation_plan(hotter, layout).sampling(0)
    assert (sampling.temperature, sampling.top_p, sampling.top_k) == (1.0, 0.9, 50)


def test_merged_adapter_samples_what_the_adapter_samples_and_leaves_it_unmerged(tiny):
    """Folding the LoRA weights in for sampling is the same function: greedy tokens are identical,
    and the trained adapter keeps its own weights (merging works on a copy)."""
    import dataclasses as dc

    import torch
    from peft import LoraConfig, get_peft_model

    from shared_utils.generation.local import merged_copy

    torch.manual_seed(0)
    base = type(tiny.model).from_pretrained(tiny.model.name_or_path).eval()
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"],
                      init_lora_weights=False)  # random B: an adapter that changes the model
    peft_model = get_peft_model(base, lora).eval()
    adapted = dc.replace(tiny, model=peft_model)
    before = {name: p.clone() for name, p in peft_model.named_parameters()}
    greedy = SamplingConfig(n=1, temperature=0, max_new_tokens=12, stop_at_code_end=False)
    reqs = requests_for(3)
    plain = generate(reqs, loaded=tiny, sampling=greedy, progress=False)
    unmerged = generate(reqs, loaded=adapted, sampling=greedy, progress=False)
    merged = generate(reqs, loaded=adapted, sampling=greedy, progress=False, merge_adapter=True)
    assert [c.text for c in unmerged] != [c.text for c in plain]  # the adapter matters
    assert [(c.text, c.tokens) for c in merged] == [(c.text, c.tokens) for c in unmerged]
    assert all(torch.equal(p, before[name]) for name, p in peft_model.named_parameters())
    assert not any(getattr(m, "merged", False) for m in peft_model.modules())
    assert merged_copy(tiny.model) is tiny.model  # no adapter: nothing to merge


@pytest.mark.parametrize("temperature", [0, 0.8])
def test_in_place_kv_cache_samples_the_same_tokens_as_transformers_cache(tiny, monkeypatch, temperature):
    """The cache that appends in place (also when it must grow, and after finished rows are dropped)
    gives token for token what transformers' DynamicCache gives, greedy and sampled with a seed."""
    from shared_utils.generation import kv_cache, local

    monkeypatch.setattr(kv_cache, "GROW_BY", 3)  # grow several times within a few tokens
    # a ninth of the vocabulary ends a sample, so that rows finish at different steps and are dropped
    monkeypatch.setattr(local, "eos_token_ids", lambda model, tokenizer: set(range(0, len(tokenizer), 9)))
    reqs = requests_for(2) + [Request(7, prompts.messages("A much longer prompt " * 5))]
    sampling = SamplingConfig(n=3, temperature=temperature, max_new_tokens=16, stop_at_code_end=False, seed=5,
                              batch_size=5)
    runs = {kind: generate(reqs, loaded=tiny, sampling=sampling, progress=False, kv_cache=kind)
            for kind in kv_cache.KINDS}
    assert [(c.text, c.tokens) for c in runs["slack"]] == [(c.text, c.tokens) for c in runs["dynamic"]]
    if temperature:  # rows finished at different steps: the cache dropped rows while others went on
        assert len({c.tokens for c in runs["slack"]}) > 2
    with pytest.raises(ValueError, match="kv_cache='static'"):
        generate(reqs, loaded=tiny, sampling=sampling, progress=False, kv_cache="static")


@pytest.fixture
def varied_lengths(monkeypatch):
    """A ninth of the vocabulary ends a sample, so that samples end at different steps."""
    from shared_utils.generation import local

    monkeypatch.setattr(local, "eos_token_ids", lambda model, tokenizer: set(range(0, len(tokenizer), 9)))


def _alone(tiny, request, sample, sampling, eos):
    """One sample drawn the plain way, as continuous batching promises to draw it: the whole sequence
    through the model at every step (no cache), the sample's own seeded uniforms, inverse CDF."""
    import torch

    from shared_utils.generation.core import derive_seed
    from shared_utils.generation.local import warp

    ids = prompts.encode(tiny.tokenizer, [tiny.render(request.messages)])["input_ids"]
    generator = torch.Generator().manual_seed(derive_seed(sampling.seed, "sample", request.task_id, 0, sample))
    uniforms = torch.rand(sampling.max_new_tokens, generator=generator)
    tokens = []
    with torch.inference_mode():
        for step in range(sampling.max_new_tokens):
            logits = tiny.model(input_ids=torch.cat([ids, torch.tensor([tokens], dtype=ids.dtype)], 1)).logits[:, -1]
            cdf = warp(logits, sampling.temperature, 0, sampling.top_p).softmax(-1).cumsum(-1)
            token = int(torch.searchsorted(cdf, (uniforms[step] * cdf[:, -1])[:, None], right=True))
            if token in eos:
                break
            tokens.append(token)
    return tiny.tokenizer.decode(tokens, skip_special_tokens=True), len(tokens)


def test_refill_draws_each_sample_as_if_it_ran_alone(tiny, varied_lengths, monkeypatch):
    """Continuous batching computes each sample as a plain uncached loop with its own seed would: rows
    refilled mid-run (prompts of different lengths right-aligned in one cache, each row at its own
    position, the cache laid out again as it fills and when a longer prompt comes) change nothing."""
    from shared_utils.generation import local, stream

    monkeypatch.setattr(stream, "GROW_BY", 3)  # lay the cache out again every few steps
    reqs = requests_for(3) + [Request(7, prompts.messages("A much longer prompt " * 6)),
                              Request(9, prompts.messages("Short."))]
    sampling = SamplingConfig(n=2, temperature=0.8, max_new_tokens=10, stop_at_code_end=False, seed=6, batch_size=3)
    refilled = generate(reqs, loaded=tiny, sampling=sampling, progress=False, refill=True)
    eos = local.eos_token_ids(None, tiny.tokenizer)
    by_request = {r.task_id: r for r in reqs}
    assert [(c.text, c.tokens) for c in refilled] == [_alone(tiny, by_request[c.task_id], c.sample, sampling, eos)
                                                      for c in refilled]
    assert len({c.tokens for c in refilled}) > 2  # rows ended at different steps, so rows were refilled


def test_refill_samples_are_reproducible_and_drawn_per_sample(tiny, varied_lengths):
    """With refill each sample draws from its own seeded stream: the same seed gives the same texts, and
    the texts do not depend on how many rows run beside it (on this float32 model, whose rows do not
    disturb each other's rounding); another seed gives other texts."""
    reqs = requests_for(4)
    sampling = SamplingConfig(n=3, temperature=0.8, max_new_tokens=12, stop_at_code_end=False, seed=4)
    runs = [generate(reqs, loaded=tiny, sampling=dataclasses.replace(sampling, batch_size=width), progress=False,
                     refill=True) for width in (5, 5, 2)]
    texts = [[(c.key, c.text, c.tokens) for c in run] for run in runs]
    assert texts[0] == texts[1] == texts[2]
    other = generate(reqs, loaded=tiny, sampling=dataclasses.replace(sampling, seed=5, batch_size=5),
                     progress=False, refill=True)
    assert [c.text for c in other] != [c.text for c in runs[0]]


@pytest.mark.parametrize("options", [{}, {"refill": True}], ids=["default", "refill"])
def test_an_interrupted_run_keeps_every_finished_problem_and_resumes_to_the_same_samples(
        tiny, varied_lengths, tmp_path, monkeypatch, options):
    """Problems are recorded as their last sample ends, inside a batch: interrupted after two problems of
    the first batch, the checkpoint holds them, and the resumed run equals an uninterrupted one."""
    from shared_utils.generation.checkpoint import Checkpoint

    reqs = requests_for(5)
    sampling = SamplingConfig(n=2, temperature=0.8, max_new_tokens=10, stop_at_code_end=False, seed=2,
                              batch_size=10)  # one batch (default) or segment (refill) of all 10 samples
    clean = generate(reqs, loaded=tiny, sampling=sampling, checkpoint=tmp_path / "a.jsonl", progress=False,
                     **options)
    append = Checkpoint.append
    written = []

    def interrupt_after_two_problems(self, completions):
        append(self, completions)
        written.append(len(completions))
        if len(written) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "append", interrupt_after_two_problems)
    with pytest.raises(KeyboardInterrupt):
        generate(reqs, loaded=tiny, sampling=sampling, checkpoint=tmp_path / "b.jsonl", progress=False, **options)
    saved = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert written == [2, 2] and len(saved) == 4 and len({row["task_id"] for row in saved}) == 2
    monkeypatch.setattr(Checkpoint, "append", append)
    resumed = generate(reqs, loaded=tiny, sampling=sampling, checkpoint=tmp_path / "b.jsonl", progress=False,
                       **options)
    assert resumed == clean
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 10


def test_a_checkpoint_is_not_resumed_with_refill_switched(tiny, tmp_path):
    """Refill draws each sample from its own stream: a checkpoint written without it is not continued with it."""
    reqs = requests_for(2)
    sampling = SamplingConfig(n=2, max_new_tokens=4, seed=3, batch_size=4)
    generate(reqs, loaded=tiny, sampling=sampling, checkpoint=tmp_path / "c.jsonl", progress=False)
    assert "refill" not in json.loads((tmp_path / "c.jsonl.meta.json").read_text())["numerics"]
    with pytest.raises(CheckpointMismatch, match="numerics"):
        generate(reqs, loaded=tiny, sampling=sampling, checkpoint=tmp_path / "c.jsonl", progress=False, refill=True)


def test_the_default_loop_samples_what_it_sampled_before_refill_and_per_problem_records(tiny, varied_lengths,
                                                                                        tmp_path):
    """The default path (no refill) keeps its seeded tokens: the digest was taken on this tiny model with
    the code before continuous batching and per-problem checkpoint records existed (rows ending at
    different steps, a checkpoint written)."""
    import hashlib

    reqs = requests_for(4)
    sampling = SamplingConfig(n=3, temperature=0.8, max_new_tokens=12, stop_at_code_end=False, seed=7, batch_size=5)
    out = generate(reqs, loaded=tiny, sampling=sampling, progress=False, checkpoint=tmp_path / "c.jsonl")
    rows = [[c.task_id, c.sample, c.text, c.tokens] for c in out]
    assert [c.tokens for c in out] == [0, 0, 5, 2, 4, 12, 6, 7, 8, 3, 11, 1]
    assert hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16] == "5ba462f47a4dcbed"
