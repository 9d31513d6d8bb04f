"""ddpm_lessons: the tested package behind the DDPM course (Ho, Jain & Abbeel 2020).

Modules, lowest layer first (a module imports only from layers below it; the full list of layers is the
import-linter contract in pyproject.toml, which `make lint` checks): schedules, utils -> forward, eps_model
-> objectives -> losses -> text, fused -> unet, autoencoder -> samplers -> inpainting, superres, solvers
-> data -> metrics
-> checkpoints, distributed, prompts, fid -> training -> viz -> widgets, diagnose, checks, exercises
-> reverse_widget -> doctor -> cli. Nothing is downloaded or trained at import time.
"""

__version__ = "0.1.0"

# Where the course lives; every notebook's first cell clones it on Colab (a test keeps them equal).
REPO_URL = "https://github.com/ddpm-lessons/ddpm-lessons"
