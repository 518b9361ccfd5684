"""The extraction benchmark (``python -m benchmarks.bench_extraction``): its runner, jobs, measurements and report."""
