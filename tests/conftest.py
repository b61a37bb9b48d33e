"""Shared test setup: helper modules beside the tests, and where the MNIST files are."""

import os
import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))  # gradcheck, examples_path

SHARED_MNIST = _TESTS.parents[1] / "shared" / "data" / "mnist"


@pytest.fixture
def mnist_folder():
    """The folder with the four MNIST IDX files, or a skip saying where we looked."""
    candidates = [Path(os.environ["NEURALNP_DATA"])] if os.environ.get("NEURALNP_DATA") else []
    candidates.append(SHARED_MNIST)
    for folder in candidates:
        for f in (folder, folder / "mnist"):
            if (f / "train-images-idx3-ubyte.gz").is_file():
                return f
    pytest.skip(f"MNIST files not found in {', '.join(map(str, candidates))}")
