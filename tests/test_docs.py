"""The manual (README.md, docs/, CHANGELOG.md) restates the code: where it does, it must agree with it.

Cheap on purpose: no AWS and no network; the examples go through the module's own parsers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import ec2_powercycle
from ec2_powercycle import (
    SCHEDULE_KEYS,
    SUMMARY_LISTS,
    Settings,
    chunk_of_event,
    parse_override,
    parse_schedule_document,
    parse_skip_entries,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS.glob("*.md")])
FENCE = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.M | re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6}) +(.+?) *$", re.M)


def text_of(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def prose_of(page: Path) -> str:
    """The page without its code blocks and comments: where its headings and links are."""
    return COMMENT.sub("", FENCE.sub("", text_of(page)))


def json_blocks(page: Path) -> list[str]:
    return [body for language, body in FENCE.findall(text_of(page)) if language == "json"]


def json_documents(block: str) -> list[Any]:
    """Every JSON document in a block: a block may hold several, one after another."""
    decoder, documents, index = json.JSONDecoder(), [], 0
    while (index := len(block) - len(block[index:].lstrip())) < len(block):
        document, index = decoder.raw_decode(block, index)
        documents.append(document)
    return documents


def section(page: Path, heading: str) -> str:
    text = text_of(page)
    start = text.index(f"\n{heading}\n")
    level = heading.split(" ", 1)[0]
    following = re.search(rf"^#{{1,{len(level)}}} ", text[start + len(heading) + 2 :], re.M)
    return text[start : start + len(heading) + 2 + following.start()] if following else text[start:]


def first_json_block(text: str) -> Any:
    return json.loads(next(body for language, body in FENCE.findall(text) if language == "json"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, heading in HEADING.findall(prose_of(page)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


# --- Examples -------------------------------------------------------------------


def skip_url_stand_in(url: str) -> Any:
    """What the run's resolver would return for a "skip" URL: the examples name no real server."""
    return parse_skip_entries(["12-25"], url)


def check_example(document: Any, where: str, policies: list[Any]) -> str:
    """Parse one JSON example as the scheduler would; return what kind it was."""
    if isinstance(document, list):
        parse_skip_entries(document)
        return "skip list"
    assert isinstance(document, dict), f"{where}: a JSON example that is neither an object nor a list"
    if "Statement" in document:
        assert document in policies, f"{where}: an IAM policy that is not one of iam/*.json"
        return "policy"
    if set(document) == {"state", "until"}:
        parse_override(json.dumps(document))
        return "override"
    if set(document) == {"time", "targets"}:
        regions = tuple(sorted({target["region"] for target in document["targets"]}))
        settings = Settings(organization_role="ec2-powercycle-spoke", regions=regions)
        chunk_of_event(document, settings, own_account=document["targets"][0]["account"])
        return "chunk event"
    if set(document) <= set(SCHEDULE_KEYS):
        parse_schedule_document(document, "UTC", skip_url_stand_in)
        return "schedule"
    if "window_end" in document:
        assert set(SUMMARY_LISTS) <= set(document), f"{where}: a summary without every list"
        return "summary"
    return "other"


def test_every_json_example_parses_as_the_scheduler_parses_it() -> None:
    policies = [json.loads(path.read_text()) for path in sorted((ROOT / "iam").glob("*.json"))]
    kinds: dict[str, int] = {}
    for page in PAGES:
        examples = [document for block in json_blocks(page) for document in json_documents(block)]
        # Tag values written inline, as in the tables of schedules.md.
        spans = [span.strip("`") for span in INLINE_CODE.findall(COMMENT.sub("", FENCE.sub("", text_of(page))))]
        examples += [json.loads(span) for span in spans if span.startswith(('{"start"', '{"stop"', '{"state"', '["'))]
        for document in examples:
            kind = check_example(document, page.name, policies)
            kinds[kind] = kinds.get(kind, 0) + 1
    assert {"schedule", "override", "skip list", "policy", "chunk event", "summary"} <= set(kinds), kinds
    assert kinds["schedule"] >= 10, kinds


def test_the_security_page_shows_the_function_policy_as_it_is() -> None:
    shown = first_json_block(section(DOCS / "security.md", "## The function's policy"))
    assert shown == json.loads((ROOT / "iam" / "lambda-policy.json").read_text())


# --- Settings -------------------------------------------------------------------

SETTING_ROW = re.compile(r"^\| `(EC2_POWERCYCLE_\w+)` \| ([^|]+) \|", re.M)


def test_the_settings_table_lists_exactly_the_settings_of_the_code_with_their_defaults() -> None:
    rows = dict(SETTING_ROW.findall(text_of(DOCS / "settings.md")))
    names = {value for name, value in vars(ec2_powercycle).items() if name.endswith("_SETTING")}
    assert names, "no settings found in the module"
    assert set(rows) == names, f"missing: {sorted(names - set(rows))}; not in the code: {sorted(set(rows) - names)}"
    assert "`ec2Powercycle`" in rows["EC2_POWERCYCLE_TAG"]
    assert f"`{ec2_powercycle.DEFAULT_WINDOW_MINUTES}`" in rows["EC2_POWERCYCLE_WINDOW_MINUTES"]
    assert f"`{ec2_powercycle.DEFAULT_CATCH_UP_MINUTES}`" in rows["EC2_POWERCYCLE_CATCH_UP_MINUTES"]
    assert f"`{ec2_powercycle.DEFAULT_TIMEZONE}`" in rows["EC2_POWERCYCLE_TIMEZONE"]
    assert f"`{ec2_powercycle.DEFAULT_PROTECTED_ENVIRONMENTS}`" in rows["EC2_POWERCYCLE_PROTECTED_ENVIRONMENTS"]
    assert f"`{ec2_powercycle.DEFAULT_MAX_WORKERS}`" in rows["EC2_POWERCYCLE_MAX_WORKERS"]
    assert (
        f"`{ec2_powercycle.DEFAULT_TARGETS_PER_INVOCATION}`" in rows["EC2_POWERCYCLE_TARGETS_PER_INVOCATION"]
    )


@pytest.mark.parametrize("page", [page for page in PAGES if page.name != "settings.md"], ids=lambda page: page.name)
def test_settings_have_one_table(page: Path) -> None:
    """A second table of settings would drift from the first: other pages link to settings.md."""
    assert not SETTING_ROW.search(text_of(page)), f"{page.name} has rows of a settings table"


# --- Links ----------------------------------------------------------------------


def test_every_link_between_the_pages_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(INLINE_CODE.sub("", prose_of(page))):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and anchor not in anchors(linked):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
