"""`python -m studio`: see studio/cli.py."""
import sys

from .cli import main

sys.exit(main())
