"""Names are checked with fullmatch: `$` also matches before a trailing newline (security review L3)."""
import pytest

from hyper.errors import HyperError
from hyper.services.resources import check_name


def test_queue_name_with_trailing_newline_is_refused():
    check_name("queue", "fast")
    with pytest.raises(HyperError):
        check_name("queue", "fast\n")


def test_region_name_with_trailing_newline_is_refused():
    check_name("region", "eu-west-1")
    with pytest.raises(HyperError):
        check_name("region", "eu-west-1\n")


def test_host_name_with_trailing_newline_is_refused():
    from hyper.services.hosts import check_host_name

    check_host_name("prod")
    with pytest.raises(HyperError):
        check_host_name("evil\n")
