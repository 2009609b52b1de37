"""The public surface of ``cynaps_data`` is pinned: adding or removing a name is a decision."""

import cynaps_data


def test_public_names_are_pinned():
    assert sorted(cynaps_data.__all__) == sorted(
        [
            "Client",
            "Deposit",
            "Payment",
            "Project",
            "ProjectStatus",
            "UploadResult",
            "__version__",
            "errors",
            "webhooks",
        ]
    )
    for name in cynaps_data.__all__:
        assert hasattr(cynaps_data, name)


def test_importing_the_package_does_not_import_the_server():
    """The client imports ``server`` lazily (only ``Client.local()`` does)."""
    import subprocess
    import sys

    code = "import cynaps_data, sys; print(any(m.startswith('cynaps_data.server') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
