"""Loading the models once from any thread, and ahead of time on a background thread (loading.py,
FacePipeline.start_loading): one load, the same result, and a failed load reported to the caller."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from faceledger.errors import ModelNotAvailable
from faceledger.imaging import load_image
from faceledger.loading import LoadOnce
from faceledger.models import SFACE_2021DEC, YUNET_2023MAR, locate
from faceledger.pipeline import FacePipeline


class SlowLoad:
    """A load that takes a while, counts its runs, and fails while `failures` is above zero."""

    def __init__(self, failures: int = 0, seconds: float = 0.05) -> None:
        self.runs, self.failures, self.seconds = 0, failures, seconds
        self.threads: list[str] = []

    def __call__(self) -> None:
        self.runs += 1
        self.threads.append(threading.current_thread().name)
        time.sleep(self.seconds)
        if self.failures:
            self.failures -= 1
            raise ModelNotAvailable("model file x has sha256 0000, expected 1111")


def in_threads(n: int, target) -> list[BaseException | None]:
    """Run target in n threads at once; what each raised (None: returned)."""
    outcome: list[BaseException | None] = [None] * n
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        try:
            target()
        except BaseException as error:  # noqa: BLE001
            outcome[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcome


def test_many_threads_asking_at_once_load_once():
    load = SlowLoad()
    once = LoadOnce(load)
    assert in_threads(8, once.ensure) == [None] * 8
    once.ensure()
    once.prefetch()
    assert load.runs == 1 and once.loaded


def test_a_failed_load_reaches_every_waiter_and_the_next_call_tries_again():
    load = SlowLoad(failures=1)
    once = LoadOnce(load)
    errors = in_threads(4, once.ensure)
    assert load.runs == 1
    assert all(isinstance(e, ModelNotAvailable) for e in errors) and len({id(e) for e in errors}) == 1
    once.ensure()  # reported, then forgotten: this call loads again, and succeeds
    assert load.runs == 2 and once.loaded


def test_a_load_that_failed_in_the_background_is_raised_by_the_next_caller_on_its_thread():
    load = SlowLoad(failures=2)
    once = LoadOnce(load)
    ahead = threading.Thread(target=once.prefetch, name="ahead")
    ahead.start()
    ahead.join()  # failed with nobody waiting: kept
    once.prefetch()  # still kept: no second run before the failure is reported
    assert load.runs == 1 and load.threads == ["ahead"]
    with pytest.raises(ModelNotAvailable, match="sha256") as info:
        once.ensure()
    assert info.traceback[-1].name == "__call__"  # raised by the background run, re-raised here
    with pytest.raises(ModelNotAvailable):
        once.ensure()  # the next call runs the load again, here
    assert load.runs == 2 and load.threads[-1] == threading.current_thread().name


@pytest.fixture
def tampered_models(tmp_path):
    """A model folder with the real YuNet and an SFace file with one bit flipped."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copyfile(locate(YUNET_2023MAR), folder / YUNET_2023MAR.filename)
    data = bytearray(locate(SFACE_2021DEC).read_bytes())
    data[-16] ^= 0x01
    (folder / SFACE_2021DEC.filename).write_bytes(bytes(data))
    return folder


def test_an_altered_model_found_by_the_background_load_is_refused_to_the_caller(tampered_models,
                                                                               settings_factory, data_dir):
    pipe = FacePipeline.from_settings(settings_factory(model_dir=tampered_models))
    loaded_on = []
    embedder_load = pipe.embedder.load

    def watched() -> None:
        loaded_on.append(threading.current_thread().name)
        embedder_load()

    pipe._embedder_load = LoadOnce(watched)  # the same load, recording its thread
    pipe.start_loading()
    pipe._loader.join()
    assert loaded_on == ["faceledger-models"]
    image = load_image(data_dir / "open-faces" / "sunak_portrait.jpg")
    with pytest.raises(ModelNotAvailable, match="sha256.*altered"):
        pipe.single_face(image, name="probe")  # detection runs (its model is intact), embedding refuses
    assert pipe._detector_load.loaded
    with pytest.raises(ModelNotAvailable, match="sha256"):
        pipe.load()  # and every later call, which loads again here
    assert loaded_on == ["faceledger-models", threading.current_thread().name]


def test_start_loading_loads_each_model_once_and_changes_no_result(settings_factory, data_dir, pipeline):
    pipe = FacePipeline.from_settings(settings_factory())
    counts = {"detector": 0, "embedder": 0}
    for name in counts:
        model = getattr(pipe, name)
        original = model.load

        def counted(original=original, name=name) -> None:
            counts[name] += 1
            original()

        setattr(pipe, f"_{name}_load", LoadOnce(counted))
    pipe.start_loading()
    pipe.start_loading()
    image = load_image(data_dir / "open-faces" / "ardern_2018.jpg")
    face = pipe.single_face(image, name="probe")  # waits for the loads it needs
    pipe.load()
    pipe.start_loading()  # loaded: no thread
    assert counts == {"detector": 1, "embedder": 1}
    expected = pipeline.single_face(load_image(data_dir / "open-faces" / "ardern_2018.jpg"), name="probe")
    assert face.detection.box == expected.detection.box
    np.testing.assert_array_equal(face.embedding, expected.embedding)


def test_direct_model_loads_on_several_threads_make_one_session(settings_factory):
    pipe = FacePipeline.from_settings(settings_factory())
    pipe.start_loading()
    assert in_threads(4, pipe.embedder.load) == [None] * 4  # the backend's own lock: no second session
    session = pipe.embedder._session
    pipe.load()
    assert pipe.embedder._session is session


def test_a_command_that_ends_while_the_models_load_exits_with_its_own_status(tmp_path):
    """The loading thread is not a daemon: one still inside ONNX Runtime at interpreter shutdown aborts
    the process (status 134) instead of the command's own exit status (seen with a daemon thread at
    most of these delays, the optimised graph already cached)."""
    from faceledger import caches
    from faceledger.embed.sface_ort import create_session

    caches.use_dir(tmp_path / "cache")
    try:
        create_session(SFACE_2021DEC)  # the optimised graph cached, as from a command's second run on
    finally:
        caches.use_dir(None)
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from faceledger import caches
        from faceledger.config import Settings
        from faceledger.pipeline import FacePipeline
        caches.use_dir(Path({str(tmp_path / "cache")!r}))
        FacePipeline.from_settings(Settings(home=Path({str(tmp_path / "home")!r}))).start_loading()
        time.sleep(float(sys.argv[1]))
        sys.exit(2)
    """)
    for delay in ("0", "0.03", "0.06", "0.09", "0.12", "0.15"):
        done = subprocess.run([sys.executable, "-c", script, delay], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (delay, done.stderr[-2000:])
