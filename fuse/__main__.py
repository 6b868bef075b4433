import sys

from fuse.cli import main

sys.exit(main())
