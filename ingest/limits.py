"""Per-device limits (chunk rate, bitrate, picture size): a limit hit names the limit, its value and a status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc

from ingest import bitstream

BURST_S = 2.0  # rates are averaged over this long: a keyframe or a reconnect's backlog is not a flood


class LimitExceeded(Exception):
    """A configured limit was hit: ends the stream (or call) with `code` and a message naming limit and value."""

    def __init__(self, code: grpc.StatusCode, limit: str, value: float, detail: str) -> None:
        self.code = code
        self.limit = limit
        self.value = value
        self.message = f"{limit}={value:g} exceeded: {detail}"
        super().__init__(self.message)


def check_picture_size(codec: str, data: bytes, max_pixels: int) -> None:
    """Refuse a parameter set or JPEG that declares a picture over `max_pixels` before anything decodes it."""
    if max_pixels <= 0:
        return
    for width, height in bitstream.declared_sizes(codec, data):
        if width * height > max_pixels:
            raise LimitExceeded(
                grpc.StatusCode.INVALID_ARGUMENT,
                "max_decoded_pixels",
                max_pixels,
                f"the {codec} stream declares {width}x{height} ({width * height} pixels)",
            )


class _Bucket:
    """A token bucket: `rate` per second, holding at most `capacity`."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.level = capacity
        self._last_ns: int | None = None

    def take(self, amount: float, now_ns: int) -> bool:
        if self._last_ns is not None:
            self.level = min(self.capacity, self.level + (now_ns - self._last_ns) / 1e9 * self.rate)
        self._last_ns = max(now_ns, self._last_ns or now_ns)
        if amount > self.level:
            return False
        self.level -= amount
        return True


@dataclass
class DeviceRates:
    """Chunk rate and bitrate of one device, shared by all of its streams; 0 = unlimited."""

    max_chunks_per_s: float
    max_bitrate_bps: float
    max_chunk_bytes: int = 8 << 20

    def __post_init__(self) -> None:
        self._chunks = _Bucket(self.max_chunks_per_s, self.max_chunks_per_s * BURST_S)
        # one message of the largest allowed size always fits, however low the bitrate cap
        bits = max(self.max_bitrate_bps * BURST_S, self.max_chunk_bytes * 8.0)
        self._bits = _Bucket(self.max_bitrate_bps, bits)

    def take(self, nbytes: int, now_ns: int) -> None:
        """Account one chunk that arrived at `now_ns`; LimitExceeded(RESOURCE_EXHAUSTED) past either rate."""
        if self.max_chunks_per_s > 0 and not self._chunks.take(1, now_ns):
            raise LimitExceeded(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "max_chunks_per_s",
                self.max_chunks_per_s,
                f"more than {self.max_chunks_per_s:g} chunks/s over {BURST_S:g} s; send one access unit per chunk",
            )
        if self.max_bitrate_bps > 0 and not self._bits.take(nbytes * 8, now_ns):
            raise LimitExceeded(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "max_bitrate_bps",
                self.max_bitrate_bps,
                f"more than {self.max_bitrate_bps:g} bit/s of video over {BURST_S:g} s",
            )


class DeviceStreams:
    """Each device's live streams, oldest first, and the one rate budget they share (dropped with the last)."""

    def __init__(self, max_per_device: int, make_rates: Callable[[], DeviceRates]) -> None:
        self.max_per_device = max_per_device
        self._make_rates = make_rates
        self._streams: dict[str, list[str]] = {}
        self._rates: dict[str, DeviceRates] = {}

    def to_replace(self, device_id: str) -> list[str]:
        """The streams a new one for `device_id` replaces (oldest first) to stay within max_per_device."""
        live = self._streams.get(device_id, [])
        return live[: max(0, len(live) - self.max_per_device + 1)]

    def add(self, device_id: str, stream_id: str) -> DeviceRates:
        self._streams.setdefault(device_id, []).append(stream_id)
        return self._rates.setdefault(device_id, self._make_rates())

    def remove(self, device_id: str, stream_id: str) -> None:
        live = self._streams.get(device_id, [])
        if stream_id in live:
            live.remove(stream_id)
        if not live:
            self._streams.pop(device_id, None)
            self._rates.pop(device_id, None)

    def streams(self, device_id: str) -> list[str]:
        return list(self._streams.get(device_id, ()))
