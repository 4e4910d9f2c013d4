import pytest
from fx.event_models import RedriveSpec, StreamSpec, check_bucket_name, check_stream_name
from pydantic import ValidationError


@pytest.mark.parametrize("name", ["FX_ASYNC", "fx_mine", "KV_users", "OBJ_x", "a.b", "", "with space"])
def test_fx_and_jetstream_stream_names_are_refused(name):
    with pytest.raises(ValueError):
        check_stream_name(name)


def test_bucket_names_under_fx_are_reserved():
    assert check_bucket_name("users") == "users"
    for name in ("fx_routes", "FX_secrets", "a.b"):
        with pytest.raises(ValueError):
            check_bucket_name(name)


def test_a_stream_stores_no_reserved_subject():
    assert StreamSpec(subjects=["orders.>", "shipments.*"]).max_bytes == -1
    for subjects in (["fx.async.x"], ["$KV.users.>"], ["_INBOX.x"], [">"], ["a..b"], []):
        with pytest.raises(ValidationError):
            StreamSpec(subjects=subjects)


def test_a_redrive_names_exactly_one_selection():
    assert RedriveSpec(ids=[1, 2]).ids == [1, 2]
    assert RedriveSpec(function="orders").function == "orders"
    for fields in ({}, {"ids": [1], "all": True}, {"function": "a", "ids": []}, {"function": "Bad_Name"}):
        with pytest.raises(ValidationError):
            RedriveSpec(**fields)
