"""Tessera GPU provider: offers this machine's GPU to a compute network while
Blender is idle, and stops taking jobs while Blender renders.

The add-on runs a Tessera provider (the `tessera` Python package, which
bundles the library) on its own thread from an operator's configuration
file, the same TOML file `tessera-agent` reads: coordinator, TLS trust,
device key, result store, device and prices. While a render runs (from
the render start to its completion or cancellation) the provider declines
new offers; jobs already running finish. A panel in the Render properties
shows the session, the jobs done and the earnings.

Install: put this folder in Blender's add-ons folder (or install it from a
zip), make the `tessera` package importable by Blender's Python (README,
"Blender"), enable "Tessera GPU provider" and set the configuration file in
its preferences.
"""

from __future__ import annotations

bl_info = {
    "name": "Tessera GPU provider",
    "author": "Tessera",
    "version": (0, 1, 0),
    "blender": (3, 0, 0),
    "location": "Properties > Render > Tessera",
    "description": "Offer the GPU to a compute network while Blender is idle",
    "category": "System",
}

from typing import Any, Optional, Set

import bpy
from bpy.app.handlers import persistent
from bpy.props import BoolProperty, FloatProperty, StringProperty

from . import provider

_ADDON = __name__


def _prefs() -> Any:
    return bpy.context.preferences.addons[_ADDON].preferences


@persistent
def _render_started(*_args: Any) -> None:
    """A render begins: the GPU is the user's until it ends."""
    provider.PROVIDER.set_rendering(True)


@persistent
def _render_ended(*_args: Any) -> None:
    """A render completed or was cancelled: take jobs again."""
    provider.PROVIDER.set_rendering(False)


_HANDLERS = (
    (bpy.app.handlers.render_init, _render_started),
    (bpy.app.handlers.render_complete, _render_ended),
    (bpy.app.handlers.render_cancel, _render_ended),
)


class TesseraPreferences(bpy.types.AddonPreferences):
    """Where the provider's configuration is, and whether it starts with Blender."""

    bl_idname = _ADDON

    config_path: StringProperty(  # type: ignore[valid-type]
        name="Configuration",
        description="The operator's TOML file (the one tessera-agent reads)",
        subtype="FILE_PATH",
    )
    start_with_blender: BoolProperty(  # type: ignore[valid-type]
        name="Start with Blender",
        description="Start offering the GPU when the add-on is enabled",
        default=False,
    )
    drain_seconds: FloatProperty(  # type: ignore[valid-type]
        name="Drain time",
        description="How long stopping waits for running jobs and acknowledgements",
        default=10.0,
        min=0.0,
    )

    def draw(self, context: Any) -> None:
        layout = self.layout
        layout.prop(self, "config_path")
        layout.prop(self, "start_with_blender")
        layout.prop(self, "drain_seconds")


class TESSERA_OT_start(bpy.types.Operator):
    """Start offering the GPU to the network"""

    bl_idname = "tessera.start"
    bl_label = "Offer GPU"

    def execute(self, context: Any) -> Set[str]:
        path = bpy.path.abspath(_prefs().config_path)
        if not path:
            self.report({"ERROR"}, "Set the configuration file in the add-on's preferences")
            return {"CANCELLED"}
        try:
            provider.PROVIDER.start(path)
        except Exception as e:  # noqa: BLE001 (shown to the user, whatever it is)
            self.report({"ERROR"}, f"Tessera: {e}")
            return {"CANCELLED"}
        return {"FINISHED"}


class TESSERA_OT_stop(bpy.types.Operator):
    """Stop offering the GPU: running jobs finish, results are delivered"""

    bl_idname = "tessera.stop"
    bl_label = "Stop"

    def execute(self, context: Any) -> Set[str]:
        provider.PROVIDER.stop(_prefs().drain_seconds)
        return {"FINISHED"}


class TESSERA_PT_provider(bpy.types.Panel):
    """Status, jobs done and earnings"""

    bl_label = "Tessera"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "render"

    def draw(self, context: Any) -> None:
        layout = self.layout
        for line in provider.PROVIDER.summary():
            layout.label(text=line)
        row = layout.row()
        if provider.PROVIDER.running:
            row.operator(TESSERA_OT_stop.bl_idname, icon="PAUSE")
        else:
            row.operator(TESSERA_OT_start.bl_idname, icon="PLAY")


_CLASSES = (TesseraPreferences, TESSERA_OT_start, TESSERA_OT_stop, TESSERA_PT_provider)


def _refresh() -> Optional[float]:
    """Redraws the panel once a second while a provider runs."""
    provider.PROVIDER.poll()
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "PROPERTIES":
                area.tag_redraw()
    return 1.0


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    for handlers, fn in _HANDLERS:
        if fn not in handlers:
            handlers.append(fn)
    if not bpy.app.timers.is_registered(_refresh):
        bpy.app.timers.register(_refresh, first_interval=1.0, persistent=True)
    prefs = _prefs()
    if prefs.start_with_blender and prefs.config_path:
        try:
            provider.PROVIDER.start(bpy.path.abspath(prefs.config_path))
        except Exception as e:  # noqa: BLE001 (reported, Blender goes on)
            print(f"Tessera: not started: {e}")


def unregister() -> None:
    # Stop first: the runtime's thread must not outlive the add-on's code.
    try:
        drain = _prefs().drain_seconds
    except (KeyError, AttributeError):
        drain = 10.0
    provider.PROVIDER.stop(drain)
    if bpy.app.timers.is_registered(_refresh):
        bpy.app.timers.unregister(_refresh)
    for handlers, fn in _HANDLERS:
        while fn in handlers:
            handlers.remove(fn)
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
