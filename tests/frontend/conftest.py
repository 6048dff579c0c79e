"""Front-end fixtures: one face finder for the session (LiteRT models load once) and the photos."""
from __future__ import annotations

import pytest
from helpers import FACE_PHOTOS, FACES

pytest.importorskip("ai_edge_litert", reason='the front end needs the face extra: pip install ".[face]"')


@pytest.fixture(scope="session")
def finder():
    from s3pot.frontend.faces import FaceFinder

    return FaceFinder()


@pytest.fixture(scope="session")
def photos() -> dict:
    from s3pot.runtime.io import load_image

    return {name: load_image(FACES / name) for name in FACE_PHOTOS}


@pytest.fixture(scope="session")
def found(finder, photos) -> dict:
    """Every test photo's faces."""
    return {name: finder.find(rgb) for name, rgb in photos.items()}
