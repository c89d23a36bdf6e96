"""Test fixture: randomly initialised look-alikes of the registry's models, for fast offline tests.

Same architecture class as the real model, a few layers of width 64, the embedded SmolLM2
tokenizer carrying the real model's chat template.
"""

from __future__ import annotations

import os
from pathlib import Path

import shared_utils
from shared_utils import files
from shared_utils.models import embedded_model_dir, get_spec

CHAT_TEMPLATES = Path(shared_utils.__file__).parent / "resources" / "chat_templates"

TINY_DIMS = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, max_position_embeddings=2048)


def _tiny_config(architecture: str, vocab_size: int, special: dict):
    from transformers import AutoConfig

    if architecture == "gemma3":
        text = AutoConfig.for_model("gemma3_text", vocab_size=vocab_size, sliding_window=64, **TINY_DIMS, **special)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      image_size=28, patch_size=14)
        return AutoConfig.for_model("gemma3", text_config=text.to_dict(), vision_config=vision, mm_tokens_per_image=4,
                                    **special)
    extra = {"sliding_window": 64} if architecture == "gemma3_text" else {}
    return AutoConfig.for_model(architecture, vocab_size=vocab_size, tie_word_embeddings=True, **TINY_DIMS, **extra,
                                **special)


def build_tiny_model(name: str, out_dir: str | os.PathLike, *, seed: int = 0,
                     tokenizer_dir: str | os.PathLike | None = None) -> Path:
    """A look-alike of registry model ``name`` saved to ``out_dir`` (weights seeded by ``seed``), with the
    embedded model's tokenizer (or a saved copy of it: ``tokenizer_dir``, as the GPU bundle carries it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = get_spec(name)
    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or embedded_model_dir())
    if spec.quirks.chat_template:
        tokenizer.chat_template = (CHAT_TEMPLATES / spec.quirks.chat_template).read_text()
    special = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                   eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_tiny_config(spec.architecture, len(tokenizer), special))
    with files.atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files.write_provenance(tmp, tiny_lookalike_of=spec.name, architecture=type(model).__name__, seed=seed)
    return out_dir
