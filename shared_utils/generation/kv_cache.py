"""A key/value cache that appends in place, for the ``local`` backend's sampling loop.

transformers' ``DynamicLayer`` grows by ``torch.cat`` at every step, copying the whole cache
of every layer for each new token: on a CPU that copy was about a sixth of a decode step of
``smollm2-135m`` (48 rows, 300 cached tokens). ``SlackLayer`` keeps spare room along the
sequence axis and writes each new token into it; attention reads a view of the filled part.
The values attention sees are the same, so the sampled tokens are the same (CPU SDPA takes
strided inputs as they are). Unlike ``StaticCache`` it needs no maximum length in advance and
keeps ``batch_select_indices``, which the loop uses to drop finished rows.
"""

from __future__ import annotations

from transformers.cache_utils import DynamicCache, DynamicLayer

GROW_BY = 256  # tokens of spare room added when the buffer is full
KINDS = ("slack", "dynamic")


class SlackLayer(DynamicLayer):
    """``DynamicLayer`` with room to spare: ``keys``/``values`` are views of the first ``length`` positions."""

    def lazy_initialization(self, key_states, value_states) -> None:
        super().lazy_initialization(key_states, value_states)
        self._keys = self._values = None
        self.length = 0

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        if self._keys is None or self.length + new > self._keys.shape[-2]:
            self._grow(key_states, value_states, self.length + new + GROW_BY)
        self._keys[..., self.length:self.length + new, :].copy_(key_states)
        self._values[..., self.length:self.length + new, :].copy_(value_states)
        self.length += new
        self._view()
        return self.keys, self.values

    def _grow(self, key_states, value_states, capacity: int) -> None:
        keys = key_states.new_empty((*key_states.shape[:-2], capacity, key_states.shape[-1]))
        values = value_states.new_empty((*value_states.shape[:-2], capacity, value_states.shape[-1]))
        if self.length:
            keys[..., :self.length, :].copy_(self.keys)
            values[..., :self.length, :].copy_(self.values)
        self._keys, self._values = keys, values

    def _view(self) -> None:
        self.keys = self._keys[..., :self.length, :]
        self.values = self._values[..., :self.length, :]

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative number of tokens to remove, not {tokens_to_remove}")
        if tokens_to_remove and self.is_initialized:
            self.length = max(0, self.length + tokens_to_remove)
            self._view()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.get_seq_length() > 0:
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self._view()

    def batch_select_indices(self, indices) -> None:
        if self.get_seq_length() > 0:
            self._keys = self._keys[indices, ...]
            self._values = self._values[indices, ...]
            self._view()

    def reset(self) -> None:
        self._keys = self._values = None
        self.length = 0
        super().reset()

    # -- for continuous batching (``stream.py``): rows of fixed slots, each refilled with a new prompt
    def allocate(self, rows: int, like_keys, like_values, length: int, capacity: int) -> None:
        """An empty (zero) buffer of ``rows`` x ``capacity`` positions, of which the first ``length`` are in use."""
        self.lazy_initialization(like_keys, like_values)
        self._keys = like_keys.new_zeros((rows, *like_keys.shape[1:-2], capacity, like_keys.shape[-1]))
        self._values = like_values.new_zeros((rows, *like_values.shape[1:-2], capacity, like_values.shape[-1]))
        self.length = length
        self._view()

    def place(self, slots, key_states, value_states) -> None:
        """Rows ``slots`` start afresh: zero, then a prompt's keys/values ending at the current length."""
        new = key_states.shape[-2]
        self._keys[slots] = 0
        self._values[slots] = 0
        self._keys[slots, ..., self.length - new:self.length, :] = key_states
        self._values[slots, ..., self.length - new:self.length, :] = value_states

    def relayout(self, start: int, length: int, capacity: int) -> None:
        """Keep positions ``start`` to the current length, moved to end at ``length``, in a zeroed buffer of
        ``capacity`` positions (drops positions no row attends to any more, or makes room on the left)."""
        kept = self.length - start
        for name in ("_keys", "_values"):
            old = getattr(self, name)
            new = old.new_zeros((*old.shape[:-2], capacity, old.shape[-1]))
            new[..., length - kept:length, :] = old[..., start:self.length, :]
            setattr(self, name, new)
        self.length = length
        self._view()


class SlackCache(DynamicCache):
    """A ``DynamicCache`` whose layers are ``SlackLayer``s (for models whose layers all attend globally)."""

    def __init__(self):
        super(DynamicCache, self).__init__(layer_class_to_replicate=SlackLayer)


def new_cache(kind: str, model):
    """The cache the sampling loop starts from: ``"slack"`` (ours) or ``"dynamic"`` (transformers' default).

    Models with sliding-window layers (Gemma 3) keep transformers' cache, which knows their layer types.
    """
    check_kind(kind)
    config = model.config.get_text_config(decoder=True)
    if kind == "dynamic" or any(t != "full_attention" for t in getattr(config, "layer_types", None) or ()):
        return DynamicCache(config=model.config)
    return SlackCache()


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kv_cache={kind!r}: expected one of {', '.join(KINDS)}")
    return kind
