"""ddpm_lessons: the tested package behind the DDPM course (Ho, Jain & Abbeel 2020).

Modules, lowest layer first (a module imports only from layers below it):
schedules -> forward, losses -> unet -> samplers -> data, metrics -> training
-> viz, widgets, checks -> cli. Nothing is downloaded or trained at import time.
"""

__version__ = "0.1.0"

# Where the course lives; every notebook's first cell clones it on Colab (a test keeps them equal).
REPO_URL = "https://github.com/ddpm-lessons/ddpm-lessons"
