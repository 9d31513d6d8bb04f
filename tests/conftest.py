"""Tests never touch the network and run the FAST profile, whoever calls pytest."""

import os

os.environ.setdefault("DDPM_OFFLINE", "1")
os.environ.setdefault("DDPM_FAST", "1")
