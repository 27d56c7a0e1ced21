"""A config-driven PyTorch training template."""

__version__ = "0.1.0"
