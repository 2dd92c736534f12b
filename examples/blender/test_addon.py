"""Headless test of the add-on, run by Blender itself:

    BLENDER_USER_SCRIPTS=DIR blender -b --factory-startup --python-exit-code 1 \
        --python examples/blender/test_addon.py -- --config provider.toml \
        --requester PATH --coordinator ADDR --ca CA.pem --kernel matmul.spv

DIR/addons/tessera_provider is the add-on (ci/blender-test links it there),
and the `tessera` package is importable (PYTHONPATH). The test enables the
add-on as a user would, sets its configuration file, starts the provider
with its operator, has the requester's job served and verified, renders a
frame (during which a job is declined: the add-on pauses the provider),
serves a job again once the render is over, and disables the add-on, which
must drain the provider and leave no handler or timer behind.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Callable, List

import addon_utils  # type: ignore[import-not-found]
import bpy  # type: ignore[import-not-found]

ADDON = "tessera_provider"


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--requester", required=True)
    p.add_argument("--coordinator", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--kernel", required=True)
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    return p.parse_args(argv)


def wait_for(what: str, ok: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not ok():
        if time.monotonic() > deadline:
            raise SystemExit(f"blender test: timed out waiting for {what}")
        time.sleep(0.05)


def request(a: argparse.Namespace) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [a.requester, "--coordinator", a.coordinator, "--ca", a.ca,
         "--demo-matmul", "32", "--kernel", a.kernel],
        capture_output=True, text=True, timeout=120,
    )


def main() -> None:
    a = args()
    addon_utils.enable(ADDON, default_set=True, handle_error=None)
    module = sys.modules[ADDON]
    provider = module.provider.PROVIDER
    assert module._render_started in bpy.app.handlers.render_init
    assert bpy.app.timers.is_registered(module._refresh)
    print("blender test: add-on registered")

    prefs = bpy.context.preferences.addons[ADDON].preferences
    prefs.config_path = a.config
    prefs.drain_seconds = 20.0
    assert bpy.ops.tessera.start() == {"FINISHED"}
    wait_for("the session", lambda: (provider.status() is not None
                                    and provider.status().state.name == "READY"))
    print("blender test: " + " | ".join(provider.summary()))

    served = request(a)
    assert served.returncode == 0, served.stdout + served.stderr
    assert "result check" in served.stdout, served.stdout
    wait_for("the acknowledgement", lambda: provider.status().jobs_completed == 1)
    assert provider.status().earnings >= 100, provider.summary()
    print("blender test: served one job: " + " | ".join(provider.summary()))

    # A render takes the GPU back: a job offered meanwhile is declined.
    declined: List["subprocess.CompletedProcess[str]"] = []

    def during_render(*_: object) -> None:
        if not declined:
            assert provider.rendering
            declined.append(request(a))

    bpy.app.handlers.render_post.append(during_render)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = 32
    bpy.ops.render.render(write_still=False)
    bpy.app.handlers.render_post.remove(during_render)
    assert declined, "the render ran no render_post handler"
    assert declined[0].returncode != 0, declined[0].stdout
    assert "no provider took the job" in declined[0].stdout + declined[0].stderr, declined[0]
    assert not provider.rendering
    print("blender test: declined a job while rendering")

    again = request(a)
    assert again.returncode == 0, again.stdout + again.stderr
    wait_for("the second acknowledgement", lambda: provider.status().jobs_completed == 2)
    print("blender test: served a job after the render: " + " | ".join(provider.summary()))

    addon_utils.disable(ADDON, default_set=True, handle_error=None)
    assert not provider.running
    assert module._render_started not in bpy.app.handlers.render_init
    assert not bpy.app.timers.is_registered(module._refresh)
    print("blender test: add-on unregistered, provider drained")


main()
