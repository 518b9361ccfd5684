"""Command-line entry points: parse flags, call one library function, print a summary."""

import os

# Set before torch starts its OpenMP pool. Where vCPUs are shared (cloud VMs, CI), OpenMP threads that spin while
# waiting steal the time of the thread doing the work: a small matmul took 8 ms with 2 spinning threads and 0.07 ms
# with passive waiting, while large matmuls ran at the same speed either way. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
