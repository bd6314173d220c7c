"""The package's public names: all importable, listed once, sorted."""

from __future__ import annotations

import bouncer_queue


def test_all_is_sorted_and_every_name_exists() -> None:
    assert bouncer_queue.__all__ == sorted(bouncer_queue.__all__)
    for name in bouncer_queue.__all__:
        assert hasattr(bouncer_queue, name), name


def test_importing_the_package_does_not_load_bullmq() -> None:
    import subprocess
    import sys

    code = "import sys, bouncer_queue; print('bullmq' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
