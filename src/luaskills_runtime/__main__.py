import sys

from luaskills_runtime.cli import main

sys.exit(main())
