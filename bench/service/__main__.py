import sys

from bench.service.cli import main

sys.exit(main())
