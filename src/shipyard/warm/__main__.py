"""``python -m shipyard.warm SOCKET``: the warm server (``shipyard.warm`` starts it)."""

import sys

from shipyard.warm._server import serve

serve(sys.argv[1])
