"""ApiKeySource: the Bouncer API key in force, rotatable without a restart.

The Bouncer client asks it for the key on every request. With BOUNCER_API_KEY_FILE the file is read each time,
so replacing the file rotates the key; `reload()` (wired to SIGHUP in the workers process) also re-reads the
settings, so a new BOUNCER_API_KEY in `.env` is picked up. Every key it hands out is first passed to `on_new_key`
(the log redactor's `add_secret`), so a rotated key is masked in logs from its first use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import SecretStr

from bouncer_queue.config import Settings

log = logging.getLogger(__name__)


def _ignore(_: str) -> None:
    return None


class ApiKeySource:
    """A callable key provider for BouncerClient; `reload()` re-reads the configuration."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_new_key: Callable[[str], None] = _ignore,
        load_settings: Callable[[], Settings] | None = None,
    ) -> None:
        self._settings = settings
        self._on_new_key = on_new_key
        self._load_settings = load_settings
        self._seen: set[str] = set()
        self._last: str | None = None

    def __call__(self) -> SecretStr | None:
        key = self._settings.api_key()
        self._last = None if key is None else key.get_secret_value()
        if self._last is not None:
            self._remember(self._last)
        return key

    def _remember(self, value: str) -> None:
        if value not in self._seen:
            self._seen.add(value)
            self._on_new_key(value)

    def reload(self) -> bool:
        """Re-read the key (and, given `load_settings`, BOUNCER_API_KEY); return whether it changed."""
        before = self._last
        try:
            if self._load_settings is not None:
                self._settings = self._with_key_of(self._load_settings())
            after = self()
        except (OSError, ValueError) as exc:  # a missing key file or an invalid .env: keep the key in force
            log.error("API key reload failed: %s", exc, extra={"action": "api_key_reload_failed"})
            return False
        changed = (None if after is None else after.get_secret_value()) != before
        log.info("API key reloaded", extra={"action": "api_key_reloaded", "changed": changed})
        return changed

    def _with_key_of(self, fresh: Settings) -> Settings:
        keys = {"bouncer_api_key": fresh.bouncer_api_key, "bouncer_api_key_file": fresh.bouncer_api_key_file}
        return self._settings.model_copy(update=keys)
