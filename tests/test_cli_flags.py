"""The CLI's flags are generated from the option fields: every model-loading command takes the same model flags,
every option field has a flag (or says why not), `--help` is cheap, and a model spec is plain JSON without the token."""

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass

import typer
from typer.testing import CliRunner

from rewardmill.cli import app
from rewardmill.cli.flags import build, flag_names, with_flags
from rewardmill.judges.spec import JudgeSpec
from rewardmill.option_fields import flag_of, is_api_only, option
from rewardmill.reward_models.family_options import FAMILY_OPTIONS
from rewardmill.reward_models.options import GROUPS, LoadOptions
from rewardmill.reward_models.spec import ModelSpec

MODEL_COMMANDS = ("score", "dpo", "serve", "calibrate", "eval", "inspect")


def commands() -> dict:
    return typer.main.get_command(app).commands


def test_every_model_loading_command_takes_the_same_model_flags():
    model_flags = set(flag_names(ModelSpec))
    for name in MODEL_COMMANDS:
        taken = {param.name for param in commands()[name].params}
        assert model_flags <= taken, (name, model_flags - taken)
    # and none of the commands that load no reward model takes them
    assert not model_flags & {param.name for param in commands()["judge"].params} - {"device", "dtype", "batch_size"}


def test_every_option_field_has_a_flag_or_says_why_not():
    groups = [ModelSpec, *GROUPS.values(), *FAMILY_OPTIONS, JudgeSpec]
    for group in groups:
        for field in dataclasses.fields(group):
            nested = dataclasses.is_dataclass(field.default_factory) or field.name in ("model", "family")
            assert nested or flag_of(field) is not None or is_api_only(field), f"{group.__name__}.{field.name}"
    flags = {param.name for param in commands()["score"].params}
    for group in (*GROUPS.values(), *FAMILY_OPTIONS):
        for field in dataclasses.fields(group):
            if flag_of(field) is not None:
                assert flag_of(field).parameter in flags, f"{group.__name__}.{field.name}"


def test_fixed_values_are_shown_as_choices():
    fixed = ("--kind", "--dtype", "--truncation", "--padding-side", "--score-token", "--engine", "--cpu-kernel",
             "--threads", "--task", "--backend", "--scoring", "--strategy", "--layout", "--judge-task", "--aspect",
             "--out-of-scale", "--shape", "--over-long")
    for name in commands():
        shown = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "3000", "TERM": "dumb"}).output
        for line in shown.splitlines():
            words = line.replace("│", " ").replace("*", " ").split()
            if words and words[0] in fixed:
                assert "|" in words[1], (name, line)


def test_every_command_has_a_whole_sentence_as_short_help():
    for name, command in commands().items():
        assert command.short_help and command.short_help.endswith(".") and "\n" not in command.short_help, name


def test_eval_layouts_are_the_evaluations():
    from rewardmill.cli.eval import LAYOUTS
    from rewardmill.evaluation.layouts import LAYOUTS as evaluated

    assert LAYOUTS == evaluated


def test_help_imports_neither_torch_nor_transformers():
    code = ("import sys\nfrom rewardmill.cli import app\n"
            "for args in (['--help'], ['score', '--help'], ['judge', '--help']):\n"
            "    try:\n        app(args)\n    except SystemExit:\n        pass\n"
            "print('heavy:', sorted({'torch', 'transformers'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("heavy: []")


def test_a_model_spec_round_trips_through_json_without_its_token():
    spec = ModelSpec("some/model", kind="pair", quirks=None,
                     load=LoadOptions(token="hf_secret", device_map={"": 0}, dtype="bf16"),
                     family={"alpha": 2.5, "model_kwargs": {"k": 1}, "label": None})
    text = json.dumps(spec.to_dict())
    assert "hf_secret" not in text and "hf_secret" not in repr(spec)
    back = ModelSpec.from_dict(json.loads(text))
    assert back.load.token is None and back.load.device_map == {"": 0} and back.load.dtype == "bfloat16"
    assert back.family == {"alpha": 2.5, "model_kwargs": {"k": 1}}
    assert back.to_dict() == spec.to_dict()


def test_the_cli_builds_the_spec_from_the_model_flags():
    from rewardmill.cli.flags import model_spec, parameters

    defaults = {p.name: p.default for p in parameters(ModelSpec)}
    assert model_spec("m", defaults).to_dict() == ModelSpec("m", cpu=dataclasses.replace(
        ModelSpec().cpu, threads="auto")).to_dict()  # --threads defaults to auto on the command line


def test_a_new_option_is_one_field():
    @dataclass(frozen=True)
    class Toy:
        size: int = option(3, help="How big.")
        mode: str = option("a", help="Which.", choices=("a", "b"))
        pairs: dict = option(flag="--pair", default_factory=dict, help="K=V.", cli_type=list[str], cli_default=None,
                             parse=lambda given: dict(item.split("=") for item in given or []))

    seen = []

    @with_flags(Toy)
    def command(**flags):
        seen.append(build(Toy, flags))

    toy = typer.Typer()
    toy.command()(command)
    result = CliRunner().invoke(toy, ["--size", "5", "--mode", "b", "--pair", "x=1"])
    assert result.exit_code == 0, result.output
    assert seen == [Toy(size=5, mode="b", pairs={"x": "1"})]
    assert CliRunner().invoke(toy, ["--mode", "c"]).exit_code == 2
