"""Weights by URL: download into the cache with resume, size and sha256 checks; import; clear; offline use.

A real HTTP server on loopback serves the bundled model's weights well, truncated, corrupted, cut off mid-transfer,
without Range support, or not at all, and the tests check what reaches the cache (only verified files) and what the
user is told (one sentence that says what to do).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from MobileUViTSegmentLib.card import card_from_dict, load_card
from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
from MobileUViTSegmentLib.cli.main import main
from MobileUViTSegmentLib.errors import Cancelled, ModelError, WeightsError
from MobileUViTSegmentLib.progress import CancelToken
from MobileUViTSegmentLib.resources import CACHE_VARIABLE, models_dir, sample_data_dir
from MobileUViTSegmentLib.weights_cache import (
    cached_weights_path,
    clear_weights_cache,
    download_weights,
    ensure_weights,
    import_weights,
    partial_path,
)
from MobileUViTSegmentLib.worker import Worker

WEIGHTS = (models_dir() / f"{DEFAULT_MODEL_ID}.safetensors").read_bytes()


class WeightsServer(BaseHTTPRequestHandler):
    """Serves the bundled weights in the way the path asks for, and records the Range header of every request."""

    requests: list[tuple[str, str | None]] = []
    cut_once_done = False

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        name = self.path.strip("/")
        asked = self.headers.get("Range")
        WeightsServer.requests.append((name, asked))
        if name == "missing":
            self.send_error(404, "Not Found")
            return
        body = WEIGHTS
        if name == "truncated":
            body = WEIGHTS[: len(WEIGHTS) // 3]
        elif name == "corrupted":
            body = bytearray(WEIGHTS)
            body[len(body) // 2] ^= 0xFF
            body = bytes(body)
        start = int(asked.removeprefix("bytes=").split("-")[0]) if asked and name != "no-range" else 0
        if start >= len(body):
            self.send_error(416, "Range Not Satisfiable")
            return
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if name == "slow":  # long enough that runs started together overlap
            for offset in range(start, len(body), len(body) // 20 + 1):
                self.wfile.write(body[offset: offset + len(body) // 20 + 1])
                self.wfile.flush()
                time.sleep(0.05)
            return
        if name == "cut-once" and not WeightsServer.cut_once_done:
            WeightsServer.cut_once_done = True
            self.wfile.write(body[start: len(body) // 2])  # then the connection drops
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server() -> Iterator[str]:
    WeightsServer.requests = []
    WeightsServer.cut_once_done = False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), WeightsServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def remote_card(tmp_path: Path, server: str):
    """The bundled card in a folder of its own, without its weights file, downloading from the loopback server."""
    def make(path: str = "good"):
        data = json.loads((models_dir() / f"{DEFAULT_MODEL_ID}.card.json").read_text(encoding="utf-8"))
        data["weights"]["url"] = f"{server}/{path}"
        folder = tmp_path / "models"
        folder.mkdir(exist_ok=True)
        card_path = folder / f"{DEFAULT_MODEL_ID}.card.json"
        card_path.write_text(json.dumps(data), encoding="utf-8")
        return load_card(card_path)
    return make


def cache_files(cache: Path) -> list[Path]:
    return sorted(path for path in cache.rglob("*") if path.is_file()) if cache.exists() else []


def test_missing_weights_are_downloaded_once_verified_and_then_used_offline(remote_card, cache: Path, monkeypatch):
    card = remote_card("good")
    events = []
    path = ensure_weights(card, progress=events.append)
    assert path == cached_weights_path(card.weights) and path.read_bytes() == WEIGHTS
    assert events[-1].fraction == 1.0 and all(0 < event.fraction <= 1 for event in events)
    assert cache_files(cache) == [path]  # no partial or temporary file left behind

    def no_network(*args, **kwargs):
        raise AssertionError("the network was touched although the weights are on this machine")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert ensure_weights(card) == path


def test_weights_beside_the_card_never_touch_the_network(monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network touched"))
    card = Catalog().get(DEFAULT_MODEL_ID)
    assert ensure_weights(card) == card.weights_path


def test_a_broken_connection_keeps_the_part_and_the_next_run_resumes_from_it(remote_card, cache: Path):
    card = remote_card("cut-once")
    with pytest.raises(WeightsError, match="stopped at .* run the same command again to resume"):
        ensure_weights(card)
    half = len(WEIGHTS) // 2
    assert partial_path(card.weights).stat().st_size == half
    assert not cached_weights_path(card.weights).exists()
    assert ensure_weights(card).read_bytes() == WEIGHTS
    assert WeightsServer.requests[-1] == ("cut-once", f"bytes={half}-")  # only the rest was asked for


def test_a_server_that_ignores_ranges_makes_the_download_start_again(remote_card):
    card = remote_card("no-range")
    partial = partial_path(card.weights)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * 1000)  # a stale part that would corrupt the file if appended to
    assert ensure_weights(card).read_bytes() == WEIGHTS


def test_a_truncated_file_on_the_server_is_refused_before_it_is_cached(remote_card, cache: Path):
    with pytest.raises(WeightsError, match=f"serves {len(WEIGHTS) // 3:,} bytes but the card says {len(WEIGHTS):,}"):
        ensure_weights(remote_card("truncated"))
    assert cache_files(cache) == []



def test_a_part_longer_than_the_servers_file_is_dropped_with_the_reason(remote_card, cache: Path):
    card = remote_card("truncated")
    partial = partial_path(card.weights)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(WEIGHTS[: len(WEIGHTS) // 2])  # the server's file is only a third long: HTTP 416
    with pytest.raises(WeightsError, match="holds fewer than .* not this model's weights file"):
        ensure_weights(card)
    assert cache_files(cache) == []

def test_a_corrupted_file_is_deleted_and_never_cached(remote_card, cache: Path):
    with pytest.raises(WeightsError, match="sha256 .* is not the card's .* deleted and nothing was cached"):
        ensure_weights(remote_card("corrupted"))
    assert cache_files(cache) == []


def test_http_errors_and_unreachable_servers_say_what_happened_and_what_to_do(remote_card, cache: Path):
    with pytest.raises(WeightsError, match="HTTP 404"):
        ensure_weights(remote_card("missing"))
    card = remote_card("good")
    with pytest.raises(WeightsError, match="cannot download .* weights import MODEL FILE"):
        download_weights(card.weights, url="http://127.0.0.1:9/unreachable", timeout=5)
    with pytest.raises(WeightsError, match="only http"):
        download_weights(card.weights, url="file:///etc/passwd")
    assert cache_files(cache) == []


def test_cancel_keeps_the_part_and_a_later_run_completes(remote_card):
    card = remote_card("good")
    cancel = CancelToken()
    with pytest.raises(Cancelled, match="cancelled at"):
        ensure_weights(card, progress=lambda event: cancel.cancel(), cancel=cancel)
    assert 0 < partial_path(card.weights).stat().st_size < len(WEIGHTS)
    assert ensure_weights(card).read_bytes() == WEIGHTS


def test_offline_with_downloads_off_or_no_url_says_how_to_import(remote_card, tmp_path: Path):
    card = remote_card("good")
    with pytest.raises(WeightsError, match="downloading is switched off.*weights import"):
        ensure_weights(card, allow_download=False)
    data = dict(card.raw, weights={key: value for key, value in card.raw["weights"].items() if key != "url"})
    with pytest.raises(WeightsError, match="names no URL.*weights import hippocampus-mri FILE"):
        ensure_weights(card_from_dict(data, card.folder))


def test_import_accepts_only_the_cards_exact_file(remote_card, tmp_path: Path, cache: Path):
    card = remote_card("good")
    wrong = tmp_path / "wrong.safetensors"
    wrong.write_bytes(WEIGHTS[:-1] + bytes([WEIGHTS[-1] ^ 1]))
    with pytest.raises(WeightsError, match="sha256"):
        import_weights(card, wrong)
    assert cache_files(cache) == []
    imported = import_weights(card, models_dir() / f"{DEFAULT_MODEL_ID}.safetensors")
    assert imported.read_bytes() == WEIGHTS and ensure_weights(card) == imported


def test_clear_removes_the_cache_and_never_the_bundled_weights(remote_card, cache: Path):
    ensure_weights(remote_card("good"))
    assert clear_weights_cache() == (1, len(WEIGHTS))
    assert cache_files(cache) == []
    assert (models_dir() / f"{DEFAULT_MODEL_ID}.safetensors").is_file()
    assert clear_weights_cache() == (0, 0)


def test_a_card_url_that_is_not_http_is_refused_by_the_schema():
    data = json.loads((models_dir() / f"{DEFAULT_MODEL_ID}.card.json").read_text(encoding="utf-8"))
    data["weights"]["url"] = "file:///etc/passwd"
    with pytest.raises(ModelError, match="weights/url"):
        card_from_dict(data, models_dir())


def test_segment_downloads_missing_weights_on_first_use_then_runs_offline(remote_card, tmp_path: Path, capsys):
    card = remote_card("good")
    sample = sample_data_dir() / "hippocampus_046.nii.gz"
    card_file = str(card.folder / f"{card.id}.card.json")
    assert main(["segment", str(sample), "-o", str(tmp_path / "first.nii.gz"), "--model", card_file,
                 "--threads", "1"]) == 0
    assert main(["weights", "list"]) == 0
    assert main(["segment", str(sample), "-o", str(tmp_path / "again.nii.gz"), "--model", card_file,
                 "--threads", "1"]) == 0
    assert (tmp_path / "first.nii.gz").read_bytes() == (tmp_path / "again.nii.gz").read_bytes()
    assert len([name for name, _ in WeightsServer.requests]) == 1


def test_weights_command_downloads_imports_and_clears(remote_card, tmp_path: Path, cache: Path, capsys):
    card_file = str(remote_card("good").folder / f"{DEFAULT_MODEL_ID}.card.json")
    assert main(["weights", "download", card_file]) == 0
    assert "size and sha256 verified" in capsys.readouterr().out
    assert main(["weights", "download", card_file]) == 0
    assert "already on this machine" in capsys.readouterr().out
    assert main(["weights", "clear"]) == 0
    assert f"removed 1 files ({len(WEIGHTS) / 1e6:.1f} MB)" in capsys.readouterr().out
    copy = tmp_path / "from a usb stick.safetensors"
    shutil.copy(models_dir() / f"{DEFAULT_MODEL_ID}.safetensors", copy)
    assert main(["weights", "import", card_file, str(copy)]) == 0
    assert len(cache_files(cache)) == 1
    assert main(["weights", "download", card_file, "--url", "http://127.0.0.1:9/x"]) == 0  # cached: no request
    assert main(["weights", "import", card_file, str(tmp_path / "nothing.safetensors")]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_the_worker_reports_the_first_use_download_as_its_own_stage(remote_card, tmp_path: Path):
    card = remote_card("good")
    output = io.StringIO()
    worker = Worker(output, catalog=Catalog([card.folder]))
    worker.segment({"id": "r1", "input": str(sample_data_dir() / "hippocampus_046.nii.gz"),
                    "output": str(tmp_path / "labels.nrrd"), "model": card.id, "device": "cpu"})
    events = [json.loads(line) for line in output.getvalue().splitlines()]
    downloads = [event for event in events if event.get("stage") == "downloading weights"]
    assert downloads and downloads[-1]["fraction"] == 1.0
    assert events[-1]["event"] == "done" and (tmp_path / "labels.nrrd").is_file()


CONCURRENT_DOWNLOAD = """
import sys
sys.path.insert(0, sys.argv[1])
from MobileUViTSegmentLib.card import load_card
from MobileUViTSegmentLib.weights_cache import ensure_weights
from pathlib import Path
print(ensure_weights(load_card(Path(sys.argv[2]))))
"""


def test_runs_started_together_download_once_and_all_get_the_verified_file(remote_card, cache: Path, server: str):
    """Four processes at once (e.g. four ``segment`` runs): one downloads, the others wait for it under a lock."""
    card = remote_card("slow")
    module_dir = str(Path(__file__).resolve().parents[2] / "MobileUViTSegment")
    environment = {**os.environ, CACHE_VARIABLE: str(cache)}
    runs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_DOWNLOAD, module_dir, str(card.folder /
                              f"{DEFAULT_MODEL_ID}.card.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=environment) for _ in range(4)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, [error for _, error in outputs]
    target = cached_weights_path(card.weights)
    assert {Path(output.strip()) for output, _ in outputs} == {target}
    assert target.read_bytes() == WEIGHTS
    assert cache_files(cache) == [target]  # no partial file and no lock file left
    assert [name for name, _ in WeightsServer.requests] == ["slow"]  # downloaded once


def test_the_lock_makes_a_second_holder_wait_until_the_first_lets_go(tmp_path: Path):
    from MobileUViTSegmentLib.file_lock import exclusive_lock

    lock = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1])\n"
        "from pathlib import Path\n"
        "from MobileUViTSegmentLib.file_lock import exclusive_lock\n"
        "with exclusive_lock(Path(sys.argv[2])):\n"
        "    print('held', flush=True); time.sleep(1.0)\n"),
        str(Path(__file__).resolve().parents[2] / "MobileUViTSegment"), str(lock)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    waited = []
    started = time.monotonic()
    with exclusive_lock(lock, on_wait=lambda: waited.append(True)):
        elapsed = time.monotonic() - started
        assert holder.poll() is not None or elapsed > 0.5  # we got it only once the holder let go
    holder.wait(timeout=10)
    assert waited == [True] and elapsed > 0.5 and not lock.exists()


def test_a_cancel_while_waiting_for_the_lock_stops_at_once(tmp_path: Path):
    from MobileUViTSegmentLib.file_lock import _try_lock, exclusive_lock

    lock = tmp_path / "x.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    assert _try_lock(fd)  # another open file description holds it, as another process would
    token = CancelToken()
    with pytest.raises(Cancelled):
        with exclusive_lock(lock, token, on_wait=token.cancel):
            pass
    os.close(fd)
