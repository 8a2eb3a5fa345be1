"""Latency on the user's device: measure a built model (``measure``), fit a posynomial latency model from
measured blocks (``calibrate``), read and write model files (``model``).

Importing this package, or ``deepmad.latency.model``, loads no torch: a design with a latency budget reads the
model file and evaluates it with numpy (``deepmad.core.latency``). ``measure`` and ``calibrate`` need torch.
"""
