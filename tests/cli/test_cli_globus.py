"""`balsam-mq site globus-login`: the native-app flow's code pasted at the prompt, the tokens
kept in the site directory for its owner only (Globus answered from a recorded response)."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from cli_helpers import Cli

from balsam_mq.site.directory import SiteDirectory

CLIENT_ID = "7f3c1d2e-0a4b-4c5d-8e6f-1a2b3c4d5e6f"
ENDPOINT = "9d6d994a-6d04-11e5-ba46-22000b92c6ec"
TOKEN_URL = "https://auth.globus.org/v2/oauth2/token"
RECORDED = Path(__file__).parents[1] / "processors" / "globus_responses" / "token_exchange.json"


@pytest.fixture
def globus() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


def site_dir(tmp_path: Path, transfers: str) -> SiteDirectory:
    site = SiteDirectory.create(tmp_path / "site", name="polaris", site_id=1)
    with site.settings_file.open("a") as f:
        f.write(transfers)
    return site


async def test_login_keeps_the_tokens_for_the_sites_owner_only(
    cli: Cli, tmp_path: Path, globus: responses.RequestsMock
) -> None:
    site = site_dir(
        tmp_path,
        f"transfers: {{globus_endpoint: {ENDPOINT}, globus_client_id: {CLIENT_ID}}}\n",
    )
    globus.add("POST", TOKEN_URL, json=json.loads(RECORDED.read_text()))
    result = await cli.ok("site", "globus-login", str(site.path), "--json", input="the-code\n")
    printed = result.stdout.removeprefix(" the-code\n")  # the test runner echoes what was typed
    assert json.loads(printed) == {"site": "polaris", "tokens": str(site.globus_tokens)}
    assert "https://auth.globus.org/v2/oauth2/authorize?" in result.stderr  # the URL to open
    assert stat.S_IMODE(site.globus_tokens.stat().st_mode) == 0o600
    assert "code=the-code" in str(globus.calls[0].request.body)
    assert "transfer.api.globus.org" in site.globus_tokens.read_text()


async def test_login_without_a_client_id_says_which_setting_is_missing(
    cli: Cli, tmp_path: Path
) -> None:
    site = site_dir(tmp_path, "")
    message = await cli.error("site", "globus-login", str(site.path))
    assert "set transfers.globus_client_id" in message
