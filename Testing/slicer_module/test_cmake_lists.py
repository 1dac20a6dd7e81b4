"""The CMake files Slicer's build uses: the extension's metadata, and module lists that match the files on disk.

Slicer packages only what ``MODULE_PYTHON_SCRIPTS`` and ``MODULE_PYTHON_RESOURCES`` list, so a file added to the
module folder (the core keeps growing) but not listed would be missing from the installed extension. These tests
fail with the exact lines to add or remove.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
MODULE_DIR = REPOSITORY / "MobileUViTSegment"
MODULE_CMAKE = MODULE_DIR / "CMakeLists.txt"
EXTENSION_CMAKE = REPOSITORY / "CMakeLists.txt"
RAW_URL = "https://raw.githubusercontent.com/mobileuvitsegment/MobileUViTSegment/main/"


def cmake_text(path: Path) -> str:
    """The file without comments (lists in these files hold no quoted '#')."""
    return "\n".join(line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())


def cmake_set(text: str, name: str) -> list[str]:
    """The items of ``set(name ...)``, with ``${MODULE_NAME}`` expanded."""
    module_name = re.search(r"set\(\s*MODULE_NAME\s+(\S+?)\s*\)", text).group(1)
    match = re.search(rf"set\(\s*{name}\s+(.*?)\)", text, flags=re.DOTALL)
    assert match, f"set({name} ...) not found"
    return [item.replace("${MODULE_NAME}", module_name) for item in match.group(1).split()]


def cmake_value(text: str, name: str) -> str:
    match = re.search(rf'set\(\s*{name}\s+"([^"]*)"\s*\)', text)
    assert match, f'set({name} "...") not found'
    return match.group(1)


def module_files() -> list[Path]:
    return sorted(path for path in MODULE_DIR.rglob("*") if path.is_file() and "__pycache__" not in path.parts
                  and not path.name.startswith(".") and path.suffix != ".pyc")


def relative(paths) -> set[str]:
    return {path.relative_to(MODULE_DIR).as_posix() for path in paths}


def on_disk_scripts() -> set[str]:
    return relative(path for path in module_files() if path.suffix == ".py" and path.parts[len(MODULE_DIR.parts)]
                    != "Testing")


def on_disk_resources() -> set[str]:
    return relative(path for path in module_files() if path.is_relative_to(MODULE_DIR / "Resources"))


def difference(variable: str, listed: list[str], on_disk: set[str]) -> str:
    missing = sorted(on_disk - set(listed))
    extra = sorted(set(listed) - on_disk)
    lines = []
    if missing:
        lines += [f"add to {variable} in {MODULE_CMAKE.relative_to(REPOSITORY)}:"] + [f"  {p}" for p in missing]
    if extra:
        lines += [f"remove from {variable} (no such file):"] + [f"  {p}" for p in extra]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def module_cmake() -> str:
    return cmake_text(MODULE_CMAKE)


@pytest.fixture(scope="module")
def extension_cmake() -> str:
    return cmake_text(EXTENSION_CMAKE)


def test_every_python_file_that_ships_is_listed_and_every_listed_one_exists(module_cmake):
    listed = cmake_set(module_cmake, "MODULE_PYTHON_SCRIPTS")
    message = difference("MODULE_PYTHON_SCRIPTS", listed, on_disk_scripts())
    assert not message, "\n" + message


def test_every_resource_is_listed_and_every_listed_one_exists(module_cmake):
    listed = cmake_set(module_cmake, "MODULE_PYTHON_RESOURCES")
    message = difference("MODULE_PYTHON_RESOURCES", listed, on_disk_resources())
    assert not message, "\n" + message


@pytest.mark.parametrize("variable", ["MODULE_PYTHON_SCRIPTS", "MODULE_PYTHON_RESOURCES"])
def test_the_lists_are_sorted_without_duplicates(module_cmake, variable):
    listed = cmake_set(module_cmake, variable)
    assert listed == sorted(set(listed)), f"{variable}: keep it sorted, once each; expected order:\n  " + \
        "\n  ".join(sorted(set(listed)))


def test_no_other_file_in_the_module_folder_is_left_out(module_cmake):
    """Anything that is neither a script nor a resource (nor a CMake file) would silently not ship."""
    cmake_files = {"CMakeLists.txt", "Testing/CMakeLists.txt", "Testing/Python/CMakeLists.txt"}
    others = relative(module_files()) - on_disk_scripts() - on_disk_resources() - cmake_files
    assert not others, "files that would not ship (move them into Resources/ or out of the module):\n  " + \
        "\n  ".join(sorted(others))


def test_the_module_is_built_as_a_scripted_module_with_generic_and_self_tests(module_cmake):
    build = re.search(r"slicerMacroBuildScriptedModule\((.*?)\)", module_cmake, flags=re.DOTALL).group(1).split()
    assert build == ["NAME", "${MODULE_NAME}", "SCRIPTS", "${MODULE_PYTHON_SCRIPTS}", "RESOURCES",
                     "${MODULE_PYTHON_RESOURCES}", "WITH_GENERIC_TESTS"]
    testing = re.search(r"if\(BUILD_TESTING\)(.*?)endif\(\)", module_cmake, flags=re.DOTALL).group(1)
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in testing
    assert "add_subdirectory(Testing)" in testing
    assert "add_subdirectory(Python)" in cmake_text(MODULE_DIR / "Testing" / "CMakeLists.txt")
    assert (MODULE_DIR / "Testing" / "Python" / "CMakeLists.txt").is_file()
    assert cmake_set(module_cmake, "MODULE_PYTHON_SCRIPTS")[0] == "MobileUViTSegment.py"


def test_the_extension_declares_what_the_extensions_index_needs(extension_cmake):
    statements = [line.strip() for line in extension_cmake.splitlines() if line.strip()]
    assert re.match(r"cmake_minimum_required\(VERSION 3\.\d+(\.\d+)?\)", statements[0])
    assert statements[1] == "project(MobileUViTSegment)"
    assert cmake_value(extension_cmake, "EXTENSION_HOMEPAGE") == \
        "https://github.com/mobileuvitsegment/MobileUViTSegment"
    assert cmake_value(extension_cmake, "EXTENSION_CATEGORY") == "Segmentation"
    assert cmake_value(extension_cmake, "EXTENSION_CONTRIBUTORS")
    assert "Mobile U-ViT" in cmake_value(extension_cmake, "EXTENSION_DESCRIPTION")
    assert cmake_value(extension_cmake, "EXTENSION_DEPENDS") == "PyTorch"
    order = ["find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(MobileUViTSegment)",
             "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"]
    positions = [statements.index(statement) for statement in order]
    assert positions == sorted(positions)


@pytest.mark.parametrize("variable", ["EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"])
def test_icon_and_screenshot_urls_point_at_files_of_this_repository(extension_cmake, variable):
    for url in cmake_value(extension_cmake, variable).split():
        assert url.startswith(RAW_URL), url
        path = REPOSITORY / url[len(RAW_URL):]
        assert path.is_file(), f"{url} names {path}, which does not exist"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
