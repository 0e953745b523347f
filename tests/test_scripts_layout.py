"""The Lua layout: one file per transition under lua/queue/, lua/fleet/ and lua/webhooks/, exactly the
keys it needs, one code per outcome, the same codes on both sides."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import redis.asyncio as aioredis

from captcha_queue.errors import ScriptError
from captcha_queue.store.keys import Keys
from captcha_queue.store.scripts import CODES, Code, load_scripts

LUA = resources.files("captcha_queue.store") / "lua"


def test_codes_lua_and_the_python_table_agree_and_are_unique() -> None:
    text = (LUA / "includes" / "codes.lua").read_text(encoding="utf-8")
    lua = {name: int(value) for name, value in re.findall(r"^local (\w+) = (-?\d+)$", text, re.MULTILINE)}
    python = {name: value for value, (name, _make) in CODES.items()}
    assert lua == python
    assert len(set(lua.values())) == len(lua)  # RETRY_SCHEDULED and PAUSED used to both be 1
    assert {name: getattr(Code, name) for name in python} == python


def test_every_script_is_named_verb_noun_dash_its_key_count_and_opens_with_a_header() -> None:
    scripts = load_scripts()
    for folder in ("queue", "fleet", "webhooks"):
        for entry in (LUA / folder).iterdir():
            stem = entry.name.removesuffix(".lua")
            match = re.fullmatch(r"([a-z]+[A-Z]\w*)-(\d+)", stem)
            assert match, f"{folder}/{entry.name}"
            script = scripts[match.group(1)]
            assert script.num_keys == int(match.group(2))
            head = entry.read_text(encoding="utf-8")[:3000]
            for part in ("KEYS", "ARGV", "Returns"):
                assert part in head, f"{entry.name} has no {part} in its header"
            if folder != "fleet":
                assert len(script.key_names) == script.num_keys


def test_every_key_a_queue_script_names_is_built_by_keys() -> None:
    keys = Keys("ns")
    for script in load_scripts().values():
        built = [keys.named(name) for name in script.key_names]
        assert all(k.startswith("{ns}:") for k in built)
        assert len(set(built)) == len(built)
    assert len(load_scripts().completeTask.key_names) == 9  # not the whole layout of 20 keys


async def test_a_call_with_another_number_of_keys_is_refused_before_redis(
    redis_client: aioredis.Redis,
) -> None:
    script = load_scripts().recordRemote
    with pytest.raises(ScriptError, match="takes 1 keys, given 2"):
        await script(redis_client, ["{x}:state", "{x}:other"], [])
