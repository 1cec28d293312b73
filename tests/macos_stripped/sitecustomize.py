"""Strip this interpreter of what CPython 3.11/3.12 lacks on macOS, before ctlwire loads.

``make test`` runs the suite a second time with this folder on ``PYTHONPATH`` and
``CTLWIRE_STRIPPED=1``; ``tests/test_platform.py`` checks the stripping took effect
and that `SubprocessTransport` chose its POSIX implementation. Child processes that are
Python inherit ``PYTHONPATH`` and are stripped too.
"""

import fcntl
import os

for _name in ("pidfd_open", "waitid", "P_PIDFD", "WNOWAIT"):
    if hasattr(os, _name):
        delattr(os, _name)
for _name in ("F_SETPIPE_SZ", "F_GETPIPE_SZ"):
    if hasattr(fcntl, _name):
        delattr(fcntl, _name)
del _name
