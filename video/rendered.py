"""The rendered endoscope: a stereo source that draws the arms where the bedside says they are.

It runs in the video process (video/sender.py), paced at the camera's frame rate, never in the bedside's 1 kHz
loop: at each frame slot it reads the newest bedside state from the shared-memory block the loop writes after
every tick (transport/bedside_state.py; a read never waits for the writer), draws it (video/render.py) and hands
the picture on with a `SceneStamp` saying what it shows: the state's sequence and time, the last TELEMETRY
sequence, and the last servo_cp applied (epoch, sequence, the console's send time, the bedside's receive time).
The sender copies the stamp into the frame header (transport/video_wire.py), so the console knows of every frame
it paints which of its own commands it shows.

Capture time (`StereoFrame.capture_ns`) is when the state was read: the moment the picture was "taken".

Size: when the sender fits the picture to the machines (video/adapt.py) it asks for a smaller one (`draw_at`);
the view is then drawn at that size by the same camera with its intrinsics scaled, not drawn in full and shrunk.
"""

from __future__ import annotations

import time
from collections import deque

from base.config import Config
from base.stats import percentiles
from safety.tissue import tissue_from_config
from transport.bedside_state import StateError, StateReader
from transport.messages import ARM_NAMES
from transport.video_wire import NO_STAMP, Layout, SceneStamp
from video.frames import Pacer, StereoFrame, StereoSource, VideoSourceError, fitted_size
from video.render import CAMERA_ARM, SceneRenderer
from video.scene import StereoCamera

MIN_EYE = (160, 96)


def renderer_from_config(cfg: Config, scale: float = 1.0) -> SceneRenderer:
    """The scene as configured: the camera (`video.*`), the tissue and the arms' bases (`bedside.*`); at `scale`,
    the same camera drawing each eye at the fitted size (video/frames.py `fitted_size`, `StereoCamera.resized`)."""
    vc = cfg.video
    if vc.width < MIN_EYE[0] or vc.height < MIN_EYE[1] or vc.width % 2 or vc.height % 2:
        raise VideoSourceError(f"rendered eye size {vc.width}x{vc.height} must be even and at least 160x96")
    camera = StereoCamera(vc.width, vc.height, vc.hfov_deg, vc.baseline_mm / 1e3)
    if scale != 1.0:
        w, h = fitted_size(2 * vc.width, vc.height, scale)
        camera = camera.resized(w // 2, h)
    rcms = {name: cfg.bedside.arm_rcm_m(name) for name in ARM_NAMES}
    ecm = rcms[CAMERA_ARM]
    return SceneRenderer(camera, tissue_from_config(cfg.bedside), rcms, (ecm[0], ecm[1]), texture_scale=scale)


class RenderedStereo(StereoSource):
    """`video.width`×`video.height` per eye, side by side, at `video.fps`; `state`: the bedside state block's
    path (None: no bedside, a still picture that says so)."""

    def __init__(self, cfg: Config, state: str | None, paced: bool = True) -> None:
        self.name = "rendered"
        self.cfg = cfg
        self.renderer = renderer_from_config(cfg)
        self.native_size = (2 * cfg.video.width, cfg.video.height)
        self._renderers = {1.0: self.renderer}  # one per fitted scale: each keeps its texture and tissue views
        try:
            self.reader = StateReader(state) if state else None
        except StateError as exc:
            raise VideoSourceError(str(exc)) from None
        self.pacer = Pacer(cfg.video.fps) if paced else None
        self.n = -1
        self.render_ms: deque[float] = deque(maxlen=2000)

    def draw_at(self, scale: float) -> bool:
        """Draw the next frames at the fitted size: the camera's intrinsics scaled with the picture (the geometry,
        disparity included, scales with it), about a quarter of the pixels at half size and no resize after.
        False (the sender shrinks instead) where an eye would fall below 160×96."""
        w, h = fitted_size(*self.native_size, scale)
        if w // 2 < MIN_EYE[0] or h < MIN_EYE[1]:
            self.renderer = self._renderers[1.0]
            return False
        r = self._renderers.get(scale)
        if r is None:
            r = self._renderers[scale] = renderer_from_config(self.cfg, scale)
        self.renderer = r
        return True

    def read(self) -> StereoFrame:
        self.n = self.pacer.wait() if self.pacer else self.n + 1
        t = time.monotonic_ns()
        try:
            st = self.reader.read() if self.reader is not None else None
        except StateError as exc:
            raise VideoSourceError(str(exc)) from None
        image = self.renderer.render(st, self.n, t)
        took = time.monotonic_ns() - t
        self.render_ms.append(took / 1e6)
        stamp = NO_STAMP
        if st is not None and st.seq:
            stamp = SceneStamp(st.seq, st.t_ns, st.telemetry_seq, st.applied_epoch, st.applied_seq,
                               st.applied_send_ns, st.applied_rx_ns, took // 1000)
        return StereoFrame(image, Layout.SIDE_BY_SIDE, t, self.n, stamp)

    def stats(self) -> dict[str, object]:
        return {"render_ms": percentiles(list(self.render_ms), True, ("p50", "p95"), 2),
                "background_warps": sum(r.background_warps for r in self._renderers.values()),
                "state_retries": self.reader.retries if self.reader is not None else 0}

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
