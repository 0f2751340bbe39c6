"""`rewardmill serve`: a reward model over HTTP for online RL trainers."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ..errors import OptionsError, RewardmillError
from ..option_fields import ENGINE
from .common import ModelOpt, NormalizeOpt, model_or_default, normalized, quiet_transformers, read_calibration
from .flags import choice_type, model_spec, with_model_flags
from .reporting import fail

SHORT_HELP = "Serve a reward model over HTTP for online RL trainers (OpenRLHF, verl, vLLM clients, /v1/rewards)."
OverLongChoice = choice_type(("truncate", "error"))


@with_model_flags
def serve(
    model: ModelOpt = None,
    host: Annotated[str, typer.Option(
        help="Address to listen on. Loopback by default: serving other machines is a choice (then set "
        "--api-key-env).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key_env: Annotated[Optional[str], typer.Option(
        help="Environment variable holding an API key: every route but /health then needs 'Authorization: Bearer "
        "<key>' (the key is never printed).")] = None,
    max_delay_ms: Annotated[float, typer.Option(
        help="How long an idle model waits for more requests to batch with the first one.",
        rich_help_panel=ENGINE)] = 2.0,
    max_queue: Annotated[int, typer.Option(
        help="Inputs that may wait for the model; past that, requests get a fast 503 with Retry-After.",
        rich_help_panel=ENGINE)] = 4096,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body (413 past it).")] = 32.0,
    over_long: Annotated[OverLongChoice, typer.Option(
        help="An input over --max-length: truncate (keep its end, or the side --truncation names; counted in "
        "/metrics and logged) or error (a 422 naming it: the whole request fails).")] = OverLongChoice("truncate"),
    access_log: Annotated[bool, typer.Option("--access-log",
        help="Log one line per request (method, path, status; never the body).")] = False,
    normalize: NormalizeOpt = None,
    **model_flags: Any,
) -> None:
    """Serve a reward model over HTTP for online RL trainers: OpenRLHF (/get_reward), verl and vLLM clients
    (/classify, /pooling, /score), and rewardmill's own /v1/rewards; requests from all clients are batched together."""
    import os

    quiet_transformers()
    try:
        from ..runs.preflight import require_extra
        from ..server import ServerOptions
        from ..server.run import run_server

        require_extra("uvicorn", "serve", "rewardmill serve")

        api_key = None
        if api_key_env is not None:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise OptionsError(f"--api-key-env {api_key_env}: that environment variable is not set")
        options = ServerOptions(max_delay=max_delay_ms / 1000, max_queue=max_queue,
                                max_body_bytes=int(max_body_mb * 1024 * 1024), api_key=api_key,
                                over_long=over_long.value)
        calibration = read_calibration(normalize)
        spec = model_spec(model_or_default(model), model_flags)
        run_server(normalized(spec.scorer(), calibration), host=host, port=port, options=options, access_log=access_log)
    except RewardmillError as error:
        fail(str(error))
    except ImportError as error:
        fail(f"rewardmill serve needs the serve extra: pip install 'rewardmill[serve]' ({error})")
