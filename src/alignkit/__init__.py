"""alignkit: measure, red-team, align and guard language models from one written constitution."""

__version__ = "0.1.0"
