"""``python -m shipyard``."""

from shipyard.warm import main

main()
