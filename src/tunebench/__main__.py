import sys

from tunebench.cli import main

sys.exit(main())
