"""`python -m mnist_bench.cli ...`, as the `mnist-bench` script."""

import sys

from . import main

sys.exit(main())
