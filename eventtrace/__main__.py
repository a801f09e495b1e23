import sys

from eventtrace.cli import main

sys.exit(main())
