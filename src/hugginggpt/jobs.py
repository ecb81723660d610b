"""Jobs: one task as an executor runs it, and what comes back, as plain data that can travel to another process
or machine (JSON or pickle). Files are artifact references (`Artifact`), opened through an `ArtifactStore`."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .types import Artifact, Backend, OutputValue


class Job(BaseModel):
    """A task ready to run: the chosen model, and arguments with every `<resource>-N` already substituted.

    `args` holds text (a document named in a text argument is its content) and parameters as strings, and each
    media argument as the reference of the file it names, whether another task made it or the user gave it.
    `backend` is where the selection found the model runnable; `timeout` the seconds the scheduler waits.
    """

    task_id: int
    task: str
    model_id: str
    backend: Backend | None = None
    args: dict[str, str | Artifact] = Field(default_factory=dict)
    timeout: float | None = None

    def shown_args(self) -> dict[str, str]:
        """The arguments as the task's result records them: a file by its path."""
        return {key: value.path if isinstance(value, Artifact) else value for key, value in self.args.items()}


class JobResult(BaseModel):
    """What a job gave: outputs keyed by modality (`text`, `image`, `audio`, `video`) or `json`, files as
    references into the request's artifact store."""

    task_id: int
    outputs: dict[str, OutputValue] = Field(default_factory=dict)
