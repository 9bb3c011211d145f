"""Every shipped recipe has its documentation page, and the pages name their config."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_recipe_has_a_page_naming_it():
    for config in sorted((REPO / "configs").glob("*.yaml")):
        page = REPO / "docs" / "recipes" / f"{config.stem}.md"
        assert page.exists(), f"configs/{config.name} has no docs/recipes/{config.stem}.md"
        text = page.read_text()
        assert f"configs/{config.name}" in text
        for part in ("What it trains", "Command", "A good run"):
            assert part in text, f"{page.name}: no '{part}' section"
