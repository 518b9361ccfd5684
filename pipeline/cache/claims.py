"""Claims on the shards of a cache folder: many processes fill one cache at once, and no shard runs twice at once.

Earlier versions held one ``flock`` on the whole folder, which serialised every run and is unreliable on NFS and
Lustre. A claim is a small file, ``<cache>/.claims/<split>-<I>of<N>.json``, holding the holder's host, pid, process
start and a random token. It is created atomically (:func:`pipeline.cache.atomic.create_file_atomic`: a hard link
that fails when the file exists, also on network file systems). A second process for the same shard waits, then
finds the work done. A claim is dead, and is taken over, when

- its holder shares this process's pid space (same host and pid namespace) and its pid is gone, a zombie, or now
  belongs to a process started later: at once, even after ``kill -9``;
- it comes from an earlier attempt of the same torchrun job (torchrun stops every rank before it restarts them);
- its holder lives elsewhere and has not refreshed the file's mtime (every :data:`HEARTBEAT_S` s) for
  :data:`STALE_AFTER_S` s, by the file's clock or by the time this process has watched it unchanged.

Claims save work, they do not protect the files: every file is written atomically and embedding is deterministic,
so two holders of one shard (one frozen for ten minutes, or shards of different ``N`` over one cache) only waste time.
For the same reason the temporary files deleted before a run are only those of writers that are gone.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType

from pipeline.cache import atomic
from pipeline.errors import CacheError

logger = logging.getLogger(__name__)

CLAIMS_DIR = ".claims"
HEARTBEAT_S = 10.0  # how often a holder refreshes its claim's mtime
STALE_AFTER_S = 600.0  # a claim (or temporary file) of another host unrefreshed this long is dead
POLL_S = 0.5  # how often a waiting process looks again


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from ``/proc/<pid>/stat``; None without /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[19])


def process_start(pid: int) -> int | None:
    """When a process started (clock ticks since boot), to tell it from a later process given the same pid."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def pid_alive(pid: int, start: int | None = None) -> bool:
    """True when ``pid`` runs in this pid space, is no zombie and, when ``start`` is given, started then."""
    if pid <= 0:  # os.kill would address a process group, or every process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    return state not in ("Z", "X") and (start is None or started == start)


def _read_claim(path: Path) -> tuple[dict, float] | None:
    """(content, mtime) of a claim; None when it is gone. Unreadable content counts as an anonymous holder."""
    try:
        mtime = path.stat().st_mtime
        content = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}, mtime
    return (content if isinstance(content, dict) else {}), mtime


def _describe(holder: dict) -> str:
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}"


def dead_reason(holder: dict, mtime: float, job: str | None = None) -> str | None:
    """Why a claim's holder is known to be gone at a glance, or None (it may be alive).

    Args:
        holder: The claim's content.
        mtime: Its file's modification time (the holder's heartbeat).
        job: This process's torchrun run id, when it claims the shard of its rank: a claim of the same job on that
            shard can only be an earlier attempt's, and torchrun stops every rank before it starts the next attempt.
    """
    if job and holder.get("job") == job:
        return "it belongs to an earlier attempt of this torchrun job"
    if holder.get("pid_space") == atomic.pid_space():
        pid = int(holder.get("pid", -1))
        if not pid_alive(pid, holder.get("pid_start")):
            return f"its process (pid {pid}) is gone"
        return None
    age = time.time() - mtime
    if age > STALE_AFTER_S:
        return f"its holder ({_describe(holder)}) has not refreshed it for {age / 60:.0f} min"
    return None


class ShardClaim:
    """Context manager holding the claim on one shard of a cache folder (see the module).

    Args:
        cache_dir: The cache folder (created if needed).
        key: :func:`pipeline.cache.shards.shard_key` of the shard, e.g. ``all-1of4``.
        label: How messages name the shard, e.g. ``1/4``.
        job: This process's torchrun run id, if any (see :func:`dead_reason`).
        timeout: Seconds to wait for a live holder; None waits for ever.
    """

    def __init__(self, cache_dir: Path, key: str, label: str = "0/1", job: str | None = None,
                 timeout: float | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.path = self.cache_dir / CLAIMS_DIR / f"{key}.json"
        self.label, self.job, self.timeout = label, job, timeout
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._watched: dict[str, tuple[float, float]] = {}  # token -> (mtime, when first seen with that mtime)

    def __enter__(self) -> ShardClaim:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(
                f"{self.cache_dir}: cannot create the claim file of shard {self.label} ({exc.strerror or exc}). "
                "Choose a writable --out folder or fix its permissions."
            ) from exc
        content = {"host": atomic.host_name(), "pid": os.getpid(), "pid_space": atomic.pid_space(),
                   "pid_start": process_start(os.getpid()), "claimed": time.time(), "shard": self.label,
                   "job": self.job, "token": self.token}
        data = (json.dumps(content, indent=2) + "\n").encode()
        started, announced = time.monotonic(), False
        while not atomic.create_file_atomic(self.path, data):
            found = _read_claim(self.path)
            if found is None:
                continue  # released in the meantime
            holder, mtime = found
            reason = dead_reason(holder, mtime, self.job) or self._unrefreshed(holder, mtime)
            if reason and self._take_over(holder, reason):
                continue
            if not announced:
                logger.warning("Another extraction (%s) is embedding shard %s of %s; waiting for it to finish.",
                               _describe(holder), self.label, self.cache_dir)
                announced = True
            if self.timeout is not None and time.monotonic() - started > self.timeout:
                raise CacheError(
                    f"Shard {self.label} of {self.cache_dir} is claimed by another extraction ({_describe(holder)}) "
                    f"for more than {self.timeout:.0f} s. Wait for it to finish, or stop it, then run again."
                )
            time.sleep(POLL_S)
        self._heartbeat = threading.Thread(target=self._beat, name="claim-heartbeat", daemon=True)
        self._heartbeat.start()
        return self

    def _unrefreshed(self, holder: dict, mtime: float) -> str | None:
        """Staleness by this process's own clock, for holders on hosts whose clock differs from the file server's."""
        if holder.get("pid_space") == atomic.pid_space():
            return None
        token, now = str(holder.get("token")), time.monotonic()
        seen_mtime, since = self._watched.get(token, (None, now))
        if seen_mtime != mtime:
            self._watched[token] = (mtime, now)
            return None
        return f"its holder ({_describe(holder)}) has not refreshed it for {(now - since) / 60:.0f} min" \
            if now - since > STALE_AFTER_S else None

    def _take_over(self, holder: dict, reason: str) -> bool:
        """Remove a dead holder's claim; False when that failed. A claim that changed meanwhile is put back."""
        tomb = self.path.with_name(f".{self.path.name}.dead-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, tomb)
        except FileNotFoundError:
            return True
        except OSError as exc:
            logger.warning("Cannot remove the dead claim %s (%s); waiting instead.", self.path, exc)
            return False
        try:
            moved = tomb.read_bytes()
            if json.loads(moved).get("token") != holder.get("token"):
                # another process claimed the shard between our look and the rename: give its claim back
                atomic.create_file_atomic(self.path, moved)
            else:
                logger.warning("Taking over shard %s of %s: %s.", self.label, self.cache_dir, reason)
        except (OSError, ValueError, AttributeError):
            pass  # an unreadable claim is gone now, which is what was wanted
        finally:
            tomb.unlink(missing_ok=True)
        return True

    def _beat(self) -> None:
        lost = False
        while not self._stop.wait(HEARTBEAT_S):
            found = _read_claim(self.path)
            if found is None or found[0].get("token") != self.token:
                if not lost:
                    logger.warning("Shard %s of %s was taken over by another process that found this one "
                                   "unresponsive; both may embed the same images (safe, but wasted work).",
                                   self.label, self.cache_dir)
                lost = True
                continue
            try:
                os.utime(self.path)
            except OSError:
                pass  # released or taken over between the read and now

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        found = _read_claim(self.path)
        if found is not None and found[0].get("token") == self.token:
            self.path.unlink(missing_ok=True)


def live_claims(cache_dir: Path) -> list[dict]:
    """The claims of a cache whose holders may be running (content plus ``key``), by shard."""
    live = []
    for path in sorted((Path(cache_dir) / CLAIMS_DIR).glob("*.json")):
        found = _read_claim(path)
        if found is not None and dead_reason(*found) is None:
            live.append({**found[0], "key": path.stem})
    return live


def dead_temporaries(cache_dir: Path) -> list[Path]:
    """Temporary files of writers that are gone: pid gone in this pid space, or untouched for STALE_AFTER_S."""
    here, now, dead = atomic.pid_space(), time.time(), []
    for path in Path(cache_dir).rglob(f".*{atomic.TEMP_MARKER}*"):
        writer = atomic.temp_writer(path)
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue  # renamed into place meanwhile
        if not path.is_file():
            continue
        if writer is not None and writer[0] in (None, here):
            gone = not pid_alive(writer[1])
        else:
            gone = age > STALE_AFTER_S
        if gone:
            dead.append(path)
    return sorted(dead)


def remove_dead_temporaries(cache_dir: Path) -> int:
    """Delete :func:`dead_temporaries`; return how many."""
    removed = 0
    for path in dead_temporaries(cache_dir):
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    if removed:
        logger.info("removed %d temporary file(s) left by a stopped run in %s", removed, cache_dir)
    return removed
