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


def test_every_recipe_page_ends_with_the_export_step():
    for page in sorted((REPO / "docs" / "recipes").glob("*.md")):
        text = page.read_text()
        assert "**Export.**" in text, f"{page.name}: no export step"
        assert "samlab export --ckpt" in text.split("**Export.**")[-1], f"{page.name}: the export step has no command"
        headings = [line for line in text.splitlines() if line.startswith("**")]
        assert headings[-1].startswith("**Export.**"), f"{page.name}: the export step is not the last section"
