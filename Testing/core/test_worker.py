"""The worker process: requests in, events out; errors as one message; killing it leaves no partial output."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk

from MobileUViTSegmentLib.resources import sample_data_dir
from MobileUViTSegmentLib.worker_client import WorkerClient, default_command

SAMPLE = str(sample_data_dir() / "hippocampus_046.nii.gz")


def client() -> WorkerClient:
    return WorkerClient(command=[*default_command(), "--threads", "1"])


def test_a_request_streams_progress_and_ends_with_the_labels_of_the_card(tmp_path: Path):
    worker = client()
    try:
        output = tmp_path / "labels.nrrd"
        events = []
        worker.send({"type": "segment", "id": "r1", "input": SAMPLE, "output": str(output),
                     "model": "hippocampus-mri", "device": "cpu"})
        done = worker.wait_for("r1", timeout=300, on_event=events.append)
        assert done["event"] == "done", done
        assert [label["name"] for label in done["labels"]] == ["anterior hippocampus", "posterior hippocampus"]
        assert "Hippocampus" in done["labels"][0]["terminology"]
        fractions = [event["fraction"] for event in events if event["event"] == "progress"]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
        assert {event["stage"] for event in events if event["event"] == "progress"} >= {"loading", "inferring"}
        assert sitk.ReadImage(str(output)).GetSize() == sitk.ReadImage(SAMPLE).GetSize()

        # The same worker serves the next request with the model still loaded; errors are one message.
        worker.send({"type": "segment", "id": "r2", "input": str(tmp_path / "missing.nrrd"),
                     "output": str(tmp_path / "x.nrrd"), "model": "hippocampus-mri"})
        error = worker.wait_for("r2", timeout=60)
        assert error["event"] == "error" and error["kind"] == "InputError"
        assert "does not exist" in error["message"] and "\n" not in error["message"]
        worker.send({"type": "ping", "id": "p"})
        assert any(event.get("event") == "pong" for event in wait_events(worker, 30))
    finally:
        worker.shutdown()
    assert not worker.running


def wait_events(worker: WorkerClient, seconds: float) -> list[dict]:
    deadline, events = time.monotonic() + seconds, []
    while time.monotonic() < deadline and not any(e.get("event") == "pong" for e in events):
        events += worker.poll()
        time.sleep(0.05)
    return events


def test_killing_the_worker_mid_run_leaves_no_output_and_a_fresh_worker_serves_the_next_run(tmp_path: Path):
    worker = client()
    output = tmp_path / "labels.seg.nrrd"
    worker.send({"type": "segment", "id": "r1", "input": SAMPLE, "output": str(output),
                 "model": "hippocampus-mri", "device": "cpu"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill as soon as the run has started
        if any(event.get("event") == "progress" for event in worker.poll()):
            break
        time.sleep(0.01)
    worker.kill()
    assert not worker.running
    assert list(tmp_path.iterdir()) == []
    worker.send({"type": "segment", "id": "r2", "input": SAMPLE, "output": str(output),
                 "model": "hippocampus-mri", "device": "cpu"})
    try:
        assert worker.wait_for("r2", timeout=300)["event"] == "done"
        assert output.is_file()
    finally:
        worker.shutdown()


def test_kill_ends_the_whole_process_tree_like_slicers_launcher_and_its_python(tmp_path: Path):
    """PythonSlicer is a launcher whose child is the real Python; cancelling must stop both."""
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    launcher = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    worker = WorkerClient(command=[sys.executable, "-c", launcher])
    worker.start()
    deadline = time.monotonic() + 30
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    worker.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the launcher's child survived the kill")


def test_a_model_made_after_the_worker_started_is_found_without_a_restart(tmp_path: Path):
    """The panel keeps its worker; a model ``finetune`` saved meanwhile must be usable in the next run."""
    import io
    import json
    import shutil

    from MobileUViTSegmentLib.catalog import DEFAULT_MODEL_ID, Catalog
    from MobileUViTSegmentLib.errors import ModelError
    from MobileUViTSegmentLib.resources import models_dir
    from MobileUViTSegmentLib.worker import Worker

    worker = Worker(io.StringIO(), Catalog([models_dir(), tmp_path]))
    card = json.loads((models_dir() / f"{DEFAULT_MODEL_ID}.card.json").read_text(encoding="utf-8"))
    card["id"] = "hippocampus-mri-local-1"
    (tmp_path / "hippocampus-mri-local-1.card.json").write_text(json.dumps(card), encoding="utf-8")
    shutil.copy(models_dir() / card["weights"]["file"], tmp_path / card["weights"]["file"])
    assert worker.card("hippocampus-mri-local-1").folder == tmp_path
    with pytest.raises(ModelError, match="unknown model id 'no-such-model'"):
        worker.card("no-such-model")
