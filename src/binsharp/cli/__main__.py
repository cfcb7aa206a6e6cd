import sys

from binsharp.cli import main

sys.exit(main())
