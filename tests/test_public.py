"""The package's public surface: a few names, sorted, all there."""

from __future__ import annotations

from importlib.metadata import version

import proxy


def test_the_public_surface_is_small_and_sorted() -> None:
    assert proxy.__all__ == sorted(proxy.__all__)
    assert proxy.__all__ == ["Settings", "__version__", "create_app", "load_settings"]
    assert all(getattr(proxy, name, None) is not None for name in proxy.__all__)


def test_the_version_is_the_distribution_version() -> None:
    assert proxy.__version__ == version("vm-proxy")


def test_an_app_from_the_public_names() -> None:
    app = proxy.create_app(proxy.load_settings(environ={}))
    assert callable(app)
