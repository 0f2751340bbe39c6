"""Conversation -> token ids for decoder reward models, shared by every chat-template family.

The conversation is rendered with the chat template and tokenized without adding special tokens, so BOS
comes from the template only (as `apply_chat_template(tokenize=True)` does); a doubled leading BOS is
collapsed to one. Families that score at a special token (InternLM2's reward token) append `suffix_ids`,
which survive truncation like the BOS does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ...errors import RowError
from ...scorer import Conversation
from ..loading import ModelLoadError

PROBE: Conversation = [  # a short conversation every chat template renders
    {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def read_template(value: str | None) -> str | None:
    """A chat template given as a Jinja string or as a path to a file holding one."""
    if value is None:
        return None
    if len(value) < 4096 and "{" not in value and Path(value).is_file():
        return Path(value).read_text(encoding="utf-8")
    return value


class ChatEncoder:
    def __init__(
        self, tokenizer, chat_template: str | None = None, suffix_ids: Sequence[int] = (), bos: str = "template"
    ):
        self.tokenizer = tokenizer
        self.chat_template = read_template(chat_template)
        self.suffix_ids = list(suffix_ids)
        self.bos_policy = bos
        self.bos_id = tokenizer.bos_token_id
        if self.chat_template is None and not getattr(tokenizer, "chat_template", None):
            raise ModelLoadError(
                "the tokenizer has no chat template, so rewardmill cannot render conversations the way the "
                "model was trained; pass one with --chat-template FILE_OR_STRING (API: chat_template=...)"
            )

    def render(self, conversation: Conversation) -> str:
        return self.tokenizer.apply_chat_template(conversation, chat_template=self.chat_template, tokenize=False)

    def encode(self, conversation: Conversation) -> tuple[list[int], int, int]:
        """(ids, prefix, suffix): token ids and how many leading/trailing ids must survive truncation."""
        try:
            text = self.render(conversation)
        except Exception as error:  # Jinja raise_exception(), e.g. "roles must alternate"
            raise RowError(f"the chat template rejected this conversation: {error}") from None
        return self.encode_rendered(text)

    def encode_rendered(self, text: str, add_special_tokens: bool = False) -> tuple[list[int], int, int]:
        """Like `encode`, for text already rendered with the template (a trainer's query). With
        `add_special_tokens` the tokenizer adds its BOS, but text that already starts with one keeps one."""
        ids = self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
        if self.bos_id is not None:
            while len(ids) > 1 and ids[0] == ids[1] == self.bos_id:
                ids = ids[1:]
            if self.bos_policy == "strip" and ids[:1] == [self.bos_id]:
                ids = ids[1:]
            elif self.bos_policy == "add" and ids[:1] != [self.bos_id]:
                ids = [self.bos_id, *ids]
        starts_with_bos = self.bos_id is not None and ids[:1] == [self.bos_id]
        return ids + self.suffix_ids, int(starts_with_bos), len(self.suffix_ids)

    def describe(self) -> dict[str, str]:
        source = "given by the user" if self.chat_template else "of the tokenizer"
        suffix = f", then token ids {self.suffix_ids} appended" if self.suffix_ids else ""
        return {"input": f"conversation rendered with the chat template {source}{suffix}", "BOS": self.bos_report()}

    def bos_report(self) -> str:
        tok = self.tokenizer
        if self.bos_id is None:
            return "the tokenizer has no BOS token"
        if self.bos_policy == "strip":
            return f"BOS {tok.bos_token!r} removed (quirk: bos=strip)"
        if self.bos_policy == "add":
            return f"exactly one BOS {tok.bos_token!r} at the start (quirk: bos=add)"
        template_bos = tok(self.render(PROBE), add_special_tokens=False)["input_ids"][:1] == [self.bos_id]
        tokenizer_bos = tok("x")["input_ids"][:1] == [self.bos_id]
        if template_bos and tokenizer_bos:
            return f"template writes BOS {tok.bos_token!r} and the tokenizer would add another; rewardmill keeps one"
        if template_bos:
            return f"template writes BOS {tok.bos_token!r}; rewardmill adds none"
        return "template writes no BOS; rewardmill adds none (as apply_chat_template does)"


def pad_token(tokenizer) -> tuple[int, str]:
    """The pad id to use. Pads are masked and never read, so any id works when the tokenizer has none."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id, f"{tokenizer.pad_token!r} (id {tokenizer.pad_token_id})"
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id, f"none in the tokenizer; using EOS {tokenizer.eos_token!r} (masked, never scored)"
    return 0, "none in the tokenizer; using id 0 (masked, never scored)"
