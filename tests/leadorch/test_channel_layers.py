"""The in-process channel layer sweeps expired messages at most once an interval."""

import asyncio

import pytest

from leadorch.channel_layers import InMemoryChannelLayer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_expired_messages_are_swept_once_per_interval_not_on_every_call():
    clock = Clock()
    # expiry=0: a message is expired as soon as it is queued.
    layer = InMemoryChannelLayer(expiry=0, sweep_interval=1.0, clock=clock)

    async def scenario() -> list[bool]:
        await layer.group_send("chat.demo.a", {"type": "chat.event"})  # sweeps
        await layer.send("specific.a!one", {"type": "chat.event"})
        queued = ["specific.a!one" in layer.channels]
        clock.now = 0.5
        await layer.group_send("chat.demo.a", {"type": "chat.event"})
        queued.append("specific.a!one" in layer.channels)
        clock.now = 1.5
        await layer.group_send("chat.demo.a", {"type": "chat.event"})
        queued.append("specific.a!one" in layer.channels)
        return queued

    assert asyncio.run(scenario()) == [True, True, False]


def test_group_messages_reach_every_member_as_with_channels_own_layer():
    layer = InMemoryChannelLayer()

    async def scenario() -> list[dict]:
        one = await layer.new_channel()
        two = await layer.new_channel()
        await layer.group_add("chat.demo.s", one)
        await layer.group_add("chat.demo.s", two)
        await layer.group_send("chat.demo.s", {"type": "chat.event", "n": 1})
        return [
            await asyncio.wait_for(layer.receive(one), 1),
            await asyncio.wait_for(layer.receive(two), 1),
        ]

    assert asyncio.run(scenario()) == [{"type": "chat.event", "n": 1}] * 2


def test_the_project_runs_on_this_layer_without_redis(settings):
    from channels.layers import channel_layers

    assert (
        settings.CHANNEL_LAYERS["default"]["BACKEND"]
        == "leadorch.channel_layers.InMemoryChannelLayer"
    )
    assert isinstance(channel_layers["default"], InMemoryChannelLayer)


@pytest.mark.parametrize("interval", [0.0, 1.0])
def test_a_sweep_still_drops_expired_members_from_groups(interval):
    clock = Clock()
    layer = InMemoryChannelLayer(expiry=0, sweep_interval=interval, clock=clock)

    async def scenario() -> dict:
        await layer.group_add("chat.demo.s", "specific.a!gone")
        await layer.send("specific.a!gone", {"type": "chat.event"})
        clock.now = 2.0
        await layer.group_send("chat.demo.s", {"type": "chat.event"})
        return layer.groups

    assert asyncio.run(scenario()).get("chat.demo.s", {}) == {}
