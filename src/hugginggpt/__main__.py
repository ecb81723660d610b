"""`python -m hugginggpt`: the command line."""

from .cli import entrypoint

entrypoint()
