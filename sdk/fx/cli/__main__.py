import sys

from fx.cli import main

sys.exit(main())
