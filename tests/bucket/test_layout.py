"""Every key of a run (``bucket/layout.py``): each writer's key parses back to what made it,
and anything not of a key's exact shape parses to None, so a stray or crafted blob in a
listing is skipped, never trusted."""

from __future__ import annotations

import pytest

from islandsync.bucket import layout


def test_each_key_parses_back_to_what_made_it() -> None:
    assert layout.parse_heartbeat_key(layout.heartbeat_key("kaggle-h.1_2")) == "kaggle-h.1_2"
    assert layout.parse_head_key(layout.head_key(17)) == 17
    assert layout.parse_checkpoint_key(layout.checkpoint_key(3, 42, "w.ab12cd34")) == \
        (3, 42, "w.ab12cd34")
    assert layout.parse_elite_key(layout.elite_key(9)) == 9
    assert layout.parse_history_key(layout.history_key(5, 12)) == (5, 12)
    sha = "ab" * 32
    assert layout.parse_dist_key(layout.dist_key(sha, "islandsync-1.2.0-py3-none-any.whl")) \
        == (sha, "islandsync-1.2.0-py3-none-any.whl")


@pytest.mark.parametrize("parse, key", [
    (layout.parse_heartbeat_key, "workers/a b.json"),  # not a worker id
    (layout.parse_heartbeat_key, "workers/w.json.tmp"),
    (layout.parse_heartbeat_key, "workers/sub/w.json"),
    (layout.parse_head_key, "islands/007/HEAD.json"),  # not the key head_key writes
    (layout.parse_head_key, "islands/1/HEAD.json.bak"),
    (layout.parse_checkpoint_key, "islands/1/42-w.isz"),  # generation not 12 digits
    (layout.parse_checkpoint_key, "islands/1/000000000042-w/x.isz"),
    (layout.parse_checkpoint_key, "islands/1/HEAD.json"),
    (layout.parse_elite_key, "elite/HEAD.json"),
    (layout.parse_elite_key, "elite/000000000001.isz.part"),
    (layout.parse_history_key, "history/000000000009-000000000005.json"),  # last < first
    (layout.parse_dist_key, "dist/" + "ab" * 32 + "/evil-1.0-py3-none-any.whl"),
    (layout.parse_dist_key, "dist/" + "AB" * 32 + "/islandsync-1.0-py3-none-any.whl"),
    (layout.parse_dist_key, "dist/" + "ab" * 32 + "/islandsync-1.0-cp312-linux_x86_64.whl"),
])
def test_a_key_not_of_the_exact_shape_parses_to_none(parse, key: str) -> None:
    assert parse(key) is None


def test_an_earlier_numbered_dist_key_is_listed_but_vouches_for_no_content() -> None:
    assert layout.parse_dist_key("dist/000003/islandsync-0.9-py3-none-any.whl") == \
        (None, "islandsync-0.9-py3-none-any.whl")


def test_dist_key_refuses_what_is_not_a_wheel_or_a_digest() -> None:
    with pytest.raises(ValueError, match="wheel"):
        layout.dist_key("ab" * 32, "islandsync-1.0.tar.gz")
    with pytest.raises(ValueError, match="sha256"):
        layout.dist_key("xyz", "islandsync-1.0-py3-none-any.whl")


def test_checkpoint_tags_are_unique_per_process_and_name_their_worker() -> None:
    long_id = "w" * 128
    tags = {layout.checkpoint_tag("kaggle-1") for _ in range(50)}
    assert len(tags) == 50
    for tag in tags:
        assert layout.tag_writer(tag) == "kaggle-1"
        assert layout.WORKER_ID_RE.match(tag)  # fits the layout's tag shape
    tag = layout.checkpoint_tag(long_id)
    assert len(tag) == 128 and layout.parse_checkpoint_key(layout.checkpoint_key(0, 1, tag))
    key = layout.checkpoint_key(0, 1, tag)
    assert layout.written_by(key, long_id)  # cut to the same length on both sides
    assert not layout.written_by(layout.checkpoint_key(0, 1, layout.checkpoint_tag("a")), "ab")
    assert not layout.written_by("islands/0/HEAD.json", "a")
    assert not layout.written_by(key, None)
