"""A model added as a folder (its recipe names a registered ``base``) loads its base's weights whoever names it:
``models`` learns of such folders from the recipes layer, without importing it. Loading is stood in for at
transformers' ``from_pretrained``, so these run in seconds and download nothing."""

from __future__ import annotations

import json

import pytest
import transformers

from shared_utils import data, models, paths, recipes, stages
from shared_utils.cli import main
from shared_utils.layout import GlobalLayout
from shared_utils.models import REGISTRY
from shared_utils.runner import RunOptions, artifact_layout, global_parameters
from stand_ins import fake_adapter

NAME, BASE = "gemma3-1b-beta-0.3", "gemma3-1b"
BASE_WEIGHTS = REGISTRY[BASE].hub_id


class Loaded(RuntimeError):
    """Raised where the weights would load: the caller got as far as asking for them."""


@pytest.fixture
def folder_model(tmp_path, monkeypatch):
    """A folder model in a fine-tuning folder under tmp_path (the checkout is never written); ``asked`` lists the
    weights every ``from_pretrained`` was asked for."""
    fine_tuning = tmp_path / "fine-tuning"
    for registered in REGISTRY:  # the registered models' recipes, which a folder model's base is read from
        (fine_tuning / registered).mkdir(parents=True)
        (fine_tuning / registered / recipes.FILE_NAME).write_bytes(recipes.recipe_file(registered).read_bytes())
    (fine_tuning / NAME).mkdir()
    (fine_tuning / NAME / recipes.FILE_NAME).write_text(f"base: {BASE}\nstage1:\n  training:\n    beta: 0.3\n")
    monkeypatch.setattr(paths, "FINE_TUNING_DIR", fine_tuning)
    asked = []

    def from_pretrained(source, *args, **kwargs):
        asked.append(str(source))
        raise Loaded(source)

    for loader in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        monkeypatch.setattr(loader, "from_pretrained", from_pretrained)
    return asked


def test_models_resolves_a_folder_model_to_its_bases_weights(folder_model):
    assert models.resolve(NAME) == BASE_WEIGHTS
    spec = models.find_spec(NAME)
    assert spec.name == NAME and spec.hub_id == BASE_WEIGHTS and spec.quirks == REGISTRY[BASE].quirks
    assert models.weights_record(NAME)["hub_id"] == BASE_WEIGHTS
    assert models.find_spec("not-a-model") is None and models.resolve("owner/other") == "owner/other"
    with pytest.raises(Loaded):
        models.load_tokenizer(NAME)
    assert folder_model == [BASE_WEIGHTS]


def test_the_cli_generate_verb_loads_the_bases_weights(folder_model, tmp_path):
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"task_id": 1, "text": "Return 1.", "test_list": ["assert f() == 1"]}) + "\n")
    with pytest.raises(Loaded):
        main(["generate", "--model", NAME, "--backend", "local", "--problems", str(problems),
              "--out", str(tmp_path / "out.json")])
    assert folder_model and set(folder_model) == {BASE_WEIGHTS}


def test_the_runner_and_the_notebooks_stages_load_the_bases_weights(folder_model, tmp_path):
    """What the runner hands the global notebook (its generator), and what the model notebooks' stage functions
    load when no ``model_path`` is given: the Stage-1 notebook's token counts, Stage 2a's sampling."""
    options = RunOptions(model=NAME, artifacts=tmp_path / "out", overrides={"problem_set": "demo"})
    recipe = recipes.load(NAME, options.overrides)  # the demo set: the model generates its own global pairs
    layout = artifact_layout(options, tmp_path / "runs")
    generator = global_parameters(options, "global_2_generate_global_pairs", recipe, layout)["generator"]
    data.prepare("demo", layout.global_.folder)
    with pytest.raises(Loaded):
        stages.global_pairs(GlobalLayout(layout.global_.folder), recipe, backend="local", generator=generator,
                            progress=False)
    from shared_utils import notebook_display

    with pytest.raises(Loaded):
        notebook_display.token_length_stats(recipe.model, [])
    layout.manifest.record(fake_adapter(layout.stage1_adapter), "dpo", {})
    with pytest.raises(Loaded):
        stages.self_generate(recipe, layout, 1, progress=False)
    assert len(folder_model) == 3 and set(folder_model) == {BASE_WEIGHTS}
