import sys

from islandsync.cli import main

sys.exit(main())
