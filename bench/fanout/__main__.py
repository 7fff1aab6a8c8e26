import sys

from bench.fanout.cli import main

sys.exit(main())
