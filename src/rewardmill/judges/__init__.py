"""LLM judges: tasks (template + parser), backends (where requests go) and `Judge`, a `Scorer`."""

from .backends import Completion, GenerationSettings, OpenAIBackend
from .judge import Judge
from .parsing import ParseError
from .tasks import TASKS, Task, make_task

__all__ = ["Completion", "GenerationSettings", "Judge", "OpenAIBackend", "ParseError", "TASKS", "Task", "make_task"]
