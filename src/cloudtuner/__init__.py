"""cloudtuner: a self-hosted control plane for fine-tuning jobs."""

__version__ = "0.1.0"
