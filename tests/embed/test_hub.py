"""Hub access without the internet: a fake local cache, a fake hub and a dropping endpoint, all on this machine."""

import json
import logging
import socket

import pytest

from pipeline.embed import hub
from pipeline.embed.registry import ENCODERS
from tests.embed.encoder_fakes import COMMIT, put_in_hf_cache
from tests.embed.fake_hub import COMMIT as HUB_COMMIT
from tests.embed.fake_hub import SilentEndpoint


def test_cached_snapshot_is_used_without_asking_the_hub(unreachable_hub, caplog):
    snapshot = put_in_hf_cache("owkin/phikon", {"config.json": b"{}", "model.safetensors": b"w"})
    assert hub.local_snapshot("owkin/phikon") == snapshot
    assert hub.ensure_available("owkin/phikon") == snapshot and snapshot.name == COMMIT
    assert hub.first_present(snapshot, hub.HF_WEIGHTS) == snapshot / "model.safetensors"
    assert unreachable_hub.requests == []


def test_partial_snapshot_is_not_enough(empty_hf_cache):
    put_in_hf_cache("org/x", {"config.json": b"{}"})
    assert hub.local_snapshot("org/x") is None
    assert hub.local_snapshot("org/x", files=("config.json",)) is not None


def test_sharded_weights_need_every_shard(empty_hf_cache):
    index = json.dumps({"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}).encode()
    files = {"config.json": b"{}", "model.safetensors.index.json": index, "model-1.safetensors": b"1"}
    snapshot = put_in_hf_cache("org/big", files)
    assert hub.local_snapshot("org/big") is None
    (snapshot / "model-2.safetensors").write_text("2")
    assert hub.local_snapshot("org/big") == snapshot


def test_offline_and_not_cached_is_one_line_without_any_request(empty_hf_cache, unreachable_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubAccessError) as caught:
        hub.ensure_available("owkin/phikon", name="phikon")
    message = str(caught.value)
    assert caught.value.reason == "offline" and "\n" not in message
    for part in ("--model phikon (owkin/phikon)", "HF_HUB_OFFLINE is set", "`hf download owkin/phikon`",
                 "copy its Hugging Face cache", "HF_HUB_OFFLINE=1", "--model /path/to/folder",
                 "--model efficientnet-lite0"):
        assert part in message
    assert unreachable_hub.requests == []


def test_unreachable_hub_is_asked_once_without_retries(unreachable_hub, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(hub.HubAccessError) as caught:
        hub.ensure_available("timm/resnet18.a1_in1k", (hub.TIMM_WEIGHTS,), name="timm:resnet18", folder_hint=False)
    message = str(caught.value)
    assert caught.value.reason == "unreachable" and "\n" not in message
    assert "the hub cannot be reached" in message and "`hf download timm/resnet18.a1_in1k`" in message
    assert "/path/to/folder" not in message
    # one probe; huggingface_hub's own download would have retried 5 times, sleeping 23 s
    assert unreachable_hub.hub_requests() == ["HEAD /timm/resnet18.a1_in1k/resolve/main/model.safetensors HTTP/1.1"]
    assert not [record for record in caplog.records if "Retry" in record.getMessage()]


def test_silent_hub_is_cut_off_at_the_timeout(online, monkeypatch):
    from huggingface_hub import constants

    silent = SilentEndpoint()
    monkeypatch.setattr(constants, "ENDPOINT", silent.url)
    template = silent.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "0.5")
    with pytest.raises(hub.HubAccessError, match=r"within 0.5 s; on a slow network set HF_HUB_ETAG_TIMEOUT=30"):
        hub.ensure_available("owkin/phikon")
    silent.close()


def test_gated_without_token_names_the_page_and_how_to_log_in(fake_hub):
    with pytest.raises(hub.HubAccessError) as caught:
        hub.ensure_available("org/gated")
    message = str(caught.value)
    assert caught.value.reason == "gated" and "\n" not in message
    assert "request access at https://huggingface.co/org/gated" in message
    assert "`hf auth login`" in message and "HF_TOKEN" in message
    assert [line for line in fake_hub if "/resolve/" in line] == ["HEAD /org/gated/resolve/main/config.json"]


def test_gated_with_a_token_says_access_is_pending(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    with pytest.raises(hub.HubAccessError, match="no access yet: request it at https://huggingface.co/org/gated"):
        hub.ensure_available("org/gated")


def test_gated_and_offline_says_both(empty_hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubAccessError) as caught:
        hub.ensure_available("MahmoodLab/UNI", hub.TIMM_FILES, name="uni", folder_hint=False, gated=True)
    message = str(caught.value)
    assert "`hf download MahmoodLab/UNI` (a gated model: request access at https://huggingface.co/MahmoodLab/UNI, " \
           "then log in with `hf auth login` or set HF_TOKEN)" in message
    assert "/path/to/folder" not in message


def test_unknown_repo_is_not_found(fake_hub):
    with pytest.raises(hub.HubAccessError, match="org/nope was not found on the Hugging Face hub") as caught:
        hub.ensure_available("org/nope")
    assert caught.value.reason == "not_found" and "hf auth login" in str(caught.value)


def test_download_then_cached(fake_hub):
    snapshot = hub.ensure_available("org/ok", optional=hub.OPTIONAL_FILES)
    assert snapshot.name == HUB_COMMIT and (snapshot / "model.safetensors").read_bytes() == b"weights"
    count = len(fake_hub)
    assert hub.ensure_available("org/ok") == snapshot
    assert len(fake_hub) == count  # the second call asks nothing


def test_download_takes_the_weights_file_the_repo_has(fake_hub):
    snapshot = hub.ensure_available("org/onlybin")
    assert hub.first_present(snapshot, hub.HF_WEIGHTS) == snapshot / "pytorch_model.bin"


def test_repo_without_the_file_says_which(fake_hub):
    with pytest.raises(hub.HubAccessError, match="org/ok has none of open_clip_model.safetensors"):
        hub.ensure_available("org/ok", (("open_clip_model.safetensors",),))


def test_weights_cached_reads_only_the_local_cache(empty_hf_cache, monkeypatch):
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("no network"))
    assert not hub.weights_cached(ENCODERS["uni"])
    put_in_hf_cache("MahmoodLab/UNI", {"config.json": b"{}", "pytorch_model.bin": b"w"})
    assert hub.weights_cached(ENCODERS["uni"])
    assert not hub.weights_cached(ENCODERS["phikon"])
