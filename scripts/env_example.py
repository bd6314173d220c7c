"""Rewrite .env.example from Settings: every setting, its default, and the comments of config.py.

Run after adding a setting: `.venv/bin/python scripts/env_example.py` (tests/deploy checks the file).
"""

from __future__ import annotations

import re
from pathlib import Path

from bouncer_queue.config import Settings

ROOT = Path(__file__).resolve().parents[1]
HEADER = [
    "# bouncer-queue settings: every one, with its default. Copy to .env and change what you need.",
    "# A commented line keeps the default; unset Redis and database settings mean the embedded Valkey and SQLite,",
    "# which are per process/container: set REDIS_URL (or REDIS_HOST) and DATABASE_URL for any shared deployment.",
    "",
]


def line_for(name: str) -> str:
    field = Settings.model_fields[name]
    env = (field.alias or name).upper()
    default = field.default
    if default is None:
        return f"# {env}="
    return f"{env}={str(default).lower() if isinstance(default, bool) else default}"


def lines() -> list[str]:
    out = list(HEADER)
    source = (ROOT / "src" / "bouncer_queue" / "config.py").read_text(encoding="utf-8").split("class Settings(", 1)[1]
    for line in source.splitlines():
        if line.startswith(("    @", "    def ")):
            break
        if section := re.match(r"    # (.+)", line):
            out += ["", f"# --- {section.group(1)}"]
        elif comment := re.match(r"    #: (.+)", line):
            out.append(f"# {comment.group(1)}")
        elif (field := re.match(r"    (\w+): ", line)) and field.group(1) in Settings.model_fields:
            out.append(line_for(field.group(1)))
    return out


def main() -> None:
    text = "\n".join(lines())
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    (ROOT / ".env.example").write_text(text + "\n", encoding="utf-8")
    print(".env.example written")


if __name__ == "__main__":
    main()
