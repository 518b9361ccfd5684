"""The accepted values of ``--device``, ``--precision`` and ``--compile``.

Kept apart from :mod:`pipeline.embed.runtime`, which decides among them, so that reading them needs no torch
(``extract.py --help`` answers at once).
"""

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "bf16-weights")
COMPILE_MODES = ("auto", "on", "off")
