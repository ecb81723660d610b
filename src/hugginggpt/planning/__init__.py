"""Stage 1, planning: a request (and chat history) becomes a validated task graph.

`references`: placeholders (`<resource>-N`) and file names in arguments; `rules`: the checks and repairs that make
an LLM's reply a valid plan; `schema`: the JSON schema for constrained decoding; `history`: the chat history that
fits the prompt; `demos`: the few-shot demos and the demo bank; `planner`: the `Planner` that prompts the LLM and
repairs its reply.
"""

from .demos import DemoBank, fit_demo, fit_demos, load_bank
from .history import estimate_tokens, trim_history
from .planner import Planner, plan_to_json
from .references import MEDIA_PATTERN, file_kind, media_kind, normalize_placeholders
from .rules import (
    MAX_ARG_CHARS,
    MAX_TASKS,
    PlanBuilder,
    parse_plan,
    raw_tasks,
    request_plan,
    salvage_plan,
    validate_plan,
)
from .schema import plan_schema

# `references` the function is not re-exported: `hugginggpt.planning.references` stays the module.
__all__ = [
    "MAX_ARG_CHARS",
    "MAX_TASKS",
    "MEDIA_PATTERN",
    "DemoBank",
    "PlanBuilder",
    "Planner",
    "estimate_tokens",
    "file_kind",
    "fit_demo",
    "fit_demos",
    "load_bank",
    "media_kind",
    "normalize_placeholders",
    "parse_plan",
    "plan_schema",
    "plan_to_json",
    "raw_tasks",
    "request_plan",
    "salvage_plan",
    "trim_history",
    "validate_plan",
]
