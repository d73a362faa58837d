"""Package discovery for netparity's mapped layout (the metadata is in pyproject.toml).

spec/, backends/ and compare/ stay at the top level of the repository but install as
netparity.spec, netparity.backends and netparity.compare. pyproject.toml's
``[tool.setuptools.packages.find]`` cannot rename what it finds, so this file finds the
subpackages of each folder and prefixes them: a new subpackage (spec/zoo/, compare/reference/)
ships without anyone editing a list. tests/test_packaging.py checks that every .py file
lands in the wheel.
"""

from setuptools import find_packages, setup

# installed package name -> folder in the repository
PACKAGE_DIRS = {
    "netparity": "netparity",
    "netparity.spec": "spec",
    "netparity.backends": "backends",
    "netparity.compare": "compare",
}


def discover(package_dirs: dict[str, str]) -> list[str]:
    packages = []
    for package, folder in package_dirs.items():
        packages.append(package)
        packages += [f"{package}.{sub}" for sub in find_packages(folder)]
    return packages


setup(package_dir=PACKAGE_DIRS, packages=discover(PACKAGE_DIRS))
