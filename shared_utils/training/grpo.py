"""Beyond the paper: online refinement with GRPO + LoRA (TRL's ``GRPOTrainer``), rewarded by the sandbox and MI.

The paper trains offline on preference pairs collected beforehand. Here every step samples
``num_generations`` answers per training prompt from the current policy, scores them all with the
recipe's rewards by name (``rewards.REWARDS``, weighted as ``grpo.reward.functions`` says; one
``rewards.Judge`` and one sandbox batch for all of them) and moves the policy towards the better
answers of each group. The start is a parameter: the self-tuned ``-dpo-further`` adapter, the Stage-1 ``-dpo``
adapter, or the base model.

Reference model, as TRL 1.16 does it (``GRPOTrainer.__init__``): handed a ``PeftModel`` with a
pretrained adapter and ``beta > 0``, it copies the adapter into a frozen ``"ref"`` adapter, so the
KL term keeps the policy near where GRPO started; from the base model (a fresh LoRA made from
``peft_config``) the reference is the base with the adapter switched off. ``"ref"`` is left out of
the saved output.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from shared_utils import files, models, prompts
from shared_utils.training.config import GRPOSettings
from shared_utils.training.dpo import (is_complete, keep_only_trained_adapter, keep_trainable_weights_float32,
                                       language_model_only, prepare_work_dir, use_bf16)

PROMPT_COLUMNS = ("prompt", "task_id", "test_list", "test_setup_code")


def prompt_dataset(problems: list[dict], spec: models.ModelSpec | None = None):
    """The training prompts as TRL's conversational prompts, with the columns the reward reads.

    Models without a system role get the system text folded into the user turn, as everywhere
    else (``prompts.render``); TRL applies the chat template itself.
    """
    from datasets import Dataset

    fold = spec is not None and not spec.quirks.system_role
    rows = [{"prompt": prompts.fold_system(prompts.messages(p["text"])) if fold else prompts.messages(p["text"]),
             "task_id": p["task_id"], "test_list": list(p["test_list"]),
             "test_setup_code": p.get("test_setup_code") or ""} for p in problems]
    return Dataset.from_list(rows)


def build_trainer(model: str, dataset, work_dir: Path, *, settings: GRPOSettings, init_adapter=None,
                  reward: Callable | None = None, progress: bool = True):
    """A ``GRPOTrainer`` on ``model`` (plus ``init_adapter``, trainable) rewarded by the recipe's rewards by name,
    or by ``reward`` alone (tests)."""
    from peft import PeftModel
    from trl import GRPOTrainer

    from shared_utils.rewards import Judge

    loaded = models.load_model(model, trainable=True)
    base, spec = loaded.model, loaded.spec
    config = settings.grpo_config(str(work_dir), bf16=use_bf16(spec, settings.grpo.get("bf16")), progress=progress)
    if spec is not None and spec.quirks.template_kwargs and not settings.grpo.get("chat_template_kwargs"):
        config.chat_template_kwargs = dict(spec.quirks.template_kwargs)
    judge = Judge(settings.reward_settings(), max_completion_length=config.max_completion_length)
    if reward is None:
        config.reward_weights = judge.settings.weights()
    common = dict(reward_funcs=[reward] if reward else judge.reward_functions(), args=config, train_dataset=dataset,
                  processing_class=loaded.tokenizer)
    if init_adapter is None:
        trainer = GRPOTrainer(model=base, peft_config=language_model_only(settings.peft_config(), base), **common)
    else:
        trainer = GRPOTrainer(model=PeftModel.from_pretrained(base, str(init_adapter), is_trainable=True), **common)
    judge.eos_token_ids = tuple(trainer.eos_token_ids)  # what ends a completion, as the trainer decides it
    keep_trainable_weights_float32(trainer.model)
    return trainer


def identity(model: str, problems: list[dict], settings: GRPOSettings, *, init_adapter=None,
             problems_source: str = "in memory", reward: Callable | None = None) -> dict:
    """What a GRPO run is made of (resume, reuse and the card check it): the model, the prompts, the starting
    adapter and its weights' hash, the reward and every setting."""
    from shared_utils.manifest import adapter_sha256

    return dict(model=str(model), init_adapter=str(init_adapter) if init_adapter else None,
                init_adapter_sha256=adapter_sha256(init_adapter), problems=problems_source,
                task_ids=[p["task_id"] for p in problems[: settings.limit]],
                reward_function=getattr(reward, "__name__", "custom") if reward else "rewards by name",
                **settings.as_dict())


def train_grpo(model: str, problems: list[dict], out_dir: str | os.PathLike, *, settings: GRPOSettings,
               init_adapter: str | os.PathLike | None = None, problems_source: str = "in memory",
               reward: Callable | None = None, progress: bool = True, overwrite: bool = False):
    """Refine ``init_adapter`` (or a fresh LoRA on the base) with GRPO on ``problems``; save to ``out_dir``.

    As ``train_dpo``: training happens in ``<out_dir>.work/`` with checkpoints and resumes after
    an interruption when the settings match; ``out_dir`` appears only when complete, and an
    existing complete one is reused only when made with the same ``identity`` (``overwrite`` makes it
    again). Single process.
    """
    from shared_utils.training import card

    out_dir = Path(out_dir)
    if init_adapter is not None and not (Path(init_adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{init_adapter}: no adapter to start GRPO from (train it first, or set grpo.start)")
    made = identity(model, problems, settings, init_adapter=init_adapter, problems_source=problems_source,
                    reward=reward)
    if is_complete(out_dir) and not overwrite:
        return card.reuse(out_dir, made)
    problems = problems[: settings.limit]
    dataset = prompt_dataset(problems, models.find_spec(model))
    work_dir = out_dir.with_name(out_dir.name + ".work")
    resume = prepare_work_dir(work_dir, made)
    trainer = build_trainer(model, dataset, work_dir, settings=settings, init_adapter=init_adapter, reward=reward,
                            progress=progress)
    trainer.train(resume_from_checkpoint=True if resume else None)
    final = work_dir / "final"
    trainer.save_model(str(final))
    keep_only_trained_adapter(final, trainer)
    spec = models.find_spec(model)
    card.write_grpo_artifacts(final, trainer, name=out_dir.name, identity=made, prompts=len(problems),
                              base_model=models.resolve(model) if spec is None else spec.hub_id)
    with files.atomic_path(out_dir) as tmp:
        os.replace(final, tmp)
    shutil.rmtree(work_dir, ignore_errors=True)
    return card.read_result(out_dir)
