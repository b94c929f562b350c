"""The README's library example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_library_example_runs(capsys) -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Library use", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)  # our own documentation
    table = namespace["table"]
    assert set(table["region"]) == {"TC", "WT", "ET"} and table[["clean", "adversarial"]].notna().all().all()
    linf = namespace["result"].record["linf_255"][0]
    assert 0 < linf <= 8 + 1e-3
    assert "dice" in capsys.readouterr().out
