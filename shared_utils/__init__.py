"""Shared library behind every notebook: data, prompts, sandboxed checking, generation,
preference building, DPO training and evaluation for maintainable-code fine-tuning.

Submodules are imported on demand (``from shared_utils import data``) so that light
steps such as the sandbox or MI scoring never pay for importing torch.
"""

__version__ = "0.1.0"
