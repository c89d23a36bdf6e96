"""Recipes: every setting of a model's pipeline as data, next to the model's notebooks.

The paper's settings live once, in ``resources/recipes/paper.yaml``. Each model folder holds a
``recipe.yaml`` with only what differs for that model. A run may lay overlays on top: the
runner's ``resources/recipes/smoke.yaml``, a notebook's ``overrides`` dict, CLI flags. Layers
merge key by key, so an overlay changes one value without restating its section, and Stage 2c
starts from Stage 1's settings.

Training keys are TRL's ``DPOConfig`` fields (``GRPOConfig``'s in the ``grpo`` section) and LoRA keys are PEFT's ``LoraConfig`` fields. Both
are checked against those classes (``training.TrainingSettings``), so every TRL option can be a
recipe key without being copied here. Every other key must be one that ``paper.yaml`` sets; a
misspelt key fails with the file and the key it came from.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from pathlib import Path

from shared_utils import paths
from shared_utils.layout import DPO_STAGES, RENAMED
from shared_utils.models import REGISTRY, ModelSpec, register_finder

RECIPES = Path(__file__).parent / "resources" / "recipes"
PAPER = RECIPES / "paper.yaml"
SMOKE = RECIPES / "smoke.yaml"
FILE_NAME = "recipe.yaml"
TRAINING_STAGES = DPO_STAGES  # the sections ``Recipe.training`` reads
FREE_FORM = ("training", "lora")  # checked by TRL's and PEFT's classes instead


def read_yaml(path: str | Path) -> dict:
    import yaml

    loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping of sections, got {type(loaded).__name__}")
    return loaded


def merge(base: dict, overlay: dict) -> dict:
    """``overlay`` laid over ``base`` key by key (nested mappings merge; other values replace)."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def recipe_file(model: str) -> Path:
    """Where a model's recipe lives: beside its notebooks."""
    return paths.model_dir(model) / FILE_NAME


def model_names() -> list[str]:
    """Every model with a folder: the registry's, then the folders added with a recipe naming a ``base``."""
    added = sorted(file.parent.name for file in paths.FINE_TUNING_DIR.glob(f"*/{FILE_NAME}")
                   if file.parent.name not in REGISTRY)
    return list(REGISTRY) + added


def model_spec(name: str, *, required: bool = True) -> ModelSpec | None:
    """A model's identity: the registry's entry, or for a model added as a folder its ``base``'s under its own
    name. ``required=False``: None for anything else (a hub id, a local folder)."""
    if name in REGISTRY:
        return REGISTRY[name]
    source = recipe_file(name) if name and "/" not in name else None
    if source is None or not source.is_file():
        if required:
            raise KeyError(f"unknown model {name!r}{_did_you_mean(name)}; known: {', '.join(model_names())}")
        return None
    base = base_of(source)
    if base is None:
        raise ValueError(f"{_relative(source)}: a model outside the registry needs `base: <registered model>`")
    return dataclasses.replace(REGISTRY[base], name=name)


def added_spec(name: str) -> ModelSpec | None:
    """A model added as a folder under its own name (None for any other name): the finder ``models`` consults for
    names outside its registry, so ``models.resolve`` and ``load_model`` give such a model its base's weights."""
    return None if name in REGISTRY else model_spec(name, required=False)


register_finder(added_spec)


def check_keys(layer: dict, where: str) -> None:
    """Every key of ``layer`` must be one the paper's recipe sets (training and LoRA keys aside)."""
    schema = read_yaml(PAPER)
    for section, values in layer.items():
        if section in RENAMED:
            raise ValueError(f"{where}: section {section!r} is now {RENAMED[section]!r}; rename it there")
        if section not in schema:
            raise ValueError(f"{where}: unknown section {section!r}; expected one of {', '.join(schema)}")
        if not isinstance(schema[section], dict):
            continue
        if not isinstance(values, dict):
            raise ValueError(f"{where}: {section} must be a mapping, got {values!r}")
        allowed = {**schema[section], **(schema["stage1"] if section == "stage2c" else {})}
        unknown = [key for key in values if key not in allowed]
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(f'{section}.{key}' for key in unknown)}; "
                             f"{section} takes {', '.join(allowed)}")


def check_name(name_or_path: str) -> None:
    """Refuse, before anything loads, a model that is neither a registered name, a folder, nor a hub id.

    Hub ids are taken in their ``owner/name`` form, so a misspelt registry name (``smolm2-135m``) is
    answered with the closest registered one instead of a hub lookup that fails many lines later.
    """
    if "/" in name_or_path or Path(name_or_path).is_dir() or model_spec(name_or_path, required=False) is not None:
        return
    raise ValueError(f"unknown model {name_or_path!r}{_did_you_mean(name_or_path)}: give a registered name "
                     f"({', '.join(model_names())}), a folder, or a hub id as owner/name")


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, model_names(), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A model's merged settings and the layers they came from (recorded next to what they produce)."""

    model: str | None
    settings: dict
    layers: tuple[str, ...]
    base: str | None = None  # a model added as a folder: the registered model whose weights it trains

    @property
    def spec(self) -> ModelSpec:
        return model_spec(self.model)

    @property
    def problem_set(self) -> str:
        return self.settings["problem_set"]

    def section(self, name: str) -> dict:
        """One stage's settings; Stage 2c's are Stage 1's with its own laid over them."""
        if name == "stage2c":
            return merge(self.settings["stage1"], self.settings["stage2c"])
        return copy.deepcopy(self.settings[name])

    @property
    def training_seeds(self) -> range:
        """The training seeds' indices: each DPO/GRPO stage trains one adapter per index (``training_seeds``)."""
        count = self.settings["training_seeds"]
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"{self.describe()}: training_seeds must be a whole number of 1 or more, got {count!r}")
        return range(count)

    def training(self, stage: str, seed: int = 0):
        """The DPO settings of a training stage (``stage1`` or ``stage2c``), checked against TRL and PEFT; training
        seed ``seed`` (an index) trains with the recipe's seed plus ``seed``."""
        from shared_utils.training import TrainingSettings

        if stage not in TRAINING_STAGES:
            raise ValueError(f"unknown training stage {stage!r}; expected one of {', '.join(TRAINING_STAGES)}")
        section, protocol = self.section(stage), self.protocol()
        return TrainingSettings(dpo=_seeded(section["training"], seed), lora=section["lora"], max_pairs=section["max_pairs"],
                                reference=section.get("reference", "base"), protocol=protocol.name,
                                training_format=protocol.training_format,
                                load_dtype="float32" if protocol.training_dtype == "float32" else None,
                                load_in_4bit=section["load_in_4bit"],
                                where=f"{self.describe()}: {stage}")

    def protocol(self):
        """The recipe's ``protocol``: a name with its single switches laid over it (``protocol.Protocol``)."""
        from shared_utils.protocol import resolve

        section = self.settings["protocol"]
        return resolve(section["name"], **(section.get("switches") or {}))

    def grpo(self, seed: int = 0):
        """The GRPO stage's settings (beyond the paper), checked against TRL, PEFT and ``rewards``; a fresh
        adapter's LoRA fields are Stage 1's with the stage's own laid over them; ``seed`` as ``training``'s."""
        from shared_utils.training import GRPOSettings

        section = self.section("grpo")
        return GRPOSettings(grpo=_seeded(section["training"], seed), lora=merge(self.settings["stage1"]["lora"], section["lora"]),
                            reward=section["reward"], start=section["start"], limit=section["limit"],
                            where=f"{self.describe()}: grpo")

    def layout(self, **folders):
        """The model's artifact layout; the folders it writes are named after the recipe's epochs."""
        from shared_utils.layout import ArtifactLayout

        return ArtifactLayout.for_model(self.spec, problem_set=self.problem_set,
                                        epochs=self.section("stage1")["training"]["num_train_epochs"],
                                        further_epochs=self.section("stage2c")["training"]["num_train_epochs"],
                                        **folders)

    def describe(self) -> str:
        return " + ".join(self.layers)


def _seeded(training: dict, seed: int) -> dict:
    """TRL's fields for training seed ``seed``: the recipe's ``seed`` (TRL's default 42 when unset) plus the index."""
    return training if not seed else {**training, "seed": training.get("seed", 42) + seed}


def load(model: str | None = None, *overlays: dict | str | Path, recipe: str | Path | None = None,
         protocol: str | dict | None = None) -> Recipe:
    """The paper's settings, then the model's recipe (or ``recipe``), then each overlay in order.

    A model added as a folder names a registered ``base``: its recipe comes between the paper's
    settings and the folder's own.

    ``model=None`` (an unregistered model) keeps the paper's settings. An overlay is a mapping
    (a notebook's ``overrides``) or a YAML file (the smoke overlay). ``protocol`` (``paper`` or
    ``corrected``, or a ``{name, switches}`` section), when given, is laid over everything (a notebook's
    ``protocol``, or a verb's ``--protocol`` and ``--switch``).
    """
    if protocol is not None:
        overlays = (*overlays, {"protocol": protocol if isinstance(protocol, dict) else {"name": protocol}})
    settings = read_yaml(PAPER)
    layers = [_relative(PAPER)]
    source = _find(recipe) if recipe else (recipe_file(model) if model else None)
    base = base_of(source) if source else None
    for layer in ([recipe_file(base)] if base else []) + ([source] if source else []) + list(overlays):
        values = read_yaml(layer) if isinstance(layer, (str, Path)) else dict(layer)
        where = _relative(Path(layer)) if isinstance(layer, (str, Path)) else "overrides"
        check_keys(values, where)
        settings = merge(settings, values)
        if values or where != "overrides":
            layers.append(where)
    return Recipe(model=model, settings=settings, layers=tuple(layers), base=base)


def base_of(source: Path) -> str | None:
    """The registered model a recipe starts from (its ``base``), checked; None when it names none."""
    base = read_yaml(source).get("base")
    if base is not None and base not in REGISTRY:
        raise ValueError(f"{_relative(source)}: `base` must name a registered model ({', '.join(REGISTRY)}), "
                         f"got {base!r}")
    return base


def _find(recipe: str | Path) -> Path:
    """A recipe path as given, else relative to the repository root (notebooks run in their own folder)."""
    path = Path(recipe)
    if path.is_file() or path.is_absolute():
        return path
    return paths.REPO_ROOT / path


def _relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(paths.REPO_ROOT)) if path.is_relative_to(paths.REPO_ROOT) else str(path)
