"""Ask's one image: JPEG or PNG only, its declared size checked against the pixel limit before it is decoded."""

from __future__ import annotations

import io
import warnings

import grpc
import numpy as np
from PIL import Image, UnidentifiedImageError

from ingest.limits import LimitExceeded


def decode_image(data: bytes, *, max_pixels: int) -> np.ndarray:
    """RGB pixels of one JPEG or PNG. ValueError for anything else; LimitExceeded over `max_pixels` (checked on the
    header, so a decompression bomb is never inflated)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides, below
            with Image.open(io.BytesIO(data)) as img:
                if img.format not in ("JPEG", "PNG"):
                    raise ValueError(f"image format {img.format} is not supported; send JPEG or PNG")
                width, height = img.size
                if max_pixels > 0 and width * height > max_pixels:
                    raise LimitExceeded(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "max_decoded_pixels",
                        max_pixels,
                        f"the image declares {width}x{height} ({width * height} pixels)",
                    )
                return np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError as exc:  # past twice PIL's own ceiling: refused at open already
        raise LimitExceeded(grpc.StatusCode.INVALID_ARGUMENT, "max_decoded_pixels", max_pixels, str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"image does not decode as JPEG or PNG: {exc}") from None
