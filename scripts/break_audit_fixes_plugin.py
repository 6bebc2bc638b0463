# PYTHONPATH=scripts python -m pytest -q -p break_audit_fixes_plugin tests/test_planted_past_mlp.py
"""A pytest plugin: every test runs with break_audit_fixes' two fixes installed, to check that
the audit still catches the planted bugs with them."""

import break_audit_fixes
import pytest


@pytest.fixture(autouse=True)
def _audit_fixes():
    with pytest.MonkeyPatch.context() as mp:
        break_audit_fixes.install(mp, ["dropout", "derivative"])
        yield
