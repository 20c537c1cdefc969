"""The seed pages' Python blocks, run as a reader would run them: placeholders (addresses, keys)
replaced, nothing else changed unless a test says why.

The pages are the documents the product was specified from, vendored in tests/data/seeds (with
their licence); DHEERA_AI_SEEDS points elsewhere, at newer copies of them, say."""

from __future__ import annotations

import ast
import asyncio
import os
import re

SEEDS = os.environ.get("DHEERA_AI_SEEDS") or os.path.join(os.path.dirname(__file__), "..", "data", "seeds")
PROXY_PAGE = "000_e5a57c6be317e9b0.txt"  # the dheera_ai_proxy/ provider page
AZURE_PAGE = "004_f1b56c22f2dbec85.txt"  # Azure Responses API

_HEADING = re.compile(r"^(#{2,4}) (.+)$")
_TAB = re.compile(r'^<TabItem value="([^"]+)"')


def python_blocks(page: str) -> dict[tuple, str]:
    """Every ```python block of a page, keyed by where it is: (## heading, ### heading, tab, #### heading)."""
    with open(os.path.join(SEEDS, page), encoding="utf-8") as f:
        return python_blocks_in(f.read())


def python_blocks_in(text: str) -> dict[tuple, str]:
    """Every ```python block of a Markdown text, keyed as `python_blocks` keys them."""
    lines = text.splitlines()
    where = {2: None, 3: None, "tab": None, 4: None}
    blocks, code = {}, None
    for line in lines:
        if code is not None:
            if line.startswith("```"):
                key = (where[2], where[3], where["tab"], where[4])
                assert key not in blocks, f"two blocks at {key}"
                blocks[key] = "\n".join(code) + "\n"
                code = None
            else:
                code.append(line)
            continue
        if line.startswith("```python"):
            code = []
        elif heading := _HEADING.match(line):
            level = len(heading.group(1))
            where[level] = heading.group(2).strip()
            for deeper in (3, 4):
                if deeper > level:
                    where[deeper] = None
            if level == 2:
                where["tab"] = None
        elif tab := _TAB.match(line):
            where["tab"], where[4] = tab.group(1), None
    return blocks


def adapted(code: str, replacements: dict) -> str:
    """`code` with each placeholder replaced; a placeholder the page no longer has fails the test."""
    for old, new in replacements.items():
        assert old in code, f"the page no longer says {old!r}"
        code = code.replace(old, new)
    return code


def run(code: str, namespace: dict | None = None) -> dict:
    """Run a block as a script would (a block with a top-level `await`, as an asyncio REPL
    would); its variables afterwards."""
    namespace = {} if namespace is None else namespace
    compiled = compile(code, "<seed block>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)  # noqa: S307 - the seed page's own code
    if asyncio.iscoroutine(result):
        asyncio.run(result)
    return namespace
