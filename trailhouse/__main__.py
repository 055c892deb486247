import sys

from trailhouse.cli import main

sys.exit(main())
