"""Every source through the same pipeline (source -> encoder -> ROUTER -> DEALER -> decoder -> newest-frame
slot): synthetic, a side-by-side file, a left/right file pair, USB cameras through OpenCV, and a RealSense
`.db3` recorded with rs.software_device + rs.recorder and played through the real rs.pipeline."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from base.config import load_config
from video.framecode import read_eye_codes
from video.realsense import RealSenseSource, write_software_recording
from video.receiver import FrameView, VideoReceiver
from video.sender import VideoSender
from video.sources import FileSource, UsbSource, VideoSourceError, open_source
from video.synthetic import SyntheticStereo

W, H, FPS = 320, 240, 30


@pytest.fixture(scope="module")
def vcfg(key_overrides):
    return load_config(None, [*key_overrides, f"video.width={W}", f"video.height={H}", f"video.fps={FPS}",
                              "video.bitrate_kbps=3000", "video.min_bitrate_kbps=1000"])


@pytest.fixture(scope="module")
def synthetic_frames():
    src = SyntheticStereo(W, H, FPS, paced=False)
    return [src.read().image for _ in range(30)]


def pipe_through(cfg, source, n: int = 8, timeout_s: float = 10.0) -> list[FrameView]:
    """Run the real sender (thread) and receiver (thread) on loopback; return `n` decoded frames."""
    sender = VideoSender(cfg, source, endpoint="tcp://127.0.0.1:0")
    stop = threading.Event()
    t = threading.Thread(target=sender.run, args=(stop.is_set,), daemon=True)
    t.start()
    rx = VideoReceiver(cfg, endpoint=sender.endpoint)
    out: list[FrameView] = []
    try:
        seq = 0
        while len(out) < n:
            f = rx.wait_frame(seq, timeout_s)
            assert f is not None, f"no frame; receiver {rx.stats()}"
            seq = f.seq
            out.append(f)
        assert rx.stats()["decode_errors"] == 0
    finally:
        rx.close()
        stop.set()
        t.join(5)
        sender.close()
    return out


def write_video(path: Path, frames: list[np.ndarray], fps: int = FPS) -> None:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()


def assert_counters_advance(frames: list[FrameView]) -> None:
    codes = [read_eye_codes(f.image, f.layout) for f in frames]
    assert all(a is not None and a == b for a, b in codes), codes  # both eyes from one capture
    left = [a for a, _ in codes]
    assert len(set(left)) == len(left), left  # content advances
    assert all(not f.stale and f.decoded_age_ms >= 0 for f in frames[-3:])


@pytest.mark.parametrize("codec", ["h264", "jpeg"])
def test_synthetic_source_through_the_pipeline(vcfg, codec):
    from base.config import with_overrides

    cfg = with_overrides(vcfg, [f"video.codec={codec}"])
    frames = pipe_through(cfg, open_source("synthetic", cfg.video))
    assert_counters_advance(frames)
    assert frames[0].image.shape == (H, 2 * W, 3) and frames[0].left.shape == (H, W, 3)


def test_side_by_side_file_loops_through_the_pipeline(vcfg, synthetic_frames, tmp_path):
    path = tmp_path / "sbs.avi"
    write_video(path, synthetic_frames[:6])
    src = open_source(f"file:{path}", vcfg.video)
    assert isinstance(src, FileSource)
    frames = pipe_through(vcfg, src, n=10)
    codes = [read_eye_codes(f.image, f.layout)[0] for f in frames]
    assert set(codes) <= set(range(6)) and len(set(codes)) >= 4  # 6 frames, looping


def test_left_right_file_pair_through_the_pipeline(vcfg, synthetic_frames, tmp_path):
    left, right = tmp_path / "l.avi", tmp_path / "r.avi"
    write_video(left, [f[:, :W] for f in synthetic_frames[:10]])
    write_video(right, [f[:, W:] for f in synthetic_frames[:10]])
    frames = pipe_through(vcfg, open_source(f"file:{left},{right}", vcfg.video), n=6)
    assert_counters_advance(frames)


def test_usb_two_cameras_through_opencv(vcfg, synthetic_frames, tmp_path):
    """No USB camera on CI: the same UsbSource code drives cv2.VideoCapture objects opened on files."""
    cams = {0: tmp_path / "cam0.avi", 1: tmp_path / "cam1.avi"}
    write_video(cams[0], [f[:, :W] for f in synthetic_frames])
    write_video(cams[1], [f[:, W:] for f in synthetic_frames])
    src = UsbSource([0, 1], W, H, FPS, capture_factory=lambda i: cv2.VideoCapture(str(cams[i])))
    frames = pipe_through(vcfg, src, n=6)
    assert_counters_advance(frames)


def test_usb_stereo_camera_side_by_side(vcfg, synthetic_frames, tmp_path):
    cam = tmp_path / "stereo.avi"
    write_video(cam, synthetic_frames)
    src = UsbSource([0], W, H, FPS, capture_factory=lambda i: cv2.VideoCapture(str(cam)))
    assert_counters_advance(pipe_through(vcfg, src, n=6))


def test_missing_usb_camera_is_a_clear_error(vcfg):
    with pytest.raises(VideoSourceError, match="no USB camera at index 57"):
        open_source("usb:57", vcfg.video)


def test_realsense_software_recording_through_the_real_pipeline(vcfg, synthetic_frames, tmp_path):
    path = str(tmp_path / "d435.db3")
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in synthetic_frames[:20]]
    assert write_software_recording(path, [(g[:, :W], g[:, W:]) for g in grey], fps=FPS) == 20
    src = open_source(f"realsense-file:{path}", vcfg.video)
    assert isinstance(src, RealSenseSource) and src.mode == "ir-stereo"
    frames = pipe_through(vcfg, src, n=8)
    assert_counters_advance(frames)
    assert frames[-1].source_seq == read_eye_codes(frames[-1].image, frames[-1].layout)[0]  # device counter


def test_realsense_without_a_device_or_file_is_a_clear_error(vcfg, tmp_path):
    with pytest.raises(VideoSourceError, match="no Intel RealSense device found"):
        open_source("realsense", vcfg.video)
    with pytest.raises(VideoSourceError, match="does not exist"):
        open_source(f"realsense-file:{tmp_path / 'none.db3'}", vcfg.video)


def test_bad_specs_and_files_are_clear_errors(vcfg, tmp_path):
    with pytest.raises(VideoSourceError, match="unknown video source"):
        open_source("webcam", vcfg.video)
    with pytest.raises(VideoSourceError, match="cannot open video file"):
        open_source(f"file:{tmp_path / 'missing.mp4'}", vcfg.video)
