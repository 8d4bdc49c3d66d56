"""The co-inference entropy codec: exact round trips, bit-exact bitstreams (pinned golden
vector; one process decodes what another encoded), malformed payloads rejected with the
field named, and a torch-free device side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepilot.edge_agent.split.codec import ChannelTable, CodecError, FactorizedCodec, ImageCodec, quantize_frequencies


def integer_tables() -> FactorizedCodec:
    """Integer tables built from integers only (no floats), 4 channels x 13 symbols."""
    tables = []
    for c in range(4):
        raw = np.array([max(1, 4096 >> (2 * abs(k - c) + c)) for k in range(-6, 7)], dtype=np.int64)
        raw[6] += (1 << 16) - int(raw.sum())
        tables.append(ChannelTable(offset=-6, frequencies=raw))
    return FactorizedCodec(tables)


GOLDEN_SYMBOLS_SEED = 1234


def golden_symbols() -> np.ndarray:
    return np.random.default_rng(GOLDEN_SYMBOLS_SEED).integers(-4, 5, size=(4, 5, 5)).astype(np.int32)


# encode(integer_tables(), golden_symbols()): constriction range coder + varint word-count framing.
PINNED = (
    "1eaffdfaff28f30cc48bc8a3a7dbf7a3d68d2d5a19e60b77def16f1e6ebb9632654f3d4328317a7655e4abfca46c1915fac5743caec236a0"
    "953f1f61c9e82ad7d88d2069e6a745e8385b6a453b9d0da53665799cfc38cdaede4dca37ce07e9cb60940ae57563a32f78e60a7433bcaba4b8"
    "0c857d3ea298df4e"
)


def test_golden_bitstream_is_pinned() -> None:
    """A change in constriction, the table handling or the framing changes these bytes;
    encoder and decoder on different machines would then disagree."""
    bits = integer_tables().encode(golden_symbols())
    assert bits.hex() == PINNED
    assert np.array_equal(integer_tables().decode(bytes.fromhex(PINNED), (4, 5, 5)), golden_symbols())


def test_decode_in_another_process(tmp_path: Path) -> None:
    """Process A encodes with the tables file, process B (this one) decodes."""
    codec = integer_tables()
    tables = tmp_path / "tables.json"
    tables.write_text(json.dumps(codec.to_json()))
    script = (
        "import sys, numpy as np\n"
        "from edgepilot.edge_agent.split.codec import FactorizedCodec\n"
        "c = FactorizedCodec.load(sys.argv[1])\n"
        "rng = np.random.default_rng(7)\n"
        "for i in range(20):\n"
        "    s = rng.integers(-9, 10, size=(4, 6, 3)).astype(np.int32)\n"
        "    open(f'{sys.argv[2]}/{i}.bin', 'wb').write(c.encode(s))\n"
        "    np.save(f'{sys.argv[2]}/{i}.npy', c.clamp(s))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tables), str(tmp_path)], check=True, timeout=60)
    loaded = FactorizedCodec.load(tables)
    for i in range(20):
        decoded = loaded.decode((tmp_path / f"{i}.bin").read_bytes(), (4, 6, 3))
        assert np.array_equal(decoded, np.load(tmp_path / f"{i}.npy"))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_round_trip_is_exact(channels: int, side: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tables = [(int(rng.integers(-8, 0)), rng.random(int(rng.integers(1, 20))) + 1e-4) for _ in range(channels)]
    codec = FactorizedCodec.from_probabilities(tables)
    symbols = rng.integers(-12, 12, size=(channels, side, side)).astype(np.int32)
    bits = codec.encode(symbols)
    assert np.array_equal(codec.decode(bits, symbols.shape), codec.clamp(symbols))


def test_clamp_to_support() -> None:
    codec = integer_tables()
    s = np.full((4, 1, 1), 100, dtype=np.int32)
    assert np.all(codec.decode(codec.encode(s), s.shape) == 6)


@pytest.mark.parametrize("mutate, field", [
    (lambda b: b[:-1], "bitstream"),          # truncated by a byte
    (lambda b: b[:-4], "bitstream"),          # truncated by a word
    (lambda b: b[:1], "bitstream"),           # header only
    (lambda b: b"", "bitstream"),             # empty
    (lambda b: b + b"\x00", "bitstream"),     # trailing byte
    (lambda b: b"\xff\xff\xff\xff\xff\xff", "bitstream"),  # malformed header
])
def test_malformed_bitstreams_are_rejected(mutate, field) -> None:
    codec = integer_tables()
    bits = codec.encode(golden_symbols())
    with pytest.raises(CodecError) as err:
        codec.decode(mutate(bits), (4, 5, 5))
    assert err.value.field == field


def test_wrong_shape_names_the_field() -> None:
    codec = integer_tables()
    bits = codec.encode(golden_symbols())
    with pytest.raises(CodecError) as err:
        codec.decode(bits, (3, 5, 5))
    assert err.value.field == "latent_shape"


def test_frequency_quantization() -> None:
    f = quantize_frequencies(np.array([1e-12, 0.5, 0.25, 0.25 - 1e-12]))
    assert f.sum() == 1 << 16 and f.min() >= 1 and f.dtype == np.int64
    with pytest.raises(CodecError):
        quantize_frequencies(np.array([-1.0, 2.0]))
    with pytest.raises(CodecError):
        FactorizedCodec([ChannelTable(0, np.array([1, 2, 3]))])  # does not sum to 2**16


def test_image_codecs_round_trip() -> None:
    img = (np.arange(28 * 28) % 251).astype(np.uint8).reshape(28, 28)
    png = ImageCodec("image/png")
    out = png.decode(png.encode(img), (1, 28, 28))
    assert np.array_equal((out[0] * 255).round().astype(np.uint8), img)
    jpeg = ImageCodec("image/jpeg")
    assert jpeg.decode(jpeg.encode(img, 50), (1, 28, 28)).shape == (1, 28, 28)
    with pytest.raises(CodecError) as err:
        jpeg.decode(png.encode(img), (1, 28, 28))  # a PNG sent as JPEG
    assert err.value.field == "bitstream"
    with pytest.raises(CodecError) as err:
        ImageCodec("image/gif")
    assert err.value.field == "codec.codec_id"


def test_device_side_imports_without_torch() -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"  # any 'import torch' now raises ImportError
        "import edgepilot.edge_agent.split, edgepilot.edge_agent.split.client, edgepilot.edge_agent.split.link\n"
        "import edgepilot.edge_agent.server, edgepilot.edge_agent.server.split_service\n"
        "assert 'edgepilot.cloud_trainer' not in sys.modules and 'edgepilot.export' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
