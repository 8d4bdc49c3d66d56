"""Hardware profiles: the four shipped profiles, their constraints, detection, errors."""

from pathlib import Path

import pytest

import yaml

from edgepilot.hardware.profiles import PROFILE_DIR, HardwareProfile, ProfileError, detect_local_profile, list_profiles, load_profile


def test_shipped_profiles_load():
    assert set(list_profiles()) >= {"jetson-nano", "jetson-orin-nano", "rtx4090-edge-server", "laptop"}
    for name in list_profiles():
        p = load_profile(name)
        assert p.name == name
        assert p.preferred_precision in p.precisions
        assert p.execution_providers[-1] == "CPUExecutionProvider"


def test_jetson_nano_is_opset_16_fp16_without_int8():
    p = load_profile("jetson-nano")
    assert p.opset == 16 and p.tensorrt_version == "8.2"
    assert p.preferred_precision == "fp16"
    assert not p.supports("int8_static") and not p.supports("int8_dynamic")


def test_newer_targets_use_opset_17_or_later_and_int8():
    for name in ("jetson-orin-nano", "rtx4090-edge-server"):
        p = load_profile(name)
        assert p.opset >= 17 and p.supports("int8_static") and p.tensorrt_version.startswith("10")
    assert load_profile("laptop").tensorrt_version is None


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ProfileError, match="unknown hardware profile 'jetson-tx9'.*jetson-nano"):
        load_profile("jetson-tx9")


def test_bad_profile_names_the_field(tmp_path):
    text = Path(load_profile.__globals__["PROFILE_DIR"] / "jetson-nano.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("preferred_precision: fp16", "preferred_precision: int8_static"))
    with pytest.raises(ProfileError, match="preferred_precision 'int8_static' is not in precisions"):
        load_profile(bad)
    bad.write_text(text.replace("max: 64}   # DTAC", "max: 0}   # DTAC"))
    with pytest.raises(ProfileError, match="shapes.batch"):
        load_profile(bad)
    bad.write_text(text + "\nflux_capacitor: 1\n")
    with pytest.raises(ProfileError, match="unknown field.*flux_capacitor"):
        load_profile(bad)


def test_detection(tmp_path):
    none = str(tmp_path / "absent")
    model = tmp_path / "model"
    release = tmp_path / "nv_tegra_release"
    model.write_bytes(b"NVIDIA Jetson Nano Developer Kit\x00")
    assert detect_local_profile(tegra_release=none, device_tree_model=str(model)) == "jetson-nano"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    assert detect_local_profile(tegra_release=none, device_tree_model=str(model)) == "jetson-orin-nano"
    release.write_text("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64")
    assert detect_local_profile(tegra_release=str(release), device_tree_model=none) == "jetson-nano"
    assert detect_local_profile(tegra_release=none, device_tree_model=none, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]) == "rtx4090-edge-server"
    assert detect_local_profile(tegra_release=none, device_tree_model=none, providers=["CPUExecutionProvider"]) == "laptop"


def test_contrib_ops_only_without_tensorrt(tmp_path):
    text = Path(load_profile.__globals__["PROFILE_DIR"] / "jetson-orin-nano.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text + "\nort_contrib_ops: true\n")
    with pytest.raises(ProfileError, match="ort_contrib_ops needs a profile without TensorRT"):
        load_profile(bad)
    assert load_profile("laptop").ort_contrib_ops and not load_profile("jetson-nano").ort_contrib_ops


def test_every_profile_gives_the_emulated_compute_speed(tmp_path):
    from edgepilot.emulation.hardware import device_cpu_hz

    for name in list_profiles():
        hz = load_profile(name).cpu_hz
        assert isinstance(hz, float) and 1e8 < hz < 1e10, (name, hz)
        assert device_cpu_hz(name) == hz
    assert load_profile("jetson-nano").cpu_hz == 1.43e9  # the Cortex-A57 clock the fleet emulates
    data = yaml.safe_load((PROFILE_DIR / "laptop.yaml").read_text())
    for bad in (0, -1.0, "fast", True):
        with pytest.raises(ProfileError, match="cpu_hz"):
            HardwareProfile.from_dict({**data, "cpu_hz": bad}, "bad.yaml")
