"""Entropy codec for the co-inference latent, and the input-image codecs of the
edge-only baselines.

Bit-exactness across machines: the device quantizes the float latent with ``np.rint``
(round half to even) and clamps it to each channel's table support; from then on
everything is integer. The frequency tables are integers (``precision_bits``, 16 by
default), shipped in the bundle (``codec_tables.json``); constriction's range coder is
given them as exactly representable float64 values and rescales them to its 24-bit
fixed-point model by a power of two, so encoder and decoder on any machine build the
same model. The integer latent -> bytes -> integer latent round trip is therefore the
same everywhere (``tests/test_split_codec.py`` decodes in one process what another
encoded, and pins a golden bitstream).

Wire format of one latent (``ep-factorized-range`` version 1)::

    varint(number of 32-bit words) || words (little endian)

The channels are coded one after another into one range-coder stream. The word count
makes truncated or padded payloads detectable; the range decoder alone cannot tell.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import constriction
import numpy as np

FACTORIZED_CODEC_ID = "ep-factorized-range"
FACTORIZED_CODEC_VERSION = "1"
IMAGE_CODEC_VERSION = "1"
IMAGE_CODEC_IDS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


class CodecError(ValueError):
    """A payload, shape or table that cannot be coded. ``field`` names the request field."""

    def __init__(self, message: str, field: str = "bitstream"):
        super().__init__(message)
        self.field = field


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(data: bytes) -> tuple[int, int]:
    value, shift = 0, 0
    for i, b in enumerate(data[:5]):
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i + 1
        shift += 7
    raise CodecError("bitstream header (word count) is truncated or malformed")


def quantize_frequencies(probabilities: np.ndarray, precision_bits: int = 16) -> np.ndarray:
    """Probabilities -> integer frequencies summing to 2**precision_bits, each >= 1.
    Deterministic (float64 numpy); run once at export, the integers are what ship."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 1 or len(p) == 0 or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise CodecError("probabilities must be a non-empty, finite, non-negative vector", field="tables")
    total = 1 << precision_bits
    n = len(p)
    if n > total:
        raise CodecError(f"{n} symbols do not fit {precision_bits}-bit frequencies", field="tables")
    freq = 1 + np.floor(p / p.sum() * (total - n)).astype(np.int64)
    freq[int(np.argmax(p))] += total - int(freq.sum())
    return freq


@dataclass(frozen=True)
class ChannelTable:
    offset: int                 # the symbol value of frequencies[0]
    frequencies: np.ndarray     # int64, sums to 2**precision_bits

    @property
    def low(self) -> int:
        return self.offset

    @property
    def high(self) -> int:
        return self.offset + len(self.frequencies) - 1


def quantize_latent(latent: np.ndarray) -> np.ndarray:
    """Float latent -> integer symbols (round half to even, as the trainer's torch.round)."""
    return np.rint(np.asarray(latent, dtype=np.float32)).astype(np.int32)


class FactorizedCodec:
    """Range coder over a factorized prior: one integer frequency table per channel."""

    codec_id = FACTORIZED_CODEC_ID
    version = FACTORIZED_CODEC_VERSION

    def __init__(self, tables: list[ChannelTable], precision_bits: int = 16):
        if not tables:
            raise CodecError("codec needs at least one channel table", field="tables")
        total = 1 << precision_bits
        for c, t in enumerate(tables):
            if t.frequencies.ndim != 1 or len(t.frequencies) < 2 or np.any(t.frequencies < 1) or int(t.frequencies.sum()) != total:
                raise CodecError(f"table of channel {c}: frequencies must be >= 1, at least two, and sum to 2**{precision_bits}",
                                 field="tables")
        self.tables = tables
        self.precision_bits = precision_bits
        # Exactly representable float64 integers; constriction rescales by a power of two.
        self._models = [constriction.stream.model.Categorical(t.frequencies.astype(np.float64), perfect=False)
                        for t in tables]

    @property
    def channels(self) -> int:
        return len(self.tables)

    # --- tables file -------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"codec_id": self.codec_id, "version": self.version, "precision_bits": self.precision_bits,
                "channels": [{"offset": t.offset, "frequencies": [int(f) for f in t.frequencies]} for t in self.tables]}

    @classmethod
    def from_json(cls, obj: dict) -> "FactorizedCodec":
        if obj.get("codec_id") != FACTORIZED_CODEC_ID or str(obj.get("version")) != FACTORIZED_CODEC_VERSION:
            raise CodecError(f"tables are for codec {obj.get('codec_id')!r} v{obj.get('version')!r}, "
                             f"expected {FACTORIZED_CODEC_ID!r} v{FACTORIZED_CODEC_VERSION}", field="tables")
        tables = [ChannelTable(int(ch["offset"]), np.asarray(ch["frequencies"], dtype=np.int64)) for ch in obj["channels"]]
        return cls(tables, int(obj.get("precision_bits", 16)))

    @classmethod
    def load(cls, path: str | Path) -> "FactorizedCodec":
        return cls.from_json(json.loads(Path(path).read_text()))

    @classmethod
    def from_probabilities(cls, tables: list[tuple[int, np.ndarray]], precision_bits: int = 16) -> "FactorizedCodec":
        out = []
        for lo, p in tables:
            p = np.asarray(p, dtype=np.float64)
            if len(p) < 2:  # the coder needs two symbols at least; the extra one gets the minimum frequency
                p = np.append(p, 0.0)
            out.append(ChannelTable(int(lo), quantize_frequencies(p, precision_bits)))
        return cls(out, precision_bits)

    # --- coding ------------------------------------------------------------------------
    def clamp(self, symbols: np.ndarray) -> np.ndarray:
        """Clamp integer symbols (C, H, W) to each channel's table support."""
        s = np.asarray(symbols)
        lows = np.array([t.low for t in self.tables]).reshape(-1, *([1] * (s.ndim - 1)))
        highs = np.array([t.high for t in self.tables]).reshape(lows.shape)
        return np.clip(s, lows, highs).astype(np.int32)

    def _check_shape(self, shape) -> tuple[int, ...]:
        shape = tuple(int(d) for d in shape)
        if len(shape) < 1 or shape[0] != self.channels or any(d <= 0 for d in shape) or int(np.prod(shape)) > 1 << 24:
            raise CodecError(f"latent_shape {list(shape)} does not match the codec: expected [{self.channels}, ...] "
                             "with positive dims", field="latent_shape")
        return shape

    def encode(self, symbols: np.ndarray) -> bytes:
        """Integer latent (C, ...) -> bitstream. Out-of-support values are clamped."""
        s = self.clamp(symbols)
        self._check_shape(s.shape)
        encoder = constriction.stream.queue.RangeEncoder()
        for c, (table, model) in enumerate(zip(self.tables, self._models)):
            encoder.encode((s[c].reshape(-1) - table.offset).astype(np.int32), model)
        words = encoder.get_compressed().astype("<u4")
        return _varint(len(words)) + words.tobytes()

    def decode(self, bitstream: bytes, shape) -> np.ndarray:
        """Bitstream -> integer latent of ``shape``; CodecError on any malformed input."""
        shape = self._check_shape(shape)
        if not bitstream:
            raise CodecError("bitstream is empty")
        n_words, header = _read_varint(bitstream)
        body = len(bitstream) - header
        if body != 4 * n_words:
            kind = "truncated" if body < 4 * n_words else "has trailing bytes"
            raise CodecError(f"bitstream {kind}: header says {4 * n_words} bytes, got {body}")
        words = np.frombuffer(bitstream, dtype="<u4", offset=header, count=n_words).astype(np.uint32)
        decoder = constriction.stream.queue.RangeDecoder(words)
        per_channel = int(np.prod(shape[1:]))
        out = np.empty((self.channels, per_channel), dtype=np.int32)
        try:
            for c, (table, model) in enumerate(zip(self.tables, self._models)):
                out[c] = np.asarray(decoder.decode(model, per_channel), dtype=np.int32) + table.offset
        except Exception as exc:  # constriction raises on data invalid for the model
            raise CodecError(f"bitstream is corrupt: {exc}") from exc
        return out.reshape(shape)


def image_header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) from a PNG or WebP header without decoding anything; None for
    other formats or a header too short to say. Pillow's WebP plugin allocates the whole
    canvas when it opens a file, so its size must be known before ``Image.open``."""
    if fmt == "PNG":
        if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        return None
    if fmt == "WEBP":
        if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
            return None
        kind = data[12:16]
        if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if kind == b"VP8L" and data[20] == 0x2F:
            bits = struct.unpack("<I", data[21:25])[0]
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8X":
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


class ImageCodec:
    """PNG / JPEG / WebP for the edge-only baselines (Pillow; imported when used).

    Decoding checks the image's dimensions from its header against ``latent_shape``
    before any pixel is decoded (PNG / WebP: read from the header bytes; JPEG: Pillow's
    lazy ``Image.open``, which parses markers only), so a small file claiming a huge
    image (a decompression bomb) costs nothing: the decoded size is bounded by the
    endpoint's input shape."""

    version = IMAGE_CODEC_VERSION

    def __init__(self, codec_id: str):
        if codec_id not in IMAGE_CODEC_IDS:
            raise CodecError(f"unknown image codec {codec_id!r}; known: {sorted(IMAGE_CODEC_IDS)}", field="codec.codec_id")
        self.codec_id = codec_id
        self.format = IMAGE_CODEC_IDS[codec_id]

    @staticmethod
    def _pil():
        try:
            from PIL import Image
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise CodecError("image codecs need Pillow (pip install pillow)", field="codec.codec_id") from exc
        return Image

    def encode(self, image: np.ndarray, quality: int | None = None) -> bytes:
        """uint8 (H, W) grey image -> file bytes. ``quality`` for JPEG / WebP (1-100)."""
        Image = self._pil()
        buf = io.BytesIO()
        img = Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L")
        if self.format == "PNG":
            img.save(buf, format="PNG", optimize=True)
        elif self.format == "WEBP" and quality is None:
            img.save(buf, format="WEBP", lossless=True)
        else:
            img.save(buf, format=self.format, quality=int(quality if quality is not None else 75))
        return buf.getvalue()

    def decode(self, data: bytes, shape) -> np.ndarray:
        """File bytes -> float32 (1, H, W) in [0, 1] (the model input contract)."""
        shape = tuple(int(d) for d in shape)
        if len(shape) != 3 or shape[0] != 1:
            raise CodecError(f"latent_shape {list(shape)} must be [1, H, W] for an image codec", field="latent_shape")
        if not data:
            raise CodecError("bitstream is empty")
        want = (shape[2], shape[1])   # (width, height)
        header = image_header_size(data, self.format)
        if header is not None and tuple(header) != want:
            raise CodecError(f"image header says {header[0]}x{header[1]}, latent_shape says {want[0]}x{want[1]}",
                             field="latent_shape")
        Image = self._pil()
        try:
            img = Image.open(io.BytesIO(data), formats=[self.format])
            if img.format != self.format:
                raise CodecError(f"bitstream is {img.format}, codec says {self.format}")
            if tuple(img.size) != want:   # lazy open: only the header has been read
                raise CodecError(f"image header says {img.size[0]}x{img.size[1]}, latent_shape says "
                                 f"{want[0]}x{want[1]}", field="latent_shape")
            if getattr(img, "n_frames", 1) != 1:
                raise CodecError(f"image has {img.n_frames} frames; one expected")
            img.load()
            arr = np.asarray(img.convert("L"), dtype=np.uint8)
        except CodecError:
            raise
        except Exception as exc:
            raise CodecError(f"bitstream is not a valid {self.format} image: {exc}") from exc
        if arr.shape != shape[1:]:
            raise CodecError(f"image is {list(arr.shape)}, latent_shape says {list(shape[1:])}", field="latent_shape")
        return (arr.astype(np.float32) / 255.0)[None]
