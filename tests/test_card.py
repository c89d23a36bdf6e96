"""The adapter's README is a Hub model card: PEFT's metadata kept, the base model linked, our record in words."""

from __future__ import annotations

from huggingface_hub import ModelCard, ModelCardData

from shared_utils.training import card

RECORD = dict(dpo={"beta": 0.1, "learning_rate": 5e-7}, lora={"r": 16, "lora_alpha": 32}, reference="base",
              training_format="conversational", base_model="google/gemma-3-1b-it", model="gemma3-1b", init_adapter=None, dataset="pairs", pairs=4,
              dataset_sha256="ab" * 32, global_step=2, seed=42, max_pairs=None, metrics={"loss": 0.69},
              plots=["loss.png"], versions={"trl": "1.16.0"})


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
                 "adapter disabled", "- trl: 1.16.0"):
        assert fact in loaded.text


def test_a_local_base_gets_no_hub_link(tmp_path):
    record = {**RECORD, "base_model": str(tmp_path)}
    data = ModelCard(str(card.model_card("tiny-dpo-2-epochs", record))).data
    assert data.base_model is None and not [tag for tag in data.tags if tag.startswith("base_model:")]
    assert data.library_name == "peft"
