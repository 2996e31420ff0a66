"""The analyzer commands' inputs, without servers: --as-of forms and the row shapes."""

from __future__ import annotations

import pytest

from serving.cli import InputError, parse_as_of


def test_as_of_accepts_iso_8601_and_unix_seconds() -> None:
    assert parse_as_of("1767225600") == 1_767_225_600
    assert parse_as_of("2026-01-01T00:00:00Z") == 1_767_225_600
    assert parse_as_of("2026-01-01T01:00:00+01:00") == 1_767_225_600
    assert parse_as_of("2026-01-01") == 1_767_225_600  # a date without a zone is UTC midnight
    assert parse_as_of(None) is None
    with pytest.raises(InputError, match="--as-of"):
        parse_as_of("next friday")
