"""``extract.py`` with test hooks, as torchrun or a test starts it (not a test module: pytest does not collect it).

Environment:
    KILL_AFTER_FILES=K: on the first attempt (TORCHELASTIC_RESTART_COUNT 0 or unset) of rank KILL_RANK (default 1),
        SIGKILL this process right after its K-th feature file is written.
    MEET_DIR=DIR, MEET_COUNT=N: after its first file each process touches DIR/<pid> and waits until N processes
        have, so they are seen writing at the same time; exits 3 after MEET_TIMEOUT s (default 60) if they never
        come (a lock that serialised them would).
"""

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.cache import store  # noqa: E402
from pipeline.cli.extract import main  # noqa: E402

_real_write = store.write_image_features
_written = 0


def _kill_now() -> bool:
    after = int(os.environ.get("KILL_AFTER_FILES", "0"))
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    rank = os.environ.get("RANK", "0") == os.environ.get("KILL_RANK", "1")
    return bool(after) and first_attempt and rank and _written >= after


def _meet() -> None:
    folder = Path(os.environ["MEET_DIR"])
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + float(os.environ.get("MEET_TIMEOUT", "60"))
    while len(list(folder.iterdir())) < int(os.environ["MEET_COUNT"]):
        if time.monotonic() > deadline:
            print("the other processes never wrote a file while this one was writing", file=sys.stderr)
            os._exit(3)
        time.sleep(0.05)


def _hooked_write(*args, **kwargs):
    global _written
    _real_write(*args, **kwargs)
    _written += 1
    if _kill_now():
        os.kill(os.getpid(), signal.SIGKILL)
    if _written == 1 and os.environ.get("MEET_DIR"):
        _meet()


store.write_image_features = _hooked_write

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
