"""netparity's pytest plugin: cross-framework tests in your own project.

Installed with netparity and loaded by pytest through the ``pytest11`` entry point, it offers

- fixtures ``framework`` (the test runs once per selected framework; missing ones are skipped
  with the reason), ``parity`` (``parity(spec_or_zoo_name)`` runs check_parity and fails with the
  first diverging layer), ``netparity_profile`` and ``netparity_device``;
- ``assert_same_function(reference, candidate, ...)``: a port against its reference, failing with
  the port report's summary (first differing layer, diagnosis);
- options ``--netparity-frameworks``, ``--netparity-device``, ``--netparity-report``,
  ``--netparity-profile``; the tolerance profile ``[tool.netparity]`` in pyproject.toml;
- a JSON report (next to ``--junitxml``), merged from pytest-xdist's workers on the controller.

Importing this module imports no framework (pytest imports it in every run).
"""

from .checks import NotSameFunction, ParityCheck, ParityFailure, assert_same_function
from .plugin import (framework, netparity_device, netparity_profile, parity, pytest_addoption,
                     pytest_collection_modifyitems, pytest_configure, pytest_generate_tests,
                     pytest_runtest_makereport, pytest_runtest_protocol)
from .profile import Profile, ProfileError, Tolerance, load_profile

__all__ = ["assert_same_function", "NotSameFunction", "ParityFailure", "ParityCheck", "Profile", "ProfileError",
           "Tolerance", "load_profile", "framework", "parity", "netparity_profile", "netparity_device"]
