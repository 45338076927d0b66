"""Simulated paired RNA + ATAC with planted structure, for tests and benchmarks of both methods.

- ``planted``: a small in-memory multiome with a planted TF -> target network (unit tests).
- ``dataset``: a dataset folder of any size, calibrated on the bundled real datasets
  (``python -m multiome_assets.simulate.dataset --help``).
"""
