"""Generate src/bouncer_queue/data/sample.csv, the bundled sample list (deterministic: a fixed seed).

The list has TOTAL_ROWS data rows with the columns email,name,company,signup_date: realistic synthetic people at
free-mail, example and company domains, the Bouncer sandbox addresses, and the flaws a real list has, in known
numbers (the tests check them): DUPLICATES repeats of earlier addresses (half differing only in case),
EMPTY_EMAILS rows with an empty email cell, MALFORMED addresses, and SHORT_ROWS rows missing trailing fields.

Run: .venv/bin/python scripts/make_sample.py  (then commit the regenerated file)
"""

from __future__ import annotations

import csv
import io
import random
from datetime import date, timedelta
from pathlib import Path

SEED = 20240611
TOTAL_ROWS = 3000
DUPLICATES = 60
EMPTY_EMAILS = 12
SHORT_ROWS = 6
OUTPUT = Path(__file__).resolve().parents[1] / "src" / "bouncer_queue" / "data" / "sample.csv"

SANDBOX = [
    f"{local}@sandbox.usebouncer.com"
    for local in ("deliverable", "undeliverable", "unknown", "accept-all", "disposable", "free", "other")
] + [
    "deliverable+newsletter@sandbox.usebouncer.com",
    "deliverable+2024@sandbox.usebouncer.com",
    "undeliverable+test@sandbox.usebouncer.com",
    "unknown+crm@sandbox.usebouncer.com",
    "accept-all+sales@sandbox.usebouncer.com",
]
MALFORMED = [
    "john.doe@",
    "no-at-sign.example.com",
    "jane@@example.com",
    "@example.org",
    "mary smith@example.com",
    "bob@example",
    "alice@.com",
    "carol@example..com",
    "dave@example.com.",
    "eve(at)example.com",
    "frank@exa mple.com",
    "grace@-example.com",
]
FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan Joseph "
    "Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy Anthony Sandra Mark Ashley Paul Emily Steven "
    "Olivia Andrew Sophie Lucas Emma Noah Chloé José Zoë Björn Søren Ana Mateo Priya Arjun Wei Yuki Fatima Omar"
).split()
LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis Walker Young Allen King "
    "Wright Scott Müller Schmidt Dubois Rossi Nowak Kowalski Novak Silva Santos Tanaka Kim Nguyen Patel O'Brien"
).split()
FREE_MAIL = "gmail.com yahoo.com outlook.com hotmail.com icloud.com aol.com proton.me gmx.de web.de yahoo.co.uk".split()
EXAMPLE = "example.com example.org example.net mail.example.com".split()
COMPANIES = {
    "contoso.com": "Contoso Ltd",
    "fabrikam.com": "Fabrikam, Inc.",
    "northwind-traders.com": "Northwind Traders",
    "acme-widgets.io": "Acme Widgets",
    "initech.example": "Initech",
    "globex.example": "Globex Corporation",
    "umbrella-labs.example": "Umbrella Labs",
    "blue-harbor.co": "Blue Harbor & Sons",
    "tailspin-toys.com": "Tailspin Toys",
    "wide-world-importers.com": "Wide World Importers",
}


def _ascii(text: str) -> str:
    table = str.maketrans({"é": "e", "ë": "e", "ö": "o", "ø": "o", "ü": "u", "'": ""})
    return text.lower().translate(table)


def _person(rng: random.Random, taken: set[str]) -> list[str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    pool = rng.choices([FREE_MAIL, EXAMPLE, list(COMPANIES)], weights=[5, 2, 3])[0]
    domain = rng.choice(pool)
    f, la = _ascii(first), _ascii(last)
    local = rng.choice([f"{f}.{la}", f"{f[0]}{la}", f"{f}_{la}", f"{f}{la[0]}", f"{f}.{la}{rng.randint(1, 99)}"])
    while f"{local}@{domain}" in taken:
        local += str(rng.randint(0, 9))
    taken.add(f"{local}@{domain}")
    company = COMPANIES.get(domain, rng.choice(["", "", *COMPANIES.values()]))
    signup = date(2019, 1, 1) + timedelta(days=rng.randrange(6 * 365))
    return [f"{local}@{domain}", f"{first} {last}", company, signup.isoformat()]


def _case_variant(rng: random.Random, email: str) -> str:
    local, _, domain = email.partition("@")
    return rng.choice([f"{local.capitalize()}@{domain}", f"{local}@{domain.upper()}", email.upper()])


def generate(seed: int = SEED) -> list[list[str]]:
    """The sample's data rows, in file order."""
    rng = random.Random(seed)
    taken = {address.lower() for address in SANDBOX}
    specials = len(SANDBOX) + DUPLICATES + EMPTY_EMAILS + len(MALFORMED) + SHORT_ROWS
    rows = [_person(rng, taken) for _ in range(TOTAL_ROWS - specials)]
    for address in SANDBOX:
        rows.insert(rng.randrange(len(rows) + 1), [address, "Sandbox Tester", "Bouncer", "2024-01-01"])
    for number in range(DUPLICATES):
        source = rng.randrange(len(rows) - 1)
        copy = list(rows[source])
        if number % 2:
            copy[0] = _case_variant(rng, copy[0])
        rows.insert(rng.randrange(source + 1, len(rows) + 1), copy)
    flawed = [["", "No Email", "", "2023-05-05"] for _ in range(EMPTY_EMAILS - 1)] + [["   ", "Blank", "", ""]]
    flawed += [[address, "Typo Person", "", "2022-02-02"] for address in MALFORMED]
    flawed += [_person(rng, taken)[: 1 + number % 2] for number in range(SHORT_ROWS)]
    for row in flawed:
        rows.insert(rng.randrange(len(rows) + 1), row)
    return rows


def render(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["email", "name", "company", "signup_date"])
    writer.writerows(rows)
    return buffer.getvalue()


def main() -> None:
    OUTPUT.write_text(render(generate()), encoding="utf-8")
    print(f"wrote {OUTPUT} ({TOTAL_ROWS} rows)")


if __name__ == "__main__":
    main()
