"""The node's allocator tuning takes effect on glibc, and says so where it cannot."""

from __future__ import annotations

import platform

import pytest

import node.allocator
from node.allocator import tune_allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_both_thresholds() -> None:
    assert tune_allocator() is True


def test_a_c_library_without_mallopt_is_reported_not_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class NoMallopt:
        def __init__(self, name: object) -> None:
            pass

        def __getattr__(self, name: str) -> object:
            raise AttributeError(name)

    monkeypatch.setattr(node.allocator.ctypes, "CDLL", NoMallopt)
    assert tune_allocator() is False


def test_a_refused_threshold_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    class RefusingLibc:
        def __init__(self, name: object) -> None:
            self.mallopt = lambda param, value: 0  # glibc's answer to a bad parameter

    monkeypatch.setattr(node.allocator.ctypes, "CDLL", RefusingLibc)
    assert tune_allocator() is False
