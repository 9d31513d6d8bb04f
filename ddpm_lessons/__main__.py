import sys

from ddpm_lessons.cli import main

sys.exit(main())
