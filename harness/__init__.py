"""framebench: identical models and training loops on PyTorch, TensorFlow and JAX.

Importing ``harness`` imports no deep-learning framework; only ``harness.backends.<name>_backend``
does, and only inside the process that runs one benchmark cell.
"""

__version__ = "0.1.0"
