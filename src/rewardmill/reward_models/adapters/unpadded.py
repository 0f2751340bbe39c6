"""Unpadded batches for SDPA models: every matrix multiply runs on the batch's real tokens only, side by side,
and only the attention sees them in rows (padded rows, or a shared prefix and its continuations piece by piece).

A padded batch spends the linear layers' work on its padding too, and the length-sorted batches that keep padding
small are often short: small matrix multiplies, which run well below the CPU's peak. Here the model runs on one
row of every real token ([1, tokens], positions as each item has them alone), and rewardmill's attention function
gathers each layer's queries, keys and values into the batch's padded layout (`Layout`), runs transformers' own
SDPA attention there (causal), and scatters the result back. Grouped rows (prefix sharing) run their attention
piece by piece instead (`Piece`): the prefix causally, then each continuation's queries against the prefix's keys
and its own (causally with the prefix's queries in front where that is less work than a mask), so no work is spent
on the pairs a block mask would hide (siblings, padding). This is vLLM's layout (packed tokens, attention per
sequence, a continuation reading its prefix's keys) built from torch's SDPA.

The function is registered with transformers under `ATTENTION` and the model's config is switched to it
(`switch`); outside a `layout(...)` block it is plain SDPA with SDPA's masks, so other uses of the model are
unchanged. `check` runs a probe to confirm that the model's attention really goes through it.

Where the adapter reads only each item's last token (`Adapter.reads_last_tokens_only`), the last decoder layer's
output projection and MLP run on those tokens only (`read_rows_only`): after the last attention nothing mixes
tokens, so the other tokens' final hidden states are never needed. That is most of one layer's work.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch

from .base import Adapter, Batch, Encoded
from .batching import collate
from .sharing import UNPADDED_SDPA, decoder_layers, sliding_window, text_config

ATTENTION = UNPADDED_SDPA


@dataclass(frozen=True)
class Piece:
    """One attention call of a grouped batch: the queries at `start:end` of the unpadded row see the keys at
    `prefix` (a shared prefix's `start, end`, or None) followed by their own, causally."""

    start: int
    end: int
    prefix: tuple[int, int] | None = None


@dataclass
class Layout:
    """Where each real token of an unpadded batch sits in the attention's padded rows. `index` [rows, width]: the
    token (column of the unpadded row) at each slot, 0 on padding; `slots` [tokens]: each token's slot in the
    flattened rows (right-padded rows, causal). Grouped rows instead run as `pieces`, in the unpadded row's order;
    `segments`: their segments (`batching.collate_grouped`), None for one item per row."""

    index: torch.Tensor
    slots: torch.Tensor
    pieces: list[Piece] | None = None
    segments: torch.Tensor | None = None
    reads: torch.Tensor | None = None  # the tokens read after the last layer (`read_rows_only`)
    calls: int = field(default=0, compare=False)  # attention layers run under this layout (see `check`)
    masks: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, compare=False, repr=False)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """[1, heads, tokens, d] -> [rows, heads, width, d]."""
        return x[0][:, self.index].transpose(0, 1)

    def scatter(self, out: torch.Tensor) -> torch.Tensor:
        """SDPA's [rows, width, heads, d] -> [1, tokens, heads, d]."""
        rows, width = self.index.shape
        return out.reshape(rows * width, *out.shape[2:])[self.slots][None]

    def continuation_mask(self, length: int, prefix: int, device: torch.device) -> torch.Tensor:
        """[1, 1, length, prefix + length]: each of a continuation's queries sees the whole prefix and its own
        earlier tokens (made once per shape and batch, then read by every layer)."""
        key = (length, prefix)
        if key not in self.masks:
            visible = torch.ones(length, prefix + length, dtype=torch.bool, device=device).tril(prefix)
            self.masks[key] = visible[None, None]
        return self.masks[key]


def _pieces_attention(sdpa_attention_forward, active: Layout, module, query, key, value, **kwargs) -> torch.Tensor:
    """SDPA piece by piece (`Piece`): [1, heads, tokens, d] in, [1, tokens, heads, d] out.

    A continuation at least as long as its prefix runs causally with the prefix's queries in front (their outputs
    are dropped): (prefix + length)^2 / 2 query-key pairs against length x (prefix + length) under a mask, which
    torch's CPU kernel computes whole; a shorter one reads the prefix's keys under the mask."""
    outs = []
    for piece in active.pieces:
        span = slice(piece.start, piece.end)
        q, k, v = query[:, :, span], key[:, :, span], value[:, :, span]
        length, mask, causal = piece.end - piece.start, None, True
        if piece.prefix is not None:
            first, last = piece.prefix
            shared = slice(first, last)
            adjacent = last == piece.start  # the first continuation follows its prefix
            if adjacent:
                k, v = key[:, :, first:piece.end], value[:, :, first:piece.end]
            else:
                k, v = torch.cat([key[:, :, shared], k], 2), torch.cat([value[:, :, shared], v], 2)
            if length >= last - first:
                q = query[:, :, first:piece.end] if adjacent else torch.cat([query[:, :, shared], q], 2)
            elif length > 1:
                mask, causal = active.continuation_mask(length, last - first, query.device), False
            else:  # a single query sees every key: no mask
                causal = False
        out, _ = sdpa_attention_forward(module, q, k, v, mask, is_causal=causal, **kwargs)
        outs.append(out[:, -length:])
    return torch.cat(outs, 1)


_active: contextvars.ContextVar[Layout | None] = contextvars.ContextVar("rewardmill_layout", default=None)


@contextlib.contextmanager
def layout(active: Layout) -> Iterator[Layout]:
    """Run the model's attention in `active`'s rows for the duration of the block."""
    token = _active.set(active)
    try:
        yield active
    finally:
        _active.reset(token)


def _attention(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    active = _active.get()
    if active is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    active.calls += 1
    kwargs.pop("is_causal", None)  # causal comes from the layout
    if active.pieces is not None:
        return _pieces_attention(sdpa_attention_forward, active, module, query, key, value, **kwargs), None
    out, weights = sdpa_attention_forward(module, active.gather(query), active.gather(key), active.gather(value),
                                          None, is_causal=True, **kwargs)
    return active.scatter(out), weights


def _mask(*args, **kwargs):
    from transformers.masking_utils import sdpa_mask

    return None if _active.get() is not None else sdpa_mask(*args, **kwargs)


def register() -> None:
    """Make `ATTENTION` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, _attention)
    AttentionMaskInterface.register(ATTENTION, _mask)


def switch(model: torch.nn.Module, reads_last_tokens_only: bool = False) -> None:
    """Route `model`'s SDPA attention through the unpadded attention function; with `reads_last_tokens_only`, run
    the last layer's per-token work on the read tokens only (`read_rows_only`)."""
    register()
    model.config._attn_implementation = ATTENTION
    if reads_last_tokens_only:
        read_rows_only(model)


def switch_back(model: torch.nn.Module) -> None:
    """Undo `switch`: plain SDPA (the only implementation `refusal` lets through) and the whole last layer."""
    model.config._attn_implementation = "sdpa"
    read_rows_only(model, on=False)


def last_layer_token_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The last decoder layer's modules that work token by token after its attention: the MLP and the attention's
    output projection (those the layer has under the usual names), or none when the layer list is not found."""
    layers = decoder_layers(model)
    if layers is None:
        return []
    last = layers[-1]
    found = [getattr(last, "mlp", None), getattr(getattr(last, "self_attn", None), "o_proj", None)]
    return [m for m in found if isinstance(m, torch.nn.Module)]


def _read_rows_in(module, args):
    active = _active.get()
    if active is None or active.reads is None:
        return None
    return (args[0][:, active.reads], *args[1:])


def _read_rows_out(module, args, out):
    active = _active.get()
    if active is None or active.reads is None:
        return None
    full = out.new_zeros(1, active.slots.numel(), out.shape[-1])  # unread tokens: never read after this layer
    full[:, active.reads] = out
    return full


def last_layer_reads_only(model: torch.nn.Module) -> bool:
    """Whether `read_rows_only` is on for `model`."""
    return any(hasattr(m, "_rewardmill_reads_only") for m in last_layer_token_modules(model))


def read_rows_only(model: torch.nn.Module, on: bool = True) -> None:
    """Under a layout, the last layer's MLP and output projection run on the layout's `reads` only, their outputs
    put back in place (zeros elsewhere); outside one they run as always. Idempotent; `on=False` removes it (for a
    benchmark on a few of a model's layers, where the saving would count many times over)."""
    for module in last_layer_token_modules(model):
        handles = getattr(module, "_rewardmill_reads_only", None)
        if on and handles is None:
            module._rewardmill_reads_only = (module.register_forward_pre_hook(_read_rows_in),
                                             module.register_forward_hook(_read_rows_out))
        elif not on and handles is not None:
            for handle in handles:
                handle.remove()
            del module._rewardmill_reads_only


def refusal(adapter: Adapter) -> str | None:
    """Why `adapter`'s model cannot run unpadded (before the probe of `check`), or None when it may: a causal
    decoder read at one token that prefix sharing accepts (the same exactness conditions), with SDPA attention and
    no sliding window or logit soft-capping, which the layout's plain causal rows would drop."""
    if not adapter.can_pack:
        return f"the {adapter.kind} family's forward cannot read packed rows"
    why = adapter.prefix_sharing_refusal()
    if why:
        return why
    config = text_config(adapter.model.config)
    attention = getattr(adapter.model.config, "_attn_implementation", None)
    if attention not in ("sdpa", ATTENTION):
        return f"{attention} attention (the unpadded path runs SDPA)"
    if sliding_window(config) is not None:
        return "sliding-window attention layers"
    if getattr(config, "attn_logit_softcapping", None) is not None:
        return "attention logit soft-capping (SDPA has none)"
    return None


def pieces(segments: torch.Tensor) -> list[Piece]:
    """The attention pieces of right-padded grouped rows (`segments`: 0 on a shared prefix, k on a row's k-th
    continuation, -1 on padding), in the order of the rows' real tokens."""
    found: list[Piece] = []
    at = 0
    for row in segments.tolist():
        prefix = None
        for segment, run in itertools.groupby(row):
            if segment < 0:
                continue
            length = len(list(run))
            found.append(Piece(at, at + length, None if segment == 0 else prefix))
            if segment == 0:
                prefix = (at, at + length)
            at += length
    return found


def unpad(batch: Batch) -> Batch:
    """A padded batch (right-padded rows, or grouped rows) as one row of its real tokens, and the `Layout` that
    runs the attention on them in rows (or pieces)."""
    if batch.segments is not None:
        real = batch.segments >= 0
    else:
        real = batch.attention_mask.bool()
    rows, width = real.shape
    slots = real.reshape(-1).nonzero().squeeze(1)
    index = torch.zeros(rows * width, dtype=torch.long, device=real.device)
    index[slots] = torch.arange(len(slots), device=real.device)
    index = index.view(rows, width)
    item_rows = batch.row_of if batch.row_of is not None else torch.arange(len(batch.items), device=real.device)
    keep = real.reshape(-1)
    last_index = index[item_rows, batch.last_index]
    return replace(
        batch, input_ids=batch.input_ids.reshape(-1)[keep][None], attention_mask=None,
        position_ids=batch.position_ids.reshape(-1)[keep][None], last_index=last_index,
        token_type_ids=None, packed=True, row_of=None, segments=None,
        layout=Layout(index, slots, None if batch.segments is None else pieces(batch.segments), batch.segments,
                      reads=last_index))


def probe_items(adapter: Adapter) -> list[Encoded]:
    """The probe batch of `check`: two rows of different lengths of token ids the model's vocabulary has."""
    size = max(2, min(getattr(text_config(adapter.model.config), "vocab_size", None) or 2, 1000))
    return [Encoded([(7 * i + 3) % size for i in range(9)]), Encoded([(5 * i + 1) % size for i in range(4)])]


def check(adapter: Adapter) -> str | None:
    """Why the model cannot run unpadded, or None when it can: a probe batch of two rows of different lengths must
    run every attention layer through the unpadded function and score each row as its padded batch does."""
    padded = collate(probe_items(adapter), adapter.pad_token_id, "right", adapter.device)
    probe = unpad(padded)
    with torch.inference_mode():
        expected = adapter.forward(padded)
        with layout(probe.layout):
            try:
                got = adapter.forward(probe)
            except Exception as error:  # noqa: BLE001 - any failure means: keep padded rows, and say why
                return f"a probe batch failed unpadded ({type(error).__name__}: {error})"
    layers = getattr(text_config(adapter.model.config), "num_hidden_layers", None) or 1
    if probe.layout.calls < layers:
        return (f"its attention does not run through transformers' attention functions ({probe.layout.calls} of "
                f"{layers} layers did)")
    for name, value in expected.items():
        if not torch.allclose(got[name].float(), value.float(), atol=1e-3, rtol=1e-3):
            return f"a probe batch scored differently unpadded ({name}: {got[name].tolist()} vs {value.tolist()})"
    return None
