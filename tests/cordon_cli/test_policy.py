"""`cordon policy keygen | lint | sign | verify | test`, run as a policy owner would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PACK = """\
pack: {name: finance, version: 1.2.0, enabled: true}
record_content: redacted
policies:
  - name: pii-out
    type: output_filter
    action: redact
    patterns: [email, iban]
  - name: clearance
    type: classification
    level: restricted
    require_scopes: [data:restricted]
  - name: secrets-are-restricted
    type: classification
    patterns: [api_key]
    level: restricted
"""


def cordon(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cordon_cli", "policy", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keygen_sign_verify(tmp_path: Path) -> None:
    made = cordon("keygen", "--out", "owner.key", cwd=tmp_path)
    assert made.returncode == 0 and "key id       sha256:" in made.stdout
    assert cordon("keygen", "--out", "owner.key", cwd=tmp_path).returncode == 1  # never overwrites
    (tmp_path / "finance.yaml").write_text(PACK)

    signed = cordon(
        "sign",
        "finance.yaml",
        "--key",
        "owner.key",
        "--revision",
        "7",
        "--regions",
        "eu-west",
        "--expires-in",
        "30d",
        cwd=tmp_path,
    )
    assert signed.returncode == 0, signed.stderr
    out = tmp_path / "finance.signed.json"
    assert json.loads(out.read_text())["signatures"][0]["key_id"].startswith("sha256:")

    good = cordon("verify", str(out), "--trust", "owner.pub", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert "finance revision 7" in good.stdout and "regions eu-west" in good.stdout

    cordon("keygen", "--out", "other.key", cwd=tmp_path)
    bad = cordon("verify", str(out), "--trust", "other.pub", cwd=tmp_path)
    assert bad.returncode == 1 and "no valid signature from a trusted key" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_lint_reports_file_line_and_path(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(PACK)
    (tmp_path / "bad.yaml").write_text(
        PACK.replace("patterns: [email, iban]", "patterns: [email, dna]")
    )
    result = cordon("lint", "good.yaml", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "good.yaml: ok" in result.stdout
    assert "bad.yaml:7: policies[0].patterns: pii-out: unknown patterns ['dna']" in result.stderr


def test_test_shows_the_decision_and_the_released_answer_without_servers(tmp_path: Path) -> None:
    (tmp_path / "finance.yaml").write_text(PACK)
    sample = {
        "identity": {"agent": "ledger-bot", "roles": ["finance"], "scopes": ["chat:write"]},
        "request": {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "pay DE89370400440532013000"}],
        },
        "response": {
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Paid DE89370400440532013000; receipt to cfo@example.com",
                    },
                }
            ]
        },
    }
    (tmp_path / "sample.json").write_text(json.dumps(sample))
    result = cordon("test", "finance.yaml", "--request", "sample.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["decision"]["classification"] == "confidential"
    assert report["decision"]["outcome"] == "redact"
    assert (
        report["response_released"]["choices"][0]["message"]["content"]
        == "Paid [IBAN]; receipt to [EMAIL]"
    )

    sample["request"]["messages"][0]["content"] = "use sk-proj-abcdefghijklmnopqrstuvwxyz1234"  # type: ignore[index]
    (tmp_path / "sample.json").write_text(json.dumps(sample))
    blocked = json.loads(
        cordon("test", "finance.yaml", "--request", "sample.json", cwd=tmp_path).stdout
    )
    assert blocked["decision"]["blocked_by"] == "clearance"
    assert blocked["decision"]["classification"] == "restricted"
    assert blocked["request_sent_upstream"] is None
