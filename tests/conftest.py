"""Tests never touch the network and run the FAST profile, whoever calls pytest (the notebook tests
start their kernels with no profile variable at all, as a student's laptop does)."""

import os

os.environ.setdefault("DDPM_OFFLINE", "1")
os.environ.setdefault("DDPM_PROFILE", "fast")
