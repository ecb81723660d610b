"""`python -m hugginggpt.cli`: the command line."""

from . import entrypoint

entrypoint()
