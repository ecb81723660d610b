"""The task-type table: what each AI task takes and produces, used to prompt, constrain and type-check plans."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from .types import arg_modality


class TaskType(BaseModel):
    """An AI task type: required inputs, optional inputs, extra parameters, and output modalities."""

    name: str
    description: str
    inputs: list[str]
    optional: list[str] = Field(default_factory=list)
    params: dict[str, str] = Field(default_factory=dict)
    outputs: list[str]
    # Its output is its input changed (an edited image, a cleaned recording), so a later task on the same input
    # usually means the changed one.
    edits: bool = False

    @property
    def arg_keys(self) -> list[str]:
        return [*self.inputs, *self.optional, *self.params]


def _t(
    name: str, description: str, inputs: str, outputs: str, optional: str = "", edits: bool = False, **params: str
) -> TaskType:
    return TaskType(
        name=name,
        description=description,
        inputs=inputs.split(),
        optional=optional.split(),
        outputs=outputs.split(),
        params=params,
        edits=edits,
    )


# The 24 task types of the paper's catalogue, plus image-editing (TaskBench's Hugging Face tool list).
DEFAULT_TASK_TYPES: tuple[TaskType, ...] = (
    _t(
        "text-classification",
        "label a text, e.g. its sentiment or topic",
        "text",
        "text",
        "",
        labels="candidate labels, comma separated",
    ),
    _t("token-classification", "find named entities or parts of speech in a text", "text", "text"),
    _t("text2text-generation", "rewrite a text: correct grammar, simplify, paraphrase", "text", "text"),
    _t("summarization", "shorten a text, keeping its main points", "text", "text"),
    _t(
        "translation",
        "translate a text into another language",
        "text",
        "text",
        "",
        tgt_lang="target language, e.g. French",
    ),
    _t("question-answering", "answer a question (text) from a context passage (text_2)", "text text_2", "text"),
    _t("conversational", "reply to a message as a chat assistant", "text", "text"),
    _t("text-generation", "write new text from a prompt", "text", "text"),
    _t("sentence-similarity", "score how similar two given texts are", "text text_2", "text"),
    _t("tabular-classification", "classify a table given as an image", "image", "text"),
    _t(
        "object-detection",
        "find, locate and count the separate objects in an image; draws boxes",
        "image",
        "text image",
    ),
    _t("image-classification", "name what a whole image shows, as one class label", "image", "text"),
    _t("image-to-text", "describe an image or read the text written in it", "image", "text"),
    _t("text-to-image", "draw an image from a text description", "text", "image"),
    _t("image-to-image", "transform an image, e.g. restyle or enhance it", "image", "image", "text", edits=True),
    _t("image-segmentation", "split an image into object or region masks", "image", "text image"),
    _t("depth-estimation", "estimate the depth of each pixel of an image", "image", "image"),
    _t("text-to-speech", "read a text aloud as speech audio", "text", "audio"),
    _t("automatic-speech-recognition", "transcribe speech audio into text", "audio", "text"),
    _t("audio-to-audio", "enhance or separate the sources of an audio clip", "audio", "audio", edits=True),
    _t("audio-classification", "label an audio clip, e.g. a command or an emotion", "audio", "text"),
    _t(
        "document-question-answering",
        "answer a question (text) about a document image: a scan, form, receipt or page",
        "image text",
        "text",
    ),
    _t(
        "visual-question-answering",
        "answer any question (text) about an image: colours, counts, actions, details",
        "image text",
        "text",
    ),
    _t("text-to-video", "make a video from a text description", "text", "video"),
    _t("image-editing", "change an image as a text instruction says", "image text", "image", edits=True),
)


# The task types the paper's catalogue has: all of the above but the ones TaskBench added.
PAPER_TASKS: tuple[str, ...] = tuple(t.name for t in DEFAULT_TASK_TYPES if t.name != "image-editing")


def normalize_task_name(name: str) -> str:
    """Lower-case and hyphenate a task name: `Object_Detection` -> `object-detection`."""
    return re.sub(r"[\s_]+", "-", name.strip().lower())


class TaskTable:
    """Lookup of task types by (normalised) name."""

    def __init__(self, types: tuple[TaskType, ...] | list[TaskType] = DEFAULT_TASK_TYPES) -> None:
        self._types = {t.name: t for t in types}

    def __contains__(self, name: str) -> bool:
        return name in self._types

    def __iter__(self):
        return iter(self._types.values())

    def names(self) -> list[str]:
        return list(self._types)

    def get(self, name: str) -> TaskType | None:
        return self._types.get(name)

    def resolve(self, name: str) -> TaskType | None:
        """The task type `name` denotes after normalisation, or None."""
        return self._types.get(name) or self._types.get(normalize_task_name(name))

    def subset(self, names: list[str] | set[str]) -> TaskTable:
        return TaskTable([t for t in self._types.values() if t.name in names])


def produces(task_type: TaskType, modality: str) -> bool:
    return any(arg_modality(out) == modality for out in task_type.outputs)
