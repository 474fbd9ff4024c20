"""`make install` puts clawvisor on PATH, and takes only its own link away again."""

from __future__ import annotations

import os
from pathlib import Path

from supervisor import install


def layout(tmp_path: Path) -> install.Layout:
    args = install.parser().parse_args(
        [
            "install",
            "--prefix",
            str(tmp_path / "opt"),
            "--bin-link",
            str(tmp_path / "bin" / "clawvisor"),
        ]
    )
    (tmp_path / "bin").mkdir()
    return install.Layout(args)


def test_install_links_clawvisor_on_path_to_the_build_in_force(tmp_path: Path) -> None:
    lay = layout(tmp_path)
    install.link_bin(lay)
    assert os.readlink(lay.bin_link) == str(lay.current / "bin" / "clawvisor")


def test_install_leaves_a_clawvisor_on_path_that_is_not_its_link(tmp_path: Path) -> None:
    lay = layout(tmp_path)
    lay.bin_link.write_text("#!/bin/sh\n")
    install.link_bin(lay)
    assert lay.bin_link.read_text() == "#!/bin/sh\n"


def test_remove_takes_away_its_own_link_only(tmp_path: Path) -> None:
    lay = layout(tmp_path)
    install.link_bin(lay)
    install.unlink_bin(lay)
    assert not lay.bin_link.is_symlink()
    lay.bin_link.symlink_to("/usr/lib/other/clawvisor")
    install.unlink_bin(lay)
    assert lay.bin_link.is_symlink()


def test_the_deb_ships_clawvisor_on_path(tmp_path: Path) -> None:
    from supervisor import debpkg

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    debpkg.stage(tmp_path / "root", wheels, "0.0.0")
    link = tmp_path / "root" / "usr/bin/clawvisor"
    assert os.readlink(link) == "/opt/clawvisor/current/bin/clawvisor"
