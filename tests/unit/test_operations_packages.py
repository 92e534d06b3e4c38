"""packages.present: what apt-get or dnf installs, planned from the recorded package lists."""

from __future__ import annotations

import pytest
from planning import commands_of, parsed, plan
from recordings import words

from llamafleet import facts
from llamafleet.errors import OperationError
from llamafleet.operations import NoChange, packages

DEB_INSTALLED = parsed(facts.DebPackages(["x"]), "debpackages.txt")  # bash, coreutils, libc6
RPM_INSTALLED = parsed(facts.RpmPackages(["x"]), "rpm_packages.txt")  # openssl, procps-ng


def test_debian_packages_all_installed_need_nothing():
    operation = packages.present(["coreutils", "bash", "bash"], "debian")
    assert [f.key for f in operation.facts] == [facts.DebPackages(["bash", "coreutils"]).key]
    assert plan(operation, DEB_INSTALLED) == NoChange("installed: bash, coreutils")


def test_debian_packages_missing_are_installed_updating_the_lists_on_failure():
    result = plan(packages.present(["bash", "openssl", "procps"], "debian"), DEB_INSTALLED)
    assert result.reason == "missing: openssl, procps"
    [command] = commands_of(result)
    apt = ["DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "--no-install-recommends", "--"]
    assert words(command) == [
        *apt, "openssl", "procps", "||", "{", "apt-get", "update", "-q", "&&", *apt, "openssl", "procps", ";", "}",
    ]  # fmt: skip


def test_redhat_packages_missing_are_installed_with_dnf():
    operation = packages.present(["openssl", "procps-ng", "iproute"], "redhat")
    assert [f.key for f in operation.facts] == [facts.RpmPackages(["iproute", "openssl", "procps-ng"]).key]
    result = plan(operation, RPM_INSTALLED)
    assert result.reason == "missing: iproute"
    assert words(commands_of(result)[0]) == ["dnf", "install", "-y", "-q", "--", "iproute"]
    assert plan(packages.present(["openssl"], "redhat"), RPM_INSTALLED) == NoChange("installed: openssl")


def test_package_names_stay_one_shell_word():
    result = plan(packages.present(["a b;c"], "debian"), {})
    assert words(commands_of(result)[0]).count("a b;c") == 2


@pytest.mark.parametrize("family", ["unknown", "suse", ""])
def test_an_os_family_without_a_known_package_manager_is_refused(family):
    with pytest.raises(OperationError, match=f"no package manager known for OS family '{family}'"):
        packages.present(["bash"], family)
    with pytest.raises(OperationError):
        packages.install_command(family, ["bash"])


def test_package_names_follow_end_of_options():
    install = words(packages.install_command("debian", ["-oAPT::Get=x"]))
    assert install[install.index("--") + 1] == "-oAPT::Get=x"
    assert words(packages.install_command("redhat", ["-y"]))[-2:] == ["--", "-y"]
    assert words(facts.DebPackages(["-x"]).command())[-2:] == ["--", "-x"]
    assert words(facts.RpmPackages(["-x"]).command())[-2:] == ["--", "-x"]
