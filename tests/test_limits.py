"""Limits as units: picture sizes read from real bitstreams, rate buckets, Ask images, the decoder refusing."""

from __future__ import annotations

import grpc
import pytest

from fuzz.seeds import annexb, bomb_png, h264_sps, image_seeds
from ingest import bitstream
from ingest.decoder import StreamDecoder
from ingest.images import decode_image
from ingest.limits import DeviceRates, LimitExceeded, check_picture_size


@pytest.mark.parametrize("codec", ["h264", "hevc", "mjpeg"])
@pytest.mark.parametrize("size", [(96, 64), (200, 120)])
def test_declared_size_matches_what_the_encoder_wrote(codec: str, size: tuple[int, int]) -> None:
    first = annexb(codec, n=1, width=size[0], height=size[1])[0]
    assert bitstream.declared_sizes(codec, first) == [size]
    later = annexb(codec, n=3, width=size[0], height=size[1], gop=4)[2]  # a P-frame carries no SPS
    assert codec == "mjpeg" or bitstream.declared_sizes(codec, later) == []


def test_a_hand_written_sps_declares_its_size_and_garbage_declares_nothing() -> None:
    assert bitstream.declared_sizes("h264", h264_sps(16384, 16384)) == [(16384, 16384)]
    assert bitstream.declared_sizes("h264", b"\x00\x00\x01\x67\xff") == []  # truncated: the decoder reports it
    assert bitstream.declared_sizes("hevc", b"\x00\x00\x01" + bytes(200)) == []


def test_decoder_refuses_a_16384_sps_before_decoding_and_names_the_limit() -> None:
    units = annexb("h264", n=3)
    decoder = StreamDecoder("h264", max_pixels=1920 * 1080)
    with pytest.raises(LimitExceeded) as info:
        decoder.feed(h264_sps(16384, 16384) + b"".join(units[0:1]))
        decoder.feed(units[1])  # the parser may hold the first access unit until the next one starts
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_decoded_pixels=2.0736e+06" in info.value.message and "16384x16384" in info.value.message
    ok = StreamDecoder("h264", max_pixels=1920 * 1080)
    assert sum(len(ok.feed(u).frames) for u in units) + len(ok.flush().frames) == 3


def test_check_picture_size_for_jpeg_and_unlimited() -> None:
    jpeg = image_seeds()[0]  # 48x32
    check_picture_size("mjpeg", jpeg, 48 * 32)
    with pytest.raises(LimitExceeded, match="48x32"):
        check_picture_size("mjpeg", jpeg, 48 * 32 - 1)
    check_picture_size("h264", h264_sps(16384, 16384), 0)  # 0 = unlimited


def test_chunk_rate_allows_a_burst_then_names_the_limit() -> None:
    rates = DeviceRates(max_chunks_per_s=10, max_bitrate_bps=0)
    t = 1_000_000_000
    for i in range(20):  # 2 s of burst
        rates.take(100, t + i)
    with pytest.raises(LimitExceeded) as info:
        rates.take(100, t + 21)
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and info.value.limit == "max_chunks_per_s"
    rates.take(100, t + 200_000_000)  # 0.2 s later two more chunks' worth has refilled
    slow = DeviceRates(max_chunks_per_s=10, max_bitrate_bps=0)
    for i in range(200):  # at the allowed rate forever
        slow.take(100, t + i * 100_000_000)


def test_bitrate_names_the_limit_but_one_max_size_message_always_fits() -> None:
    rates = DeviceRates(max_chunks_per_s=0, max_bitrate_bps=1_000_000, max_chunk_bytes=1 << 20)
    rates.take(1 << 20, 0)  # 8 Mbit at once: more than 2 s of the rate, still one allowed message
    with pytest.raises(LimitExceeded, match="max_bitrate_bps=1e\\+06"):
        rates.take(100_000, 1_000)


def test_ask_image_bomb_is_refused_from_its_header() -> None:
    bomb = bomb_png(10_000, 10_000)
    assert len(bomb) < 1_000_000  # a small file ...
    with pytest.raises(LimitExceeded) as info:  # ... declaring 100 M pixels, refused without inflating it
        decode_image(bomb, max_pixels=3840 * 2160)
    assert "10000x10000" in info.value.message and info.value.limit == "max_decoded_pixels"
    assert decode_image(image_seeds()[1], max_pixels=3840 * 2160).shape == (32, 48, 3)
    with pytest.raises(ValueError, match="JPEG or PNG"):
        decode_image(image_seeds()[1][:100], max_pixels=0)
