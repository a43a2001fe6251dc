import sys

from ltx_jax.cli import main

sys.exit(main())
