"""Command-line entry points: parse flags, call one library function, print a summary."""

import os

# Set before torch and LightGBM start their OpenMP pools. Where vCPUs are shared (cloud VMs, CI), OpenMP threads that
# spin for long while waiting steal the time of the thread doing the work: on the 2-vCPU CI machine a small matmul
# took 8 ms with GNU OpenMP's default spinning and 0.2 ms with a short spin; OMP_WAIT_POLICY=PASSIVE (no spin at all)
# fixed that too but made a LightGBM fit 2.5x slower. Large matmuls run at the same speed either way. A user's own
# setting wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "20000")
