"""Command-line entry points: parse flags, call one library function, print a summary."""
