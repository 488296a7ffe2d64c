"""`repro show` (terminal summary, exit codes as `repro verify`, ``--html``) and `repro run --plot`.

The HTML is opened in a real headless Chromium (tests/browser.py): no console error, the verdict
is the first thing on the first screen, and a manifest's hostile strings stay text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from repro.cli import main
from repro.records.manifest_file import load_manifest
from repro.trust.keys import default_key_path, load_key, public_key_path
from repro.trust.signing import sign_body
from tests.browser import assert_verdict_first, render

HOSTILE = "<script>alert('pwned')</script>"


def _resign(manifest: Path, change: Any) -> None:
    """Edit a manifest's body with ``change`` and sign it again with this session's key (a valid manifest)."""
    raw = json.loads(manifest.read_text())
    body = {k: v for k, v in raw.items() if k != "signature"}
    change(body)
    signature = sign_body(body, load_key(default_key_path()))
    manifest.write_text(json.dumps({**body, "signature": signature.model_dump(mode="json")}))


def test_a_good_manifest_is_summarised_with_its_curve_and_exits_0(smoke_run: Path, capsys) -> None:
    assert main(["show", str(smoke_run)]) == 0
    out = capsys.readouterr().out
    assert f"run: {smoke_run}" in out and "final train loss" in out and "checkpoints" in out
    curve = next(line for line in out.splitlines() if line.startswith("train loss"))
    assert any(ch in curve for ch in "▁▂▃▄▅▆▇█") and "(steps 1-20" in curve
    assert "verified" in out


def test_a_tampered_manifest_is_shown_under_an_integrity_failure_exit_3(smoke_copy: Path, capsys) -> None:
    raw = json.loads(smoke_copy.read_text())
    raw["validation"][0]["loss"] += 0.5
    smoke_copy.write_text(json.dumps(raw))
    assert main(["show", str(smoke_copy)]) == 3
    captured = capsys.readouterr()
    assert "final train loss" in captured.out  # what it claims is still shown...
    assert "error:" in captured.err and "signature" in captured.err  # ...under the failure
    assert "verified" not in captured.out


def test_a_changed_checkpoint_is_exit_3_and_a_missing_one_exit_4(smoke_copy: Path, capsys) -> None:
    checkpoint = smoke_copy.parent / load_manifest(smoke_copy).manifest.checkpoints[0].path
    data = bytearray(checkpoint.read_bytes())
    data[-1] ^= 1
    checkpoint.write_bytes(bytes(data))
    assert main(["show", str(smoke_copy)]) == 3
    checkpoint.unlink()
    assert main(["show", str(smoke_copy)]) == 4
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["{not json", "[]", '{"hello": 1}'])
def test_a_malformed_manifest_exits_2_with_one_line(tmp_path: Path, content: str, capsys) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["show", str(path), "--html", str(tmp_path / "bad.html")]) == 2
    err = capsys.readouterr().err
    [error] = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and str(path) in error
    assert "NOT A VALID MANIFEST" in (tmp_path / "bad.html").read_text()


def test_an_untrusted_signer_exits_3(smoke_run: Path, tmp_path: Path) -> None:
    from repro.trust.keys import generate_key, public_key_path

    other = generate_key(tmp_path / "other.pem")
    trust = tmp_path / "trusted.txt"
    trust.write_text(public_key_path(tmp_path / "other.pem").read_text())
    assert other.key_id
    assert main(["show", str(smoke_run), "--trusted-keys", str(trust)]) == 3


def test_show_html_renders_in_chromium_with_the_verdict_first(smoke_run: Path, tmp_path: Path) -> None:
    page = tmp_path / "show.html"
    trusted = public_key_path(default_key_path())
    assert main(["show", str(smoke_run), "--trusted-keys", str(trusted), "--html", str(page)]) == 0
    html = page.read_text()
    assert "http://" not in html and "https://" not in html  # nothing to fetch: it opens offline
    rendered = render(page, tmp_path / "show.png")
    assert_verdict_first(rendered, "VERIFIED", "good")
    assert rendered.dom.count("<svg") >= 3  # loss, learning rate, gradient norm
    assert "final training loss" in rendered.dom and "Checkpoints and artifacts" in rendered.dom


def test_show_html_is_green_only_for_a_trusted_key(smoke_run: Path, tmp_path: Path) -> None:
    page = tmp_path / "untrusted.html"
    assert main(["show", str(smoke_run), "--html", str(page)]) == 0  # valid, but no trust list
    banner = re.search(r'<section class="banner (\w+)" id="verdict">\s*<p class="headline">([^<]*)</p>',
                       page.read_text())
    assert banner is not None and banner.groups() == ("warn", "SIGNED BY AN UNCHECKED KEY")
    trusted = public_key_path(default_key_path())
    assert main(["show", str(smoke_run), "--trusted-keys", str(trusted), "--html", str(page)]) == 0
    banner = re.search(r'<section class="banner (\w+)" id="verdict">', page.read_text())
    assert banner is not None and banner.group(1) == "good"


def test_show_html_of_a_tampered_manifest_says_integrity_failure(smoke_copy: Path, tmp_path: Path) -> None:
    raw = json.loads(smoke_copy.read_text())
    raw["run"]["settings"]["seed"] += 1
    smoke_copy.write_text(json.dumps(raw))
    page = tmp_path / "tampered.html"
    assert main(["show", str(smoke_copy), "--html", str(page)]) == 3
    assert_verdict_first(render(page, tmp_path / "tampered.png"), "INTEGRITY FAILURE", "bad")


def test_hostile_strings_in_a_signed_manifest_stay_text(smoke_copy: Path, tmp_path: Path) -> None:
    def poison(body: dict) -> None:
        body["environment"]["distributions"][HOSTILE] = "1.0"
        body["run"]["config"]["note"] = HOSTILE
        body["checkpoints"][0]["tensors"][f"model.{HOSTILE}"] = "0" * 64
        body["code"]["branch"] = '"><img src=x onerror=alert(1)>'

    _resign(smoke_copy, poison)
    page = tmp_path / "hostile.html"
    # The tensor list and the package list no longer match the checkpoint and SBOM files, so the
    # manifest fails verification (3); the page is still written, showing it as unverified, escaped.
    code = main(["show", str(smoke_copy), "--html", str(page)])
    assert code == 3
    html = page.read_text()
    assert HOSTILE not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in html
    rendered = render(page, tmp_path / "hostile.png")
    assert rendered.console == []
    assert rendered.dom.count("<script") == 1  # only the page's own script
    assert "<img" not in rendered.dom


def test_run_plot_draws_a_real_png(tmp_path: Path) -> None:
    out, plot = tmp_path / "run.json", tmp_path / "curves.png"
    assert main(["run", "smoke", "--steps", "4", "--out", str(out), "--plot", str(plot)]) == 0
    from PIL import Image

    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size[0] > 600 and image.size[1] > 400
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # drawn curves, not a blank canvas


def test_run_plot_needs_a_png_name_before_any_training(tmp_path: Path, capsys) -> None:
    assert main(["run", "smoke", "--out", str(tmp_path / "run.json"), "--plot", str(tmp_path / "curves.svg")]) == 2
    assert "name a .png file" in capsys.readouterr().err
    assert not (tmp_path / "run.json").exists()
