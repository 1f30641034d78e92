"""Where the desktop app remembers things between runs (playlist, devices, window layout).

One INI file through ``QSettings`` (organisation "bgm2pose", application "app") in the user
scope, the same format on every platform so it can be read and edited by hand. Tests point
it elsewhere with ``QSettings.setPath(QSettings.Format.IniFormat, UserScope, folder)``.
"""

from __future__ import annotations

from PyQt6.QtCore import QSettings

ORGANISATION = "bgm2pose"
APPLICATION = "app"


def app_settings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANISATION,
                     APPLICATION)


def string_list(settings: QSettings, key: str) -> list[str]:
    """A list of strings saved with ``setValue(key, [...])`` (INI keeps one item as a str)."""
    value = settings.value(key, [])
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]
