"""`contactcard serve --seed FILE`: partners, keys, lines, cards, device scripts and
run-time settings loaded at start from a JSON or YAML file, declarative like WireMock's
mappings, so a test suite in any language starts from a known state:

    settings: {write_budget: 1}
    partners:
      - name: Acme
        keys: ["test-key-acme-0000000000"]     # fixed keys (16 characters or more)
        lines: ["+15551230001", "+15551230002"]
        cards:
          - {phone_number: "+15551230001", first_name: Ada, last_name: Lovelace}
        devices:
          "+15551230002": {fail_next: 1}

Cards are set up through the same use case as a POST (the contract's checks, the image
rehosted, the device applied), then the write budget they spent is forgotten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contactcard import contract, keys
from contactcard.device import DeviceScript
from contactcard.errors import ApiError

if TYPE_CHECKING:
    from contactcard.bootstrap import Services


class SeedError(Exception):
    """The seed file cannot be loaded; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedScript(_Strict):
    fail_next: int = Field(0, ge=0)
    rate_limit_next: int = Field(0, ge=0)
    rcs_unavailable: bool = False
    apply_delay: float = Field(0.0, ge=0)


class SeedPartner(_Strict):
    name: str = Field(min_length=1, max_length=200)
    keys: list[str] = Field(default_factory=list)
    lines: list[str] = Field(default_factory=list)
    cards: list[dict[str, Any]] = Field(default_factory=list, description="POST bodies")
    devices: dict[str, SeedScript] = Field(default_factory=dict)


class Seed(_Strict):
    settings: dict[str, Any] = Field(default_factory=dict)
    partners: list[SeedPartner] = Field(default_factory=list)


def load(path: Path) -> Seed:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedError(f"{path}: {exc}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml.YAMLError or json.JSONDecodeError, with its position
        raise SeedError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {exc}") from None
    try:
        return Seed.model_validate(data if data is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SeedError(f"{path}: {where}: {first['msg']}") from None


async def apply(seed: Seed, services: Services) -> bool:
    """Load `seed` into the database behind `services` (a start-up step, before serving).
    False, doing nothing, when every fixed key it names is known already: another process
    starting at the same moment (or an earlier start) loaded it."""
    admin, kit = services.admin, services.kit
    fixed = [key for partner in seed.partners for key in partner.keys]
    if fixed and all([await _known(services, key) for key in fixed]):
        return False
    try:
        if seed.settings:
            kit.change_settings(seed.settings)
        seeded_lines: list[str] = []
        for number, partner in enumerate(seed.partners):
            where = f"partners.{number} ({partner.name})"
            made = admin.create_partner(partner.name)
            given = [admin.issue_key(made.id, key).key for key in partner.keys]
            for line in partner.lines:
                admin.add_line(made.id, line)
            if partner.cards and not given:
                given.append(admin.issue_key(made.id).key)  # cards are set up with a key of theirs
            for body in partner.cards:
                try:
                    request = contract.setup_request(body, services.cards.rules)
                    result = await services.cards.setup(keys.key_hash(given[0]), request)
                except ApiError as exc:
                    raise SeedError(f"{where}: card {body.get('phone_number')}: {exc}") from None
                if result.error is not None:
                    raise SeedError(f"{where}: card {request.phone_number}: {result.error}")
                seeded_lines.append(request.phone_number)
            for line, script in partner.devices.items():
                admin.script_device(line, DeviceScript(**script.model_dump()))
        kit.forget_budgets(seeded_lines)
    except ApiError as exc:
        raise SeedError(exc.reason) from None
    return True


async def _known(services: Services, key: str) -> bool:
    try:
        await services.cards.require_key(keys.key_hash(key))
    except ApiError:
        return False
    return True
