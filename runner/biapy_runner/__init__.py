"""galaxy-biapy runner: BiaPy-style inference with BioImage.IO models."""

__version__ = "0.1.0"
