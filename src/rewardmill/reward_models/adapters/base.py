"""The one interface every model family implements, and the options every family shares.

An adapter owns a loaded model and its tokenizer. It turns a conversation into token ids (`encode`) and a
padded batch into named outputs, one value per row (`forward`). It declares how the engine must pad
(`padding_side`, `pad_token_id`), how the registry recognises its models (`detect`, `auto_classes`) and
which options it takes (`Options`, a dataclass). The engine never looks inside.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ...errors import OptionsError, RowError
from ...scorer import Conversation
from ..family_options import FamilyOptions, PaddingSide
from ..options import TextOptions

if TYPE_CHECKING:
    from .registry import Evidence


@dataclass
class Encoded:
    """Token ids of one item, unpadded. `token_type_ids`, when present, has the same length."""

    input_ids: list[int]
    token_type_ids: list[int] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Batch:
    """A batch, as the engine builds it. Padded: one row per item, `last_index[i]` the position of row i's last
    real token. Packed (`packed`): every item side by side in one row of shape [1, total] with no padding and no
    attention mask, positions restarting at 0 for each item (which is how the attention tells them apart), and
    `last_index[i]` the position of item i's last token in that row. Grouped (`row_of`): rows that share a prefix
    run it once, `attention_mask` is a 4D block mask [rows, 1, width, width] (or a flex attention BlockMask) and
    item i is read at `last_index[i]` of row `row_of[i]`. Unpadded (`layout`, see `unpadded`): packed, with the
    attention run in the padded or grouped rows the layout records."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    position_ids: torch.Tensor
    last_index: torch.Tensor
    token_type_ids: torch.Tensor | None
    items: list[Encoded]
    packed: bool = False
    row_of: torch.Tensor | None = None  # grouped: the row each item is read in (`batching.collate_grouped`)
    segments: torch.Tensor | None = None  # grouped: 0 on a shared prefix, k on a row's k-th continuation, -1 pad
    layout: Any = None  # unpadded (`unpadded.Layout`): where each token sits in the attention's rows


def forward_parameters(model: torch.nn.Module) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(model.forward).parameters


class Adapter(ABC):
    """Base class of model-family adapters."""

    kind: ClassVar[str]
    auto_classes: ClassVar[tuple[str, ...]]  # auto classes to load this family with, most specific first
    Options: ClassVar[type[FamilyOptions]] = FamilyOptions
    padding_side: PaddingSide = "right"

    def __init__(self, model: torch.nn.Module, tokenizer, text: TextOptions = TextOptions(),
                 options: FamilyOptions | None = None):
        from ..loading import default_max_length

        self.model = model
        self.tokenizer = tokenizer
        self.options = options if options is not None else self.Options()
        if not isinstance(self.options, self.Options):
            raise OptionsError(f"{type(self).__name__} takes {self.Options.__name__}, got {type(self.options).__name__}")
        self.max_length = text.max_length or default_max_length(model.config, tokenizer)
        self.truncation = text.truncation
        self.model_kwargs = dict(getattr(self.options, "model_kwargs", {}))
        # "score" comes first; families with several outputs (objectives, labels) add their names.
        self.output_names: tuple[str, ...] = ("score",)

    @classmethod
    def detect(cls, evidence: Evidence) -> str | None:
        """Why a checkpoint belongs to this family (a reason to show), or None. Never runs the model's code."""
        return None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def can_pack(self) -> bool:
        """Whether `forward` reads packed batches (see `Batch`); families that read padded rows only say no."""
        return False

    # Whether `forward` reads the final hidden state of each item's last token and nothing else: then an unpadded
    # batch's last layer runs its output projection and MLP on those tokens only (`unpadded.read_rows_only`).
    reads_last_tokens_only: bool = False

    def prefix_sharing_refusal(self) -> str | None:
        """Why rows that share a prefix cannot run it once in this model (see `batching.collate_grouped`), or
        None when they can and score exactly as alone. Families that read one token of a causal model say so."""
        return f"the {self.kind} family does not declare it"

    @property
    def shareable_length(self) -> int | None:
        """The longest row that may share a prefix (a sliding window's length), or None for any row."""
        return None

    @property
    @abstractmethod
    def pad_token_id(self) -> int: ...

    @abstractmethod
    def encode(self, conversation: Conversation) -> Encoded:
        """Token ids for one conversation. Raises RowError when it cannot be encoded. Must be thread-safe:
        it may not change the tokenizer or any other shared state."""

    def encode_text(self, text: str, add_special_tokens: bool = False) -> Encoded:
        """Token ids for text already rendered the way the model reads it (a trainer's templated query). Only
        chat-template families read such text; the others score a (prompt, response) pair."""
        raise RowError(f"a {self.kind} model scores a (prompt, response) pair, not one rendered text; send pairs "
                       "(text_1/text_2 to /score, or rows to /v1/rewards)")

    def encode_ids(self, ids: Sequence[int]) -> Encoded:
        """Token ids given as they are, checked against the vocabulary and fitted to the maximum length."""
        vocabulary = self.model.get_input_embeddings().num_embeddings
        if not ids:
            raise RowError("no token ids")
        for token in ids:
            if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocabulary:
                raise RowError(f"token id {token!r} is not in the model's vocabulary (0..{vocabulary - 1})")
        return Encoded(self.fit(list(ids)))

    @abstractmethod
    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Run the model on a padded batch; return each output name -> tensor of shape [batch]."""

    def describe(self) -> dict[str, str]:
        """What `rewardmill inspect` prints about this adapter."""
        config = getattr(self.model, "config", None)
        info = {
            "kind": self.kind,
            "architecture": ", ".join(getattr(config, "architectures", None) or [type(self.model).__name__]),
            "model class": type(self.model).__name__,
            "padding side (rewardmill)": self.padding_side,
            "max length": f"{self.max_length} tokens, truncation: {self.truncation}",
        }
        if self.model_kwargs:
            info["forward kwargs"] = ", ".join(f"{k}={v!r}" for k, v in self.model_kwargs.items())
        if len(self.output_names) > 1:
            info["outputs"] = ", ".join(self.output_names)
        return info

    def read_span(self, ids: list[int]) -> list[int]:
        """The leading part of `ids` that the score depends on. A causal model whose score is read before the
        end (a classifier reading the last token that is not its pad token) drops the ids after that token:
        the hidden state there cannot see them, and no engine then has to know where to read."""
        return ids

    def fit(self, ids: list[int], *, keep_prefix: int = 0, keep_suffix: int = 0) -> list[int]:
        """The ids the model runs on: `read_span`, then the truncation policy; `keep_prefix`/`keep_suffix` ids
        (BOS, a reward token) always survive."""
        ids = self.read_span(ids)
        if len(ids) <= self.max_length:
            return ids
        self.refuse_over_length(len(ids))
        head, tail = ids[:keep_prefix], ids[len(ids) - keep_suffix :]
        body = ids[keep_prefix : len(ids) - keep_suffix]
        room = self.max_length - len(head) - len(tail)
        if room <= 0:
            raise RowError(f"--max-length {self.max_length} leaves no room for the conversation")
        body = body[:room] if self.truncation == "right" else body[len(body) - room :]
        return self.read_span(head + body + tail)

    def refuse_over_length(self, length: int) -> None:
        """Raise the standard per-row error for an over-long input when truncation is off."""
        if self.truncation == "error":
            raise RowError(
                f"{length} tokens exceed the maximum length {self.max_length} "
                "(raise --max-length or choose --truncation left|right)"
            )
