"""Fuzz the decoder front end and `streamseg run` with mutated MP4 bytes (issue 7).

Hypothesis flips, inserts and deletes bytes of a small valid clip and cuts
it short, aiming at the header, the index (moov, at the end of PyAV's MP4s)
and anywhere in between. Every example runs in its own process with a time
limit, so the only acceptable outcomes are a clean, documented error or
valid output; a hang (killed at the limit), a crash (a signal) or any other
exception fails. Examples are derandomised so CI is reproducible; set
`STREAMSEG_FUZZ_EXAMPLES=300` to explore more and `STREAMSEG_FUZZ_RANDOM=1`
for fresh examples on every run.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from corpus import media, models, places
from corpus.cli import streamseg
from corpus.isolate import CLEAN_ERROR, decode_all, run_isolated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("STREAMSEG_FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("STREAMSEG_FUZZ_RANDOM"),
                database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Where to hit: the first bytes (ftyp, mdat header), the last (moov index), or anywhere.
position = st.one_of(st.integers(0, 300), st.integers(-1200, -1), st.integers(0, 2**31))
mutation = st.one_of(
    st.tuples(st.just("flip"), position, st.integers(1, 255)),
    st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), position, st.integers(1, 256)),
    st.tuples(st.just("truncate"), position, st.just(0)),
)


def mutate(data: bytes, edits: list[tuple[str, int, object]]) -> bytes:
    buffer = bytearray(data)
    for kind, where, value in edits:
        if not buffer:
            break
        at = where % len(buffer)
        if kind == "flip":
            buffer[at] ^= value
        elif kind == "insert":
            buffer[at:at] = value
        elif kind == "delete":
            del buffer[at:at + value]
        else:
            del buffer[at:]
    return bytes(buffer)


@pytest.fixture(scope="module")
def seed_clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("fuzz-seed")
    return media.clip(folder, "seed.mp4", frames=10, size=(48, 64)).read_bytes()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.tiny_checkpoint(tmp_path_factory.mktemp("fuzz-model"))


@FUZZ
@given(edits=st.lists(mutation, min_size=1, max_size=6))
def test_decoder_front_end_survives_mutated_mp4(edits, seed_clip, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "mutated.mp4"
    path.write_bytes(mutate(seed_clip, edits))
    outcome = run_isolated(decode_all, str(path), timeout=30)
    assert outcome.code is not None, f"decoding hung: {edits}"
    assert outcome.code in (0, CLEAN_ERROR), f"exit {outcome.code} for {edits}:\n{outcome.stderr}"


@settings(FUZZ, max_examples=max(5, EXAMPLES // 3))
@given(edits=st.lists(mutation, min_size=1, max_size=4))
def test_run_survives_mutated_mp4(edits, seed_clip, model, tmp_path_factory):
    """The whole CLI: a clean one-line error and no file, or an output holding every frame it reports."""
    folder = tmp_path_factory.mktemp("fuzz-run")
    path = folder / "mutated.mp4"
    path.write_bytes(mutate(seed_clip, edits))
    result = streamseg("run", path, "--model", model, "--backend", "torch", "--device", "cpu", "--no-progress",
                       "-o", folder / "out.mp4", cwd=folder, timeout=120)
    assert "Traceback" not in result.output, edits
    if result.code == 0:
        wrote = re.search(r"wrote (\d+) frames", result.stderr)
        assert wrote and media.frames_in(folder / "out.mp4") == int(wrote.group(1)) > 0, result.stderr
    else:
        assert result.code == 1, (edits, result.output)
        assert len([line for line in result.stderr.splitlines() if line.startswith("Error:")]) == 1
        assert places.listing(folder) == {"mutated.mp4"}
