"""Picture sizes a bitstream declares (H.264/HEVC SPS, JPEG SOF), read before the decoder allocates anything."""

from __future__ import annotations

from collections.abc import Iterator

H264_SPS = 7
HEVC_SPS = 33
_H264_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_MAX_NALS = 4096  # per call: a packet of nothing but start codes is not worth scanning to the end


class Malformed(ValueError):
    """Bits that do not parse as the structure they claim to be."""


class BitReader:
    """MSB-first bit reader over an RBSP (emulation prevention removed) with Exp-Golomb codes."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._bits = len(data) * 8
        self._pos = 0

    def u(self, n: int) -> int:
        if n == 0:
            return 0
        if self._pos + n > self._bits:
            raise Malformed("read past the end of the parameter set")
        self._pos += n
        return (self._value >> (self._bits - self._pos)) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise Malformed("Exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


def nal_units(data: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex-B byte string (start codes removed), at most _MAX_NALS of them."""
    start = data.find(b"\x00\x00\x01")
    count = 0
    while start >= 0 and count < _MAX_NALS:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt < 0 else nxt
        yield data[begin:end].rstrip(b"\x00") if nxt >= 0 else data[begin:end]
        start = nxt
        count += 1


def rbsp(nal: bytes) -> bytes:
    """Remove emulation prevention bytes (00 00 03 -> 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def h264_sps_size(payload: bytes) -> tuple[int, int]:
    """(width, height) of the coded picture an H.264 SPS (the NAL after its 1-byte header) declares."""
    r = BitReader(rbsp(payload))
    profile = r.u(8)
    r.u(16)  # constraint flags, level
    r.ue()  # seq_parameter_set_id
    chroma = 1
    if profile in _H264_HIGH_PROFILES:
        chroma = r.ue()
        if chroma == 3:
            r.u(1)
        r.ue()
        r.ue()  # bit depths
        r.u(1)
        if r.u(1):  # scaling matrices present
            for i in range(12 if chroma == 3 else 8):
                if r.u(1):
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        cycle = r.ue()
        if cycle > 255:
            raise Malformed(f"num_ref_frames_in_pic_order_cnt_cycle {cycle} > 255")
        for _ in range(cycle):
            r.se()
    r.ue()  # max_num_ref_frames
    r.u(1)
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    width, height = width_mbs * 16, (2 - frame_mbs_only) * height_units * 16
    if not frame_mbs_only:
        r.u(1)
    r.u(1)  # direct_8x8_inference_flag
    if r.u(1):  # frame cropping: the displayed picture is smaller than the coded one
        unit_x = 1 if chroma in (0, 3) else 2
        unit_y = (2 - frame_mbs_only) * (2 if chroma == 1 else 1)
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        width = max(0, width - unit_x * (left + right))
        height = max(0, height - unit_y * (top + bottom))
    return width, height


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + r.se() + 256) % 256
        last = nxt or last


def hevc_sps_size(payload: bytes) -> tuple[int, int]:
    """(width, height) in luma samples an HEVC SPS (the NAL after its 2-byte header) declares."""
    r = BitReader(rbsp(payload))
    r.u(4)  # sps_video_parameter_set_id
    sub_layers = r.u(3)
    r.u(1)
    r.u(96)  # general profile_tier_level: space, tier, profile, 32 compatibility flags, 48 flag bits, level
    present = [(r.u(1), r.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        r.u(2 * (8 - sub_layers))
    for profile_present, level_present in present:
        r.u(88 if profile_present else 0)
        r.u(8 if level_present else 0)
    r.ue()  # sps_seq_parameter_set_id
    chroma = r.ue()
    if chroma == 3:
        r.u(1)
    width, height = r.ue(), r.ue()
    if r.u(1):  # conformance window
        unit_x, unit_y = (2, 2) if chroma == 1 else ((2, 1) if chroma == 2 else (1, 1))
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        width = max(0, width - unit_x * (left + right))
        height = max(0, height - unit_y * (top + bottom))
    return width, height


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame marker; None if there is none before the scan."""
    if not data.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                return None
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return width, height
        if marker == 0xDA or length < 2:  # start of scan: no frame header came before it
            return None
        pos += 2 + length
    return None


def declared_sizes(codec: str, data: bytes) -> list[tuple[int, int]]:
    """Every picture size `data` declares: each SPS of an Annex-B H.264/HEVC packet, or a JPEG's frame header.

    A parameter set that does not parse declares nothing here (the decoder will report it as undecodable)."""
    if codec == "mjpeg":
        size = jpeg_size(data)
        return [size] if size else []
    sizes = []
    for nal in nal_units(data):
        if not nal:
            continue
        try:
            if codec == "h264" and nal[0] & 0x1F == H264_SPS:
                sizes.append(h264_sps_size(nal[1:]))
            elif codec == "hevc" and len(nal) > 2 and (nal[0] >> 1) & 0x3F == HEVC_SPS:
                sizes.append(hevc_sps_size(nal[2:]))
        except Malformed:
            continue
    return sizes
