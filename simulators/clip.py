"""Recorded clips replayed as a camera: the main video track, its display rotation, and damage survived and told."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import av.logging
from av.bitstream import BitStreamFilterContext

from simulators.video import EncodedUnit, FrameEncoder, WireCodec
from streaming.orientation import IDENTITY, Orientation, of_frame

_ANNEXB_FILTERS = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}
_PROBE_PACKETS = 120  # packets decoded at most to find the first picture (its display matrix)
_MAX_READ_ERRORS = 16  # consecutive demuxer errors before giving up on the rest of the file
_HINTS = {
    "moov atom not found": "the MP4 index (moov) was never written, so the recording was cut off before it was "
    "finalised; nothing in it can be located (a recorder writing fragmented MP4 leaves files that replay)",
}


def _enable_ffmpeg_errors() -> None:
    """FFmpeg's own error messages name the damage; PyAV drops them unless a log level is set. Errors only."""
    if av.logging.get_level() is None:
        av.logging.set_level(av.logging.ERROR)
    # PyAV swallows a message equal to the one before it (process-wide): the cut file's "partial file" is said
    # once while the file is opened (stream info) and again where the packets end, and that second one is the
    # one the damage report needs
    av.logging.set_skip_repeated(False)


class ClipError(Exception):
    """A clip that cannot be replayed at all: one line naming the file and the reason."""


@dataclass(frozen=True)
class Damage:
    """Something in a clip that could not be read or sent, and where."""

    packet: int  # 1-based index of the packet in the chosen track (the last one read, when reading itself failed)
    seconds: float | None  # media time of that packet
    what: str

    def where(self) -> str:
        return f"packet {self.packet}" + (f" (t={self.seconds:.2f} s)" if self.seconds is not None else "")


@dataclass(frozen=True)
class ClipInfo:
    """What replaying a clip sends: which track, in which codec, and how its pictures are turned upright."""

    path: str
    track: int  # index among the file's video tracks, from 0
    tracks: int  # video tracks in the file
    source_codec: str
    codec: WireCodec  # on the wire: H.264/HEVC passed through as Annex-B, anything else transcoded to H.264
    width: int
    height: int
    orientation: Orientation = IDENTITY  # from the track's display matrix

    def describe(self) -> str:
        how = "passed through" if self.codec == self.source_codec else f"transcoded to {self.codec}"
        turn = "" if self.orientation.is_identity else f", display orientation {self.orientation}"
        return (
            f"{self.path}: video track {self.track} of {self.tracks} "
            f"({self.source_codec} {self.width}x{self.height}, {how}{turn})"
        )


@dataclass
class ClipReader:
    """One replay of a recorded clip. `units()` yields what a camera sends; it never raises on damaged data:
    what could not be read is skipped and listed in `damage`."""

    path: str
    track: int | None = None  # None: the best video track (FFmpeg's choice: default disposition, then bitrate)
    max_width: int = 1280  # transcoded clips are scaled down to this width
    info: ClipInfo = field(init=False)
    damage: list[Damage] = field(default_factory=list, init=False)
    packets_read: int = field(default=0, init=False)
    units_made: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.info = probe(self.path, self.track)

    def units(self) -> Iterator[EncodedUnit]:
        source = self._passthrough() if self.info.codec == self.info.source_codec else self._transcode()
        for unit in source:
            self.units_made += 1
            yield unit

    def summary(self) -> str | None:
        """One line on what was wrong and where; None for an undamaged clip."""
        if not self.damage:
            return None
        first = self.damage[0]
        more = f"; {len(self.damage) - 1} more problem(s) after it" if len(self.damage) > 1 else ""
        return (
            f"{self.path}: damaged recording at {first.where()}: {first.what}{more}; "
            f"{self.packets_read} packet(s) read, {self.units_made} frame(s) sent"
        )

    # -- reading ------------------------------------------------------------------------------------------

    def _open(self) -> Any:
        try:
            with av.logging.Capture(local=False):  # what opening says (stream info of a damaged file) the probe
                return av.open(self.path)  # reported already, and the packets say again where it is
        except av.FFmpegError as exc:  # it opened for the probe a moment ago: the file changed
            raise ClipError(f"{self.path}: {_reason(exc, [])}") from None

    def _packets(self, container: Any, stream: Any) -> Iterator[av.Packet]:
        """The track's packets in file order; demuxer errors are recorded and reading resumes after them."""
        packets = container.demux(stream)
        errors = 0
        last_seconds: float | None = None
        while True:
            failure: str | None = None
            with av.logging.Capture(local=False) as messages:
                try:
                    packet: av.Packet | None = next(packets)
                except StopIteration:
                    packet = None
                except av.FFmpegError as exc:
                    packet, failure = None, _reason(exc, messages)
            if failure is not None:
                self._damaged(self.packets_read, last_seconds, f"unreadable data after it ({failure})")
                errors += 1
                if errors >= _MAX_READ_ERRORS:
                    self._damaged(self.packets_read, last_seconds, "reading stopped: too many errors in a row")
                    return
                packets = container.demux(stream)  # the demuxer carries on from where it failed
                continue
            if packet is None or packet.size == 0:  # the end (an empty packet is the demuxer's end marker)
                listed = int(stream.frames or 0)  # what the index (an MP4's moov) says the track holds; 0: unknown
                if _first_message(messages):  # a cut file: FFmpeg says so ("partial file") after the last packet
                    self._damaged(self.packets_read, last_seconds, f"the file ends there ({_first_message(messages)})")
                elif listed > self.packets_read:  # FFmpeg does not always say it; the index does
                    self._damaged(
                        self.packets_read,
                        last_seconds,
                        f"the file ends there (partial file: {self.packets_read} of the {listed} packets its index "
                        "lists)",
                    )
                return
            errors = 0
            self.packets_read += 1
            last_seconds = _seconds(packet)
            if packet.is_corrupt:
                what = "the demuxer flagged the packet corrupt (cut short or data lost)"
                self._damaged(self.packets_read, last_seconds, what)
            elif _first_message(messages):
                self._damaged(self.packets_read, last_seconds, _first_message(messages))
            yield packet

    def _passthrough(self) -> Iterator[EncodedUnit]:
        with self._open() as container:
            stream = container.streams.video[self.info.track]
            tb = stream.time_base
            name = _ANNEXB_FILTERS[self.info.codec]
            bsf = BitStreamFilterContext(name, stream)
            for packet in self._packets(container, stream):
                seconds = _seconds(packet)  # the filter takes the packet's contents
                with av.logging.Capture(local=False) as messages:
                    try:
                        out = bsf.filter(packet)
                    except av.FFmpegError as exc:
                        out = None
                        reason = _reason(exc, messages)
                if out is None:
                    self._damaged(self.packets_read, seconds, f"packet not sent: {reason}")
                    bsf = BitStreamFilterContext(name, stream)  # a failed filter keeps no state worth having
                    continue
                yield from _annexb_units(out, tb)
            try:
                yield from _annexb_units(bsf.filter(None), tb)
            except av.FFmpegError:
                pass  # nothing buffered in a length-prefix to start-code filter

    def _transcode(self) -> Iterator[EncodedUnit]:
        with self._open() as container:
            stream = container.streams.video[self.info.track]
            rate = float(stream.average_rate or stream.guessed_rate or 15)
            scale = min(1.0, self.max_width / max(1, self.info.width))
            width, height = int(self.info.width * scale) // 2 * 2, int(self.info.height * scale) // 2 * 2
            encoder = FrameEncoder("h264", width, height, rate, gop=int(max(1, round(rate * 2))))
            packets: Iterator[av.Packet | None] = itertools.chain(self._packets(container, stream), [None])
            for packet in packets:  # None at the end drains the decoder
                seconds = None if packet is None else _seconds(packet)
                with av.logging.Capture(local=False) as messages:
                    try:
                        frames = stream.decode(packet)
                    except av.FFmpegError as exc:
                        frames = None
                        reason = _reason(exc, messages)
                if frames is None:
                    self._damaged(self.packets_read, seconds, f"packet does not decode: {reason}")
                    continue
                for frame in frames:
                    if frame.is_corrupt:  # re-encoding would hide the damage from the server: leave it out
                        self._damaged(self.packets_read, seconds, "picture decoded with concealed errors, not sent")
                        continue
                    rgb = frame.to_ndarray(format="rgb24", width=width, height=height, threads=1)
                    pts = _us(frame.pts, frame.time_base or stream.time_base)
                    for data, p, key in encoder.encode(rgb, pts):
                        yield EncodedUnit(data, p, key)
            for data, p, key in encoder.flush():
                yield EncodedUnit(data, p, key)

    def _damaged(self, packet: int, seconds: float | None, what: str) -> None:
        last = self.damage[-1] if self.damage else None
        if last is not None and last.packet == packet:  # one packet, one problem: what the demuxer and filter said
            self.damage[-1] = Damage(
                packet, last.seconds if last.seconds is not None else seconds, f"{last.what}; {what}"
            )
            return
        self.damage.append(Damage(packet, seconds, what))


def probe(path: str, track: int | None = None) -> ClipInfo:
    """Open a clip, choose its video track and read its display rotation; ClipError if it cannot be replayed."""
    _enable_ffmpeg_errors()
    try:
        with av.logging.Capture(local=False) as messages:
            container = av.open(path)
    except av.FFmpegError as exc:
        raise ClipError(f"{path}: {_reason(exc, messages)}") from None
    with container:
        videos = list(container.streams.video)
        if not videos:
            raise ClipError(f"{path}: no video track (streams: {[s.type for s in container.streams]})")
        if track is None:
            best: Any = container.streams.best("video")
            index = videos.index(best)
        elif 0 <= track < len(videos):
            index = track
        else:
            raise ClipError(f"{path}: there is no video track {track}; it has {len(videos)} (0..{len(videos) - 1})")
        stream = videos[index]
        source = stream.codec_context.name
        codec: WireCodec = source if source in _ANNEXB_FILTERS else "h264"  # type: ignore[assignment]
        width, height, orientation = _first_picture(container, stream)
    return ClipInfo(path, index, len(videos), source, codec, width, height, orientation)


def _first_picture(container: Any, stream: Any) -> tuple[int, int, Orientation]:
    """Decode up to the first picture: its size, and the display matrix FFmpeg attaches from the container."""
    width, height = stream.codec_context.width, stream.codec_context.height
    # not local: a frame-threaded decoder logs from its worker threads too
    with av.logging.Capture(local=False):  # damage is reported when the clip is read for real
        try:
            for i, packet in enumerate(container.demux(stream)):
                for frame in stream.decode(packet):  # one picture: the side data's reference cycle costs nothing
                    return frame.width, frame.height, of_frame(frame, full=True) or IDENTITY
                if i >= _PROBE_PACKETS:
                    break
        except av.FFmpegError:
            pass
    return width, height, IDENTITY


def _annexb_units(packets: list[av.Packet], tb: Fraction | None) -> Iterator[EncodedUnit]:
    for out in packets:
        if out.size:
            dts = None if out.dts is None else _us(out.dts, tb)
            yield EncodedUnit(bytes(out), _us(out.pts, tb), bool(out.is_keyframe), dts_us=dts)


def _reason(exc: av.FFmpegError, messages: list[tuple[int, str, str]]) -> str:
    """FFmpeg's own first complaint (more telling than the error code), with a hint where one is known."""
    strerror = getattr(exc, "strerror", None) or str(exc)
    detail = _first_message(messages)
    text = f"{strerror} ({detail})" if detail and detail != strerror else strerror
    hint = next((h for key, h in _HINTS.items() if key in text), None)
    return f"{text}: {hint}" if hint else text


def _first_message(messages: list[tuple[int, str, str]]) -> str:
    for level, _, text in messages:
        if level <= av.logging.ERROR:
            return text.strip().rstrip(".")
    return ""


def _seconds(packet: av.Packet) -> float | None:
    t = packet.pts if packet.pts is not None else packet.dts
    if t is None or packet.time_base is None:
        return None
    return float(t * packet.time_base)


def _us(pts: int | None, time_base: Fraction | None) -> int:
    if pts is None or time_base is None:
        return 0
    return int(round(pts * time_base * 1_000_000))
