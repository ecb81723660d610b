"""Errors a user can act on. Each message says what was wrong and, where it helps, what to do."""


class HuggingGPTError(Exception):
    """Base of every error the CLI and server report as a one-line message instead of a traceback."""


class PlanError(HuggingGPTError, ValueError):
    """The LLM's plan cannot be made valid. The message says which task and why."""


class LLMError(HuggingGPTError, RuntimeError):
    """The LLM could not be reached or gave no usable reply."""


class OutputTruncated(LLMError):
    """Generation stopped at the token limit, so structured output is incomplete."""


class ModelFileError(LLMError):
    """The embedded model file is missing, corrupt, or cannot be assembled from its installed parts."""


class WorkspaceError(HuggingGPTError, ValueError):
    """An input path or URL is missing, outside the allowed folders, or not allowed to be fetched."""


class CatalogError(HuggingGPTError, RuntimeError):
    """A catalogue snapshot could not be read, written or refreshed."""


class ExpertError(HuggingGPTError, RuntimeError):
    """An expert model failed on its input, or is not available."""


class RayUnavailable(HuggingGPTError, RuntimeError):
    """The Ray executor cannot start: the `ray` extra is missing, or the cluster's address cannot be reached."""
